"""ThreadActor: one conversation, its history and its compaction.

One actor per thread id, spawned by the thread registry on the first message and
passivated when idle. Each incarnation runs two tasks:

- *intake* reads the mailbox and makes every message durable at once: a user message,
  a reminder or a heartbeat review becomes a *queued turn* in the store before anything
  else happens. A message that arrives while a turn runs is therefore safe on disk
  immediately, even if the daemon is killed before its turn starts.
- the *worker* runs the queued work one item at a time, in arrival order. We answer
  messages in order rather than folding them into one turn: every message gets its own
  answer and the history stays a plain alternation a person can follow.

Commands (`/new`, `/compact`, …) go through the same queue, so they apply in order with
the turns around them; they are never persisted and never reach the model.

The owner may take back the last turn (`RewindTurn`: regenerate the answer, or edit the
message) when no turn is queued or running; intake refuses it otherwise. The worker then,
in order with the rest of its work, supersedes the turn's rows and queues the new turn in
one store transaction, drops them from the in-memory history and answers the new turn
(after a restart too: it is a queued turn like any other).

History is loaded once on activation and kept in memory; every message is appended to
the store as it is produced. A turn is `queued` -> `running` -> `done`/`failed` in the
store; on activation the actor re-runs what was cut off (kill, crash, shutdown), so a turn
is answered after a restart, and never twice (`done` is written in the same transaction
as the reply).

Error handling: model errors end the turn with a short message to the user. Any other
exception marks the turn failed, tells the user, and is re-raised: the registry restarts
the actor, which reloads its intact history from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from ganglion.compaction import (
    compaction_threshold,
    needs_compaction,
    plan_compaction,
    render_for_summary,
    summary_message,
    summary_request,
)
from ganglion.fitting import Budget, Fit, answer_reserve, fit_request
from ganglion.heartbeat.review import HEARTBEAT_OK, REVIEW_MARKER
from ganglion.llm import LLMError
from ganglion.messages import (
    Announce,
    FinalReply,
    GetThreadInfo,
    HeartbeatReview,
    Inbound,
    Notice,
    Outbound,
    ReminderDue,
    ReviewOutcome,
    RewindTurn,
    StopTurn,
    TextDelta,
    ThreadInfo,
    ToolActivity,
    TurnFailed,
    TurnStarted,
    UserMessage,
    Wake,
    user_turn_id,
)
from ganglion.prompt import PromptContext, build_system_prompt
from ganglion.store import RewindRefused, StoredMessage, ThreadDeleted, ThreadState, Turn
from ganglion.threads.commands import Command, parse_command, unescape
from ganglion.threads.deps import ThreadDeps
from ganglion.threads.handlers import handle_command
from ganglion.threads.ids import interface_for
from ganglion.threads.offers import tool_offers
from ganglion.threads.review import run_review
from ganglion.threads.turn import TurnError, repair_tool_pairs, run_model_loop
from ganglion.tokens import estimate_message_tokens, estimate_schema_tokens, estimate_tokens
from ganglion.transcript import ChatMessage, Usage
from ganglion_actors import Inbox, Reply

__all__ = ["HEARTBEAT_OK", "ThreadActor", "serve_thread"]

log = logging.getLogger(__name__)

REWIND_BUSY = "Wait for the answer (or stop it) before editing or regenerating."
CRASH_MESSAGE = (
    "Something went wrong inside Ganglion while answering this message (details are in "
    "the daemon's log). Please try again."
)


@dataclass(frozen=True, slots=True)
class _RunTurn:
    turn: Turn
    started: StoredMessage | None = None  # its input, when intake started it already


@dataclass(frozen=True, slots=True)
class _RunCommand:
    command: Command


@dataclass(frozen=True, slots=True)
class _RunReview:
    review: HeartbeatReview


@dataclass(frozen=True, slots=True)
class _Speak:
    text: str


@dataclass(frozen=True, slots=True)
class _RunRewind:
    request: RewindTurn


_Work = _RunTurn | _RunCommand | _RunReview | _Speak | _RunRewind


async def serve_thread(
    deps: ThreadDeps,
    thread_id: str,
    inbox: Inbox[Inbound],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The actor function the thread registry spawns for `thread_id`."""
    interface = interface_for(thread_id)
    state = await deps.store.load_thread(thread_id, interface=interface)
    actor = ThreadActor(deps, thread_id, interface, state, inbox)
    send, receive = trio.open_memory_channel[_Work](deps.config.threads.mailbox_size)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor.work, receive)
        async with send:
            for turn in state.pending:
                await actor.enqueue(send, _RunTurn(turn))
            if state.pending:
                log.info("resuming %d turn(s) cut off before", len(state.pending))
            task_status.started()
            async for message in inbox:
                await actor.intake(message, send)
                del message  # nor of the last message it took in
            actor.draining = True


class ThreadActor:
    """One conversation's state and behaviour; `serve_thread` runs it.

    Owns: the thread's in-memory history (since the last summary), its summary and its
    queue of work. Nothing outside changes them: turns and commands act through the
    `TurnHost` and `CommandHost` protocols it implements. Error handling: see the module
    docstring (model errors end a turn with a message; anything else fails the turn, tells
    the user and restarts the actor). Resource handling: every message is written to the
    store before it is acted on; an idle actor is passivated by the registry and costs
    nothing until its next message.
    """

    def __init__(
        self,
        deps: ThreadDeps,
        thread_id: str,
        interface: str,
        state: ThreadState,
        inbox: Inbox[Inbound],
    ) -> None:
        self.deps = deps
        self.thread_id = thread_id
        self.interface = interface
        self.summary = state.summary
        self.history: list[StoredMessage] = [
            m for m in state.messages if state.summary_upto is None or m.id > state.summary_upto
        ]
        self.draining = False
        self.turns_done = 0
        self._inbox = inbox
        self._outstanding = 0
        self._turns = 0  # turns (and rewinds) queued or running, not yet answered
        # The running turn's id and cancel scope (for StopTurn), and the text it streamed
        # since its last tool call (kept as its answer when it is stopped).
        self._running: tuple[str, trio.CancelScope] | None = None
        self._reviewing = False
        self._streamed: list[str] = []

    # -- intake ---------------------------------------------------------------------------

    async def intake(self, message: Inbound, queue: trio.MemorySendChannel[_Work]) -> None:
        match message:
            case UserMessage(text=text, message_id=message_id, accepted=accepted):
                command = parse_command(text)
                if command is not None:
                    if accepted is not None:
                        accepted.send(None)  # commands are never stored
                    await self.enqueue(queue, _RunCommand(command))
                    return
                turn_id = user_turn_id(self.thread_id, message_id) if message_id else None
                await self._queue_turn(
                    queue, ChatMessage("user", unescape(text)), "user", turn_id, accepted
                )
            case ReminderDue(slot=slot, text=text, accepted=accepted):
                content = (
                    f"[A reminder you scheduled earlier is due now ({slot}). This is not a "
                    f"new request from the user; act on it as the reminder says.]\n{text}"
                )
                await self._queue_turn(
                    queue, ChatMessage("user", content), "reminder", message.turn_id, accepted
                )
            case HeartbeatReview(reply=reply):
                if self._reviewing:  # the previous review has not finished: not twice
                    if reply is not None:
                        reply.send(ReviewOutcome(self.thread_id, "skipped", "busy"))
                    return
                self._reviewing = True
                await self.enqueue(queue, _RunReview(message))
            case Announce(text=text):
                await self.enqueue(queue, _Speak(text))
            case GetThreadInfo(reply=reply):
                reply.send(self.info())
            case StopTurn(turn_id=turn_id):
                if self._running is not None and self._running[0] == turn_id:
                    self._running[1].cancel()
            case RewindTurn(accepted=accepted):
                if self._turns:  # the turn to take back must be the last one, finished
                    if accepted is not None:
                        accepted.fail(RewindRefused("busy", REWIND_BUSY))
                    return
                await self.enqueue(queue, _RunRewind(message))
            case Wake():
                pass

    async def _queue_turn(
        self,
        queue: trio.MemorySendChannel[_Work],
        message: ChatMessage,
        source: str,
        turn_id: str | None,
        accepted: Reply[None] | None = None,
    ) -> None:
        store = self.deps.store
        started: StoredMessage | None = None
        try:
            if self._outstanding == 0:
                # Nothing queued or running (and only intake adds work): the turn starts
                # in the transaction that stores it, one commit where there would be two.
                turn, started = await store.begin_turn(
                    self.thread_id, message, source=source, turn_id=turn_id
                )
                created = started is not None
            else:
                turn, created = await store.queue_turn(
                    self.thread_id, message, source=source, turn_id=turn_id
                )
        except ThreadDeleted as exc:
            log.info("%s was deleted: a %s turn is not taken", self.thread_id, source)
            if accepted is not None:
                accepted.fail(exc)
            return
        if accepted is not None:
            accepted.send(None)  # durable now: the sender may forget it
        if created:
            await self.enqueue(queue, _RunTurn(turn, started))
        else:
            log.info("turn %s was already received; not answering it twice", turn.turn_id)

    async def _rewind(self, request: RewindTurn) -> Turn | None:
        """Take back the last turn (see `RewindTurn`): the new turn to run, or None when
        there is none (refused, or taken already). Runs in the worker, so what was still
        to be done after the last answer (a compaction, a command) is done first. An
        edit's text is the message as written (never a command, never unescaped)."""
        accepted = request.accepted
        try:
            rewound = await self.deps.store.rewind_turn(
                self.thread_id,
                request.turn_id,
                new_turn_id=user_turn_id(self.thread_id, request.message_id),
                text=request.text,
            )
        except RewindRefused as exc:
            if accepted is not None:
                accepted.fail(exc)
            return None
        if rewound.superseded_from is not None:
            self.history = [m for m in self.history if m.id < rewound.superseded_from]
        if accepted is not None:
            accepted.send(None)  # durable now: the new turn is queued in the store
        if not rewound.created:
            return None
        log.info("turn %s taken back; answering it again", request.turn_id)
        return rewound.turn

    async def enqueue(self, queue: trio.MemorySendChannel[_Work], work: _Work) -> None:
        self._outstanding += 1
        self._turns += isinstance(work, _RunTurn | _RunRewind)  # `_answer` counts them off
        self._inbox.set_busy(True)
        await queue.send(work)

    # -- worker ---------------------------------------------------------------------------

    async def work(self, queue: trio.MemoryReceiveChannel[_Work]) -> None:
        async with queue:
            async for item in queue:
                try:
                    if not self.draining:  # else it stays queued in the store: answered
                        await self._do(item)  # after the restart
                finally:
                    self._outstanding -= 1
                    self._inbox.set_busy(self._outstanding > 0)
                    del item  # an idle conversation keeps nothing of its last work

    async def _do(self, item: _Work) -> None:
        match item:
            case _RunTurn(turn=turn, started=started):
                await self._answer(turn, started)
            case _RunCommand(command=command):
                await handle_command(self, command)
            case _RunReview(review=review):
                await self._review(review)
            case _Speak(text=text):
                await self.speak(None, text)
            case _RunRewind(request=request):
                await self._answer(await self._rewind(request))

    async def _answer(self, turn: Turn | None, started: StoredMessage | None = None) -> None:
        """Run `turn` (None: a rewind that came to none), then compact the thread if it
        grew too long. The turn stops counting as pending once it is answered, before the
        compaction: the owner may take it back at once (the rewind waits in the queue)."""
        answered = False
        try:
            answered = turn is not None and await self.run_turn(turn, started)
        finally:
            self._turns -= 1
        if answered:
            await self.compact_if_needed()

    async def run_turn(self, turn: Turn, started: StoredMessage | None = None) -> bool:
        """Answer `turn`; True when it was answered in full (not failed or stopped).
        `started` is its input as stored when intake started it (`store.begin_turn`)."""
        store = self.deps.store
        if turn.source == "heartbeat":
            # A review cut off by a restart: the next beat reviews again, afresh.
            await store.finish_turn(turn.turn_id, state="failed", final=None)
            return False
        if turn.state == "queued":
            self.history.append(await store.start_turn(turn.turn_id))
        elif started is not None:
            self.history.append(started)
        await self.emit(TurnStarted(self.thread_id, turn.turn_id, turn.source, turn.input.content))
        with trio.CancelScope() as stoppable:
            self._running = (turn.turn_id, stoppable)
            try:
                text = await run_model_loop(self, turn)
            except (LLMError, TurnError) as exc:
                log.warning("turn %s failed: %s", turn.turn_id, exc)
                await self._fail(turn, exc.user_message)
                return False
            except Exception:
                log.exception("turn %s crashed", turn.turn_id)
                await self._fail(turn, CRASH_MESSAGE)
                raise
            finally:
                self._running = None
        if stoppable.cancelled_caught:
            await self._stopped(turn)
            return False
        finished = await store.finish_turn(
            turn.turn_id,
            state="done",
            final=ChatMessage("assistant", text),
            outbox={"text": text},
        )
        if finished.message is not None:
            self.history.append(finished.message)
        self.turns_done += 1
        await self.emit(FinalReply(self.thread_id, turn.turn_id, text, finished.outbox_id))
        return True

    # -- heartbeat reviews ----------------------------------------------------------------

    async def _review(self, review: HeartbeatReview) -> None:
        outcome = ReviewOutcome(self.thread_id, "failed", "the review crashed")
        try:
            outcome = await run_review(self, review)
        finally:
            self._reviewing = False
            if review.reply is not None:
                review.reply.send(outcome)

    async def review_now(self) -> str:
        """Review this conversation now (`/heartbeat`) and say how it went."""
        outcome = await run_review(self, HeartbeatReview(self.thread_id))
        match outcome.state:
            case "silent":
                return (
                    "Heartbeat review of this conversation: nothing to report (the model "
                    f"answered {HEARTBEAT_OK}, which is shown to no one)."
                )
            case "spoke":
                return f"Heartbeat review of this conversation: delivered above ({outcome.tokens} tokens)."
            case _:
                return f"Heartbeat review of this conversation failed: {outcome.text}"

    async def speak(self, turn: Turn | None, text: str) -> None:
        """Say `text` in the conversation as a heartbeat review's answer: stored as the
        review's marker and the answer, delivered like any reply."""
        store = self.deps.store
        if turn is None:
            turn, _ = await store.queue_turn(
                self.thread_id, ChatMessage("user", REVIEW_MARKER), source="heartbeat"
            )
        self.history.append(await store.start_turn(turn.turn_id))
        await self.emit(TurnStarted(self.thread_id, turn.turn_id, turn.source, turn.input.content))
        finished = await store.finish_turn(
            turn.turn_id, state="done", final=ChatMessage("assistant", text), outbox={"text": text}
        )
        if finished.message is not None:
            self.history.append(finished.message)
        await self.emit(FinalReply(self.thread_id, turn.turn_id, text, finished.outbox_id))

    def used(self, usage: Usage, estimated_prompt: int) -> None:
        """What a request of a turn cost (a review counts it; a turn has no use for it)."""

    async def _stopped(self, turn: Turn) -> None:
        """End a turn the owner stopped: what it streamed is its answer, marked stopped."""
        text = "".join(self._streamed).strip()
        with trio.CancelScope(shield=True):
            finished = await self.deps.store.finish_turn(
                turn.turn_id,
                state="done",
                final=ChatMessage("assistant", text) if text else None,
                outbox={"text": text, "stopped": True} if text else None,
            )
            if finished.message is not None:
                self.history.append(finished.message)
            if text:
                await self.emit(FinalReply(self.thread_id, turn.turn_id, text, finished.outbox_id))
            await self.emit(Notice(self.thread_id, "Stopped.", turn.turn_id))
        log.info("turn %s stopped by the owner", turn.turn_id)

    async def _fail(self, turn: Turn, message: str) -> None:
        with trio.CancelScope(shield=True):
            await self.deps.store.finish_turn(turn.turn_id, state="failed", final=None, outbox=None)
            await self.emit(TurnFailed(self.thread_id, turn.turn_id, message))

    async def append(
        self, turn: Turn, message: ChatMessage, *, meta: Mapping[str, Any] | None = None
    ) -> None:
        stored = await self.deps.store.append(self.thread_id, turn.turn_id, message, meta=meta)
        self.history.append(stored)

    async def emit(self, event: Outbound) -> None:
        match event:
            case TurnStarted() | ToolActivity():
                self._streamed.clear()
            case TextDelta(text=text):
                self._streamed.append(text)
        await self.deps.router.deliver(event)

    async def notice(self, text: str) -> None:
        await self.emit(Notice(self.thread_id, text))

    @property
    def message_count(self) -> int:
        return len(self.history)

    async def new_conversation(self) -> None:
        """Archive the conversation (`/new`): a new epoch, an empty history, no summary."""
        await self.deps.store.new_epoch(self.thread_id)
        self.history.clear()
        self.summary = None

    # -- prompt and compaction ------------------------------------------------------------

    async def system_prompt(self) -> str:
        files = await self.deps.prompt_files.load()
        context = PromptContext(
            now=self.deps.now(),
            timezone=self.deps.timezone,
            thread_id=self.thread_id,
            interface=self.interface,
        )
        return build_system_prompt(files, context)

    async def prompt_messages(self, *, final_note: str | None = None) -> list[ChatMessage]:
        messages = [ChatMessage("system", await self.system_prompt())]
        if self.summary:
            messages.append(summary_message(self.summary))
        messages += repair_tool_pairs([m.message for m in self.history])
        if final_note:
            messages.append(ChatMessage("system", final_note))
        return messages

    def estimated_tokens(self, system_prompt: str = "") -> int:
        """The prompt's estimated size: system prompt, tool schemas, summary, history."""
        # The schemas go with every request and can be thousands of tokens; MCP servers
        # add and remove tools at run time, so they are measured each time.
        total = estimate_tokens(system_prompt) + estimate_schema_tokens(self.deps.tools.schemas())
        if self.summary:
            total += estimate_message_tokens(summary_message(self.summary))
        return total + sum(estimate_message_tokens(m.message) for m in self.history)

    async def budget(self) -> Budget:
        """What a request to the model may hold now (the window learned from the server,
        room for the answer, and the calibrated token count)."""
        window = await self.deps.llm.window()
        reserve = answer_reserve(window.limit, self.deps.config.llm.max_tokens)
        return Budget(window.limit, reserve, window.ratio)

    async def fit_prompt(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        may_compact: bool = False,
    ) -> Fit:
        """The prompt for the next request, fitted into `budget` with `tools` offered.

        When it only fits with cuts (or not at all) and `may_compact`, the older part of
        the conversation is summarised first and the prompt built again; if the messages
        kept verbatim (`compaction.keep_recent_messages`) are still too many, fewer are
        kept, down to the newest one alone.
        """
        tools_estimate = estimate_schema_tokens(tools)
        fit = fit_request(await self.prompt_messages(final_note=final_note), tools_estimate, budget)
        configured = self.deps.config.compaction.keep_recent_messages
        for keep in sorted({configured, min(configured, 2), 1}, reverse=True):
            if not (fit.clips or not fit.fits) or not may_compact:
                break
            if await self.compact_if_needed(force=True, keep_recent=keep):
                messages = await self.prompt_messages(final_note=final_note)
                fit = fit_request(messages, tools_estimate, budget)
        return fit

    async def compact_if_needed(
        self, *, force: bool = False, keep_recent: int | None = None
    ) -> bool:
        """Summarise older messages when the thread is too long (or `force`).

        "Too long" is measured in the server's tokens (calibrated) against the window the
        server really serves. Returns True when a summary was made. Model errors are
        logged and leave the history as it was: compaction is retried after the next turn.
        """
        config = self.deps.config
        window = await self.deps.llm.window()
        threshold = compaction_threshold(
            config.compaction.threshold_tokens,
            config.compaction.threshold_fraction,
            window.limit,
        )
        system_prompt = await self.system_prompt()
        size = int(self.estimated_tokens(system_prompt) * window.ratio)
        if not force and not needs_compaction(size, threshold):
            return False
        # A compaction request must fit the compaction model's window: instructions, the
        # previous summary and room for the answer come off the budget before the
        # transcript is chunked (in estimate units, hence the ratio).
        compaction_window = await self.deps.compaction_llm.window()
        previous = estimate_tokens(self.summary or "")
        budget = max(256, int(compaction_window.limit * 0.6 / compaction_window.ratio) - previous)
        plan = plan_compaction(
            [m.message for m in self.history],
            keep_recent=(
                config.compaction.keep_recent_messages if keep_recent is None else keep_recent
            ),
            chunk_budget_tokens=budget,
            force=force,
        )
        if plan is None:
            return False
        summary = self.summary
        try:
            for chunk in plan.chunks:
                transcript = render_for_summary(
                    [self.history[i].message for i in chunk], max_tokens=budget
                )
                async with self.deps.llm_slots:
                    completion = await self.deps.compaction_llm.complete(
                        summary_request(summary, transcript)
                    )
                summary = completion.content.strip() or summary
        except LLMError as exc:
            log.warning("compaction failed, keeping the full history for now: %s", exc)
            return False
        if not summary:
            return False
        upto = self.history[plan.keep_from - 1].id
        await self.deps.store.set_summary(self.thread_id, summary, upto)
        dropped = plan.keep_from
        self.summary = summary
        self.history = self.history[plan.keep_from :]
        log.info("compacted %d message(s) into a summary", dropped)
        return True

    async def why_not_compacted(self) -> str:
        """What `/compact` says when there was nothing to summarise: that the conversation
        fits, or, when it does not, what takes the room."""
        budget = await self.budget()
        system_prompt = await self.system_prompt()
        if budget.count(self.estimated_tokens(system_prompt)) <= budget.room:
            return "Nothing to compact yet."
        # The tools as a request would offer them first (threads.offers decides).
        offered = tool_offers(self.deps.tools, budget.window, frozenset())[0].schemas
        fixed = estimate_tokens(system_prompt) + estimate_schema_tokens(offered)
        return (
            f"Nothing to compact: too few messages to summarise, and still the request does "
            f"not fit. The system prompt and tools alone take about {budget.count(fixed):,} "
            f"of the {budget.window:,} tokens the model server accepts per request "
            f"({budget.reserve:,} are kept for the answer); long messages are cut to fit. "
            "Raise the server's context size, or shorten MEMORIES.txt and the skills index."
        )

    def info(self) -> ThreadInfo:
        return ThreadInfo(
            thread_id=self.thread_id,
            messages=len(self.history),
            estimated_tokens=self.estimated_tokens(),
            has_summary=bool(self.summary),
            turns_done=self.turns_done,
        )
