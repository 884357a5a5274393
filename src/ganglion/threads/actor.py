"""ThreadActor: one conversation's mailbox, its queue of work and its turns' life cycle.

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
(after a restart too: it is a queued turn like any other). A regenerated answer keeps the
earlier ones as versions: `ChooseVersion` shows another one, by the same rules, in the
worker, and the in-memory history takes in its rows instead.

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
from dataclasses import dataclass
from typing import Any

import trio

from ganglion.beats import REVIEW_MARKER
from ganglion.ids import interface_for
from ganglion.llm import LLMError
from ganglion.messages import (
    Announce,
    ChooseVersion,
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
    ToolActivity,
    TurnFailed,
    TurnStarted,
    UserMessage,
    Wake,
    user_turn_id,
)
from ganglion.store import RewindReason, RewindRefused, StoredMessage, ThreadDeleted, Turn
from ganglion.threads.commands import Command, parse_command, unescape
from ganglion.threads.conversation import Conversation
from ganglion.threads.deps import ThreadDeps
from ganglion.threads.handlers import handle_command
from ganglion.threads.media import hear, quoted
from ganglion.threads.review import run_review
from ganglion.threads.turn import TurnError, run_model_loop
from ganglion.transcript import ChatMessage
from ganglion.usage import BudgetExceeded
from ganglion_actors import Inbox, Reply

__all__ = ["serve_thread"]

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


@dataclass(frozen=True, slots=True)
class _RunChoice:
    request: ChooseVersion


_Work = _RunTurn | _RunCommand | _RunReview | _Speak | _RunRewind | _RunChoice
_Queue = trio.MemorySendChannel[_Work]


def _reminder_prompt(slot: str, text: str) -> str:
    """What the model reads when a reminder is due in its conversation."""
    return (
        f"[A reminder you scheduled earlier is due now ({slot}). This is not a "
        f"new request from the user; act on it as the reminder says.]\n{text}"
    )


async def serve_thread(
    deps: ThreadDeps,
    thread_id: str,
    inbox: Inbox[Inbound],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The actor function the thread registry spawns for `thread_id`."""
    interface = interface_for(thread_id)
    state = await deps.turns.load_thread(thread_id, interface=interface)
    conversation = Conversation.from_state(deps, thread_id, interface, state)
    actor = ThreadActor(deps, conversation, inbox)
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
    """One conversation's mailbox, work and turns; `serve_thread` runs it.

    Owns the thread's `Conversation` and its queue of work; turns, commands and reviews
    are handed the conversation and the actor's `emit`. Error handling: see the module
    docstring. Resource handling: every message is written to the store before it is
    acted on; an idle actor is passivated by the registry and costs nothing until its
    next message.
    """

    def __init__(self, deps: ThreadDeps, conversation: Conversation, inbox: Inbox[Inbound]) -> None:
        self.deps = deps
        self.conversation = conversation
        self.thread_id = conversation.thread_id
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

    async def intake(self, message: Inbound, queue: _Queue) -> None:
        match message:
            case UserMessage(
                text=text, message_id=message_id, accepted=accepted, attachments=attachments
            ):
                # A file's caption is never a command: the file would be lost.
                command = None if attachments else parse_command(text)
                if command is not None:
                    if accepted is not None:
                        accepted.send(None)  # commands are never stored
                    await self.enqueue(queue, _RunCommand(command))
                    return
                turn_id = user_turn_id(self.thread_id, message_id) if message_id else None
                content = ChatMessage("user", unescape(text), attachments=attachments)
                await self._queue_turn(queue, content, "user", turn_id, accepted)
            case ReminderDue(slot=slot, text=text, accepted=accepted):
                content = ChatMessage("user", _reminder_prompt(slot, text))
                await self._queue_turn(queue, content, "reminder", message.turn_id, accepted)
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
                reply.send(self.conversation.info(self.turns_done))
            case StopTurn(turn_id=turn_id):
                if self._running is not None and self._running[0] == turn_id:
                    self._running[1].cancel()
            case RewindTurn(accepted=accepted):
                if self._turns:  # the turn to take back must be the last one, finished
                    if accepted is not None:
                        accepted.fail(RewindRefused(RewindReason.BUSY, REWIND_BUSY))
                    return
                await self.enqueue(queue, _RunRewind(message))
            case ChooseVersion(accepted=accepted):
                if self._turns:  # as for a rewind: only once the last turn is answered
                    if accepted is not None:
                        accepted.fail(RewindRefused(RewindReason.BUSY, REWIND_BUSY))
                    return
                await self.enqueue(queue, _RunChoice(message))
            case Wake():
                pass

    async def _queue_turn(
        self,
        queue: _Queue,
        message: ChatMessage,
        source: str,
        turn_id: str | None,
        accepted: Reply[str | None] | None = None,
    ) -> None:
        try:
            # With nothing queued or running (and only intake adds work), the turn starts
            # in the transaction that stores it: one commit where there would be two.
            turn, created, started = await self.deps.turns.take_turn(
                self.thread_id, message, source=source, turn_id=turn_id, start=not self._outstanding
            )
        except ThreadDeleted as exc:
            log.info("%s was deleted: a %s turn is not taken", self.thread_id, source)
            if accepted is not None:
                accepted.fail(exc)
            return
        if accepted is not None:  # durable now: the sender may forget it
            accepted.send(None if created else turn.state)
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
            rewound = await self.deps.turns.rewind_turn(
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
            self.conversation.forget_from(rewound.superseded_from)
        if accepted is not None:
            accepted.send(None)  # durable now: the new turn is queued in the store
        if not rewound.created:
            return None
        log.info("turn %s taken back; answering it again", request.turn_id)
        return rewound.turn

    async def _choose(self, request: ChooseVersion) -> None:
        """Show another version of the last answer (see `ChooseVersion`)."""
        try:
            chosen = await self.deps.turns.choose_version(self.thread_id, request.turn_id)
        except RewindRefused as exc:
            if request.accepted is not None:
                request.accepted.fail(exc)
            return
        if chosen.superseded_from is not None:
            self.conversation.forget_from(chosen.superseded_from)
            for stored in chosen.messages:
                self.conversation.add(stored)
            log.info("%s shows version %s of its last answer", self.thread_id, request.turn_id)
        if request.accepted is not None:
            request.accepted.send(None)

    async def enqueue(self, queue: _Queue, work: _Work) -> None:
        self._outstanding += 1
        self._turns += isinstance(work, _RunTurn | _RunRewind)  # `_answer` counts them off
        self._inbox.set_busy(True)
        await queue.send(work)

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
                await handle_command(
                    command,
                    self.conversation,
                    self.emit,
                    review=self._review,
                    reminders=self.deps.reminders,
                )
            case _RunReview(review=review):
                await self._review(review)
            case _Speak(text=text):
                await self.speak(None, text)
            case _RunRewind(request=request):
                await self._answer(await self._rewind(request))
            case _RunChoice(request=request):
                await self._choose(request)

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
            await self.conversation.compact_if_needed()

    async def run_turn(self, turn: Turn, started: StoredMessage | None = None) -> bool:
        """Answer `turn`; True when it was answered in full (not failed or stopped).
        `started` is its input as stored when intake started it (`turns.begin_turn`)."""
        turns = self.deps.turns
        if turn.source == "heartbeat":
            # A review cut off by a restart: the next beat reviews again, afresh.
            await turns.finish_turn(turn.turn_id, state="failed", final=None)
            await self.deps.approver.withdraw(turn.turn_id, "ended")
            return False
        if turn.state == "queued":
            await self.conversation.start(turn)
        else:
            self.conversation.add(started)
        await self.emit(TurnStarted(self.thread_id, turn.turn_id, turn.source, turn.input.content))
        with trio.CancelScope() as stoppable:
            self._running = (turn.turn_id, stoppable)
            try:
                heard = await hear(self.conversation, turn)
                if heard is not None and heard.reply is not None:
                    text = heard.reply  # not heard: the reply says why, the model is not asked
                else:
                    text = await run_model_loop(self.conversation, turn, self.emit)
            except BudgetExceeded as exc:
                log.info("turn %s not sent to the model: %s", turn.turn_id, exc)
                await self._fail(turn, exc.user_message)
                return False
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
        shown = quoted(heard.text, text) if heard is not None and heard.text else text
        await self._finish(turn, text, {"text": shown}, shown)
        self.turns_done += 1
        return True

    async def _review(self, review: HeartbeatReview | None = None) -> ReviewOutcome:
        """Review the conversation (None: `/heartbeat`), say what it had to say in it and
        answer the heartbeat's request."""
        outcome = ReviewOutcome(self.thread_id, "failed", "the review crashed")
        try:
            done = await run_review(
                self.conversation, review or HeartbeatReview(self.thread_id), self.emit
            )
            if done.speak is not None:
                await self.speak(*done.speak)
            outcome = done.outcome
        finally:
            if review is not None:
                self._reviewing = False
                if review.reply is not None:
                    review.reply.send(outcome)
        return outcome

    async def speak(self, turn: Turn | None, text: str) -> None:
        """Say `text` in the conversation as a heartbeat review's answer: stored as the
        review's marker and the answer, delivered like any reply."""
        if turn is None:
            marker = ChatMessage("user", REVIEW_MARKER)
            turn, _ = await self.deps.turns.queue_turn(self.thread_id, marker, source="heartbeat")
        await self.conversation.start(turn)
        await self.emit(TurnStarted(self.thread_id, turn.turn_id, turn.source, turn.input.content))
        await self._finish(turn, text, {"text": text})

    async def _finish(
        self, turn: Turn, text: str, outbox: dict[str, Any], shown: str | None = None
    ) -> None:
        """Store `text` as `turn`'s answer and deliver it, as `shown` when the owner sees
        more than the model said (a voice message's transcript); "": unanswered."""
        finished = await self.conversation.finish(turn, text, outbox)
        if text:
            reply = FinalReply(self.thread_id, turn.turn_id, shown or text, finished.outbox_id)
            await self.emit(reply)

    async def _stopped(self, turn: Turn) -> None:
        """End a turn the owner stopped: what it streamed is its answer, marked stopped."""
        text = "".join(self._streamed).strip()
        with trio.CancelScope(shield=True):
            await self.deps.approver.withdraw(turn.turn_id, "stop")
            await self._finish(turn, text, {"text": text, "stopped": True})
            await self.emit(Notice(self.thread_id, "Stopped.", turn.turn_id))
        log.info("turn %s stopped by the owner", turn.turn_id)

    async def _fail(self, turn: Turn, message: str) -> None:
        with trio.CancelScope(shield=True):
            await self.deps.approver.withdraw(turn.turn_id, "ended")
            await self.deps.turns.finish_turn(turn.turn_id, state="failed", final=None, outbox=None)
            await self.emit(TurnFailed(self.thread_id, turn.turn_id, message))

    async def emit(self, event: Outbound) -> None:
        match event:
            case TurnStarted() | ToolActivity():
                self._streamed.clear()
            case TextDelta(text=text):
                self._streamed.append(text)
        await self.deps.router.deliver(event)
