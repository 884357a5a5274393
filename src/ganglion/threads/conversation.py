"""Conversation: what one thread says, and what a request to the model is built from.

The thread actor owns one `Conversation` and is the only one that changes it; the model
loop (`threads.turn`), the commands (`threads.handlers`) and the heartbeat review
(`threads.review`) are handed it. It holds the history since the last summary and the
summary, builds the prompt (system prompt, summary, history repaired for the API), knows
its estimated size, the budget a request has, fits the prompt into it and compacts.

Every change is written to the store first, then to the history in memory: what the
conversation holds in memory is always a suffix of what is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ganglion.compaction import (
    compaction_threshold,
    needs_compaction,
    plan_compaction,
    render_for_summary,
    summary_message,
    summary_request,
)
from ganglion.fitting import Budget, Fit, answer_reserve, fit_request
from ganglion.llm import Completion, LLMClient, LLMError, OnText
from ganglion.messages import ThreadInfo
from ganglion.prompt import PromptContext, build_system_prompt
from ganglion.spend import Source
from ganglion.store import FinishedTurn, StoredMessage, ThreadState, Turn
from ganglion.threads.deps import ThreadDeps
from ganglion.threads.offers import tool_offers
from ganglion.threads.repair import repair_tool_pairs
from ganglion.tokens import estimate_message_tokens, estimate_schema_tokens, estimate_tokens
from ganglion.tools import ToolRegistry
from ganglion.transcript import ChatMessage
from ganglion.usage import BudgetExceeded

__all__ = ["Conversation", "Images"]

log = logging.getLogger(__name__)

# The pictures a request shows the model: data URLs by the id of their message.
Images = Mapping[int, tuple[str, ...]]


class Conversation:
    """One thread's content and how it is turned into requests.

    `tools` are the tools a request of this conversation may be offered (a review of it
    has none). Resource handling: holds the history since the last summary only; older
    messages stay in the store. Error handling: model errors while compacting are logged
    and leave the history as it was; store errors propagate.
    """

    def __init__(
        self,
        deps: ThreadDeps,
        thread_id: str,
        interface: str,
        *,
        summary: str | None = None,
        history: list[StoredMessage] | None = None,
        tools: ToolRegistry | None = None,
        model: str | None = None,
    ) -> None:
        self.deps = deps
        self.thread_id = thread_id
        self.interface = interface
        self.tools = deps.tools if tools is None else tools
        self.summary = summary
        self.history = [] if history is None else history
        self.model = model  # the owner's choice (`/model`); None: the main one
        # The size of the system prompt last built (None: not built yet): what the check
        # after a turn measures, without reading the prompt files again.
        self._system_tokens: int | None = None

    @property
    def history(self) -> list[StoredMessage]:
        """The messages since the last summary, oldest first (change it by assigning)."""
        return self._history

    @history.setter
    def history(self, messages: list[StoredMessage]) -> None:
        self._history = messages
        # A running total: the size is asked after every turn, the history can be long.
        self._history_tokens = sum(estimate_message_tokens(m.message) for m in messages)

    @classmethod
    def from_state(
        cls, deps: ThreadDeps, thread_id: str, interface: str, state: ThreadState
    ) -> Conversation:
        """The conversation as the store holds it: the summary and what came after it."""
        upto = state.summary_upto
        history = [m for m in state.messages if upto is None or m.id > upto]
        return cls(
            deps, thread_id, interface, summary=state.summary, history=history, model=state.model
        )

    # -- what it holds --------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        return len(self.history)

    def add(self, stored: StoredMessage | None) -> None:
        """Take in a message the store has just written (None: nothing was written)."""
        if stored is not None:
            self._history.append(stored)
            self._history_tokens += estimate_message_tokens(stored.message)

    async def append(
        self,
        turn: Turn,
        message: ChatMessage,
        *,
        meta: Mapping[str, Any] | None = None,
        outbox: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int | None:
        """Add `message` to `turn`: stored first, then kept; with `outbox` (kind,
        payload) queued for the interface in the same transaction (its id is returned)."""
        turns = self.deps.turns
        if outbox is None:
            self.add(await turns.append(self.thread_id, turn.turn_id, message, meta=meta))
            return None
        sent = await turns.append_sending(self.thread_id, turn.turn_id, message, outbox, meta=meta)
        self.add(sent.message)
        return sent.outbox_id

    async def start(self, turn: Turn) -> None:
        """Start a queued turn: its input joins the history (the store marks it running)."""
        self.add(await self.deps.turns.start_turn(turn.turn_id))

    async def finish(self, turn: Turn, text: str, outbox: Mapping[str, Any]) -> FinishedTurn:
        """End `turn` with `text` as its answer, and `outbox` for the interface to deliver,
        in one store transaction; an empty `text` ends it without an answer."""
        finished = await self.deps.turns.finish_turn(
            turn.turn_id,
            state="done",
            final=ChatMessage("assistant", text) if text else None,
            outbox=outbox if text else None,
        )
        self.add(finished.message)
        return finished

    def revise(self, stored: StoredMessage) -> None:
        """Take in a message the store has just rewritten (a voice message, heard)."""
        self.history = [stored if m.id == stored.id else m for m in self.history]

    def forget_from(self, message_id: int) -> None:
        """Drop the messages from `message_id` on (a rewound turn's, superseded in the store)."""
        self.history = [m for m in self.history if m.id < message_id]

    def client(self, source: Source = "owner") -> LLMClient:
        """The model a request of this conversation for `source` goes to."""
        return self.deps.models.for_source(source, self.model)

    async def choose_model(self, name: str | None) -> None:
        """Ask `name` (of `llm.models`; None: the main one) from now on (`/model`)."""
        await self.deps.turns.choose_model(self.thread_id, name)
        self.model = name

    async def new_conversation(self) -> None:
        """Archive the conversation (`/new`): a new epoch, an empty history, no summary."""
        await self.deps.turns.new_epoch(self.thread_id)
        self.history = []
        self.summary = None

    def info(self, turns_done: int) -> ThreadInfo:
        return ThreadInfo(
            thread_id=self.thread_id,
            messages=len(self.history),
            estimated_tokens=self.estimated_tokens(),
            has_summary=bool(self.summary),
            turns_done=turns_done,
        )

    # -- the prompt -----------------------------------------------------------------------

    async def system_prompt(self) -> str:
        files = await self.deps.prompt_files.load()
        context = PromptContext(
            now=self.deps.now(),
            timezone=self.deps.timezone,
            thread_id=self.thread_id,
            interface=self.interface,
        )
        prompt = build_system_prompt(files, context)
        self._system_tokens = estimate_tokens(prompt)
        return prompt

    async def prompt_messages(
        self, *, final_note: str | None = None, images: Images | None = None
    ) -> list[ChatMessage]:
        """The prompt: system prompt, summary, history; `images` (by message id) go with
        their messages (only the turn's own, see `threads.media`)."""
        messages = [ChatMessage("system", await self.system_prompt())]
        if self.summary:
            messages.append(summary_message(self.summary))
        shown = images or {}
        messages += repair_tool_pairs(
            [
                replace(m.message, images=shown[m.id]) if m.id in shown else m.message
                for m in self.history
            ]
        )
        if final_note:
            messages.append(ChatMessage("system", final_note))
        return messages

    def estimated_tokens(self, system_prompt: str | None = "") -> int:
        """The prompt's estimated size: system prompt (None: the one last built), tool
        schemas, summary, history."""
        # The schemas go with every request and can be thousands of tokens; MCP servers
        # add and remove tools at run time, so they are measured each time.
        if system_prompt is None:
            prompt = self._system_tokens or 0
        else:
            prompt = estimate_tokens(system_prompt)
        total = prompt + estimate_schema_tokens(self.deps.tools.schemas())
        if self.summary:
            total += estimate_message_tokens(summary_message(self.summary))
        return total + self._history_tokens

    async def budget(self, source: Source = "owner") -> Budget:
        """What a request to the model for `source` may hold now (the window learned from
        its server, room for the answer, and the calibrated token count)."""
        window = await self.client(source).window()
        reserve = answer_reserve(window.limit, self.deps.config.llm.max_tokens)
        return Budget(window.limit, reserve, window.ratio)

    async def fit(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        images: Images | None = None,
    ) -> Fit:
        """The prompt for the next request, fitted into `budget` with `tools` offered
        (cut where it must be; never calls the model)."""
        messages = await self.prompt_messages(final_note=final_note, images=images)
        return fit_request(messages, estimate_schema_tokens(tools), budget)

    async def fit_compacting(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        images: Images | None = None,
    ) -> Fit:
        """`fit`, but when the prompt only fits with cuts (or not at all), the older part
        of the conversation is summarised by the model first and the prompt built again;
        if the messages kept verbatim (`compaction.keep_recent_messages`) are still too
        many, fewer are kept, down to the newest one alone."""
        fit = await self.fit(budget, tools, final_note=final_note, images=images)
        configured = self.deps.config.compaction.keep_recent_messages
        for keep in sorted({configured, min(configured, 2), 1}, reverse=True):
            if fit.fits and not fit.clips:
                break
            if await self.compact(keep_recent=keep):
                fit = await self.fit(budget, tools, final_note=final_note, images=images)
        return fit

    async def complete(
        self,
        fit: Fit,
        *,
        tools: list[dict[str, Any]] | None,
        on_text: OnText | None = None,
        source: Source = "owner",
    ) -> Completion:
        """Send the fitted prompt to the model for `source`, within the daemon's limit on
        concurrent requests and the day's budgets (the request's size and its answer cap
        are checked before, what it used is counted after).

        Error handling: `BudgetExceeded` when the call would pass a budget (not made);
        `LLMError` from the client."""
        llm = self.deps.config.llm
        client = self.client(source)
        cap = answer_reserve((await client.window()).limit, llm.max_tokens)
        async with self.deps.meter.charge(source, self.thread_id, fit.tokens + cap) as charge:
            async with self.deps.llm_slots:
                completion = await client.complete(
                    fit.messages,
                    tools=tools,
                    on_text=on_text,
                    temperature=llm.temperature,
                    max_tokens=llm.max_tokens,
                )
            await charge.record(completion, fit.tokens)
        return completion

    # -- compaction -----------------------------------------------------------------------

    async def compact_if_needed(self) -> bool:
        """Summarise older messages when the conversation is too long; True when a
        summary was made.

        "Too long" is measured in the server's tokens (calibrated) against the window the
        server really serves.
        """
        config = self.deps.config.compaction
        window = await self.client().window()
        threshold = compaction_threshold(
            config.threshold_tokens, config.threshold_fraction, window.limit
        )
        if self._system_tokens is None:
            await self.system_prompt()
        size = int(self.estimated_tokens(None) * window.ratio)
        if not needs_compaction(size, threshold):
            return False
        return await self._summarise(config.keep_recent_messages, force=False)

    async def compact(self, *, keep_recent: int | None = None) -> bool:
        """Summarise the older messages now, however long the conversation is (`/compact`,
        a prompt that does not fit), keeping the newest `keep_recent` verbatim (default:
        `compaction.keep_recent_messages`); True when a summary was made."""
        configured = self.deps.config.compaction.keep_recent_messages
        return await self._summarise(configured if keep_recent is None else keep_recent, force=True)

    async def _summarise(self, keep_recent: int, *, force: bool) -> bool:
        """Model errors are logged and leave the history as it was: compaction is retried
        after the next turn."""
        # A compaction request must fit the compaction model's window: instructions, the
        # previous summary and room for the answer come off the budget before the
        # transcript is chunked (in estimate units, hence the ratio).
        compacting = self.client("compaction")
        compaction_window = await compacting.window()
        previous = estimate_tokens(self.summary or "")
        budget = max(256, int(compaction_window.limit * 0.6 / compaction_window.ratio) - previous)
        plan = plan_compaction(
            [m.message for m in self.history],
            keep_recent=keep_recent,
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
                request = summary_request(summary, transcript)
                size = int(sum(map(estimate_message_tokens, request)) * compaction_window.ratio)
                cap = answer_reserve(compaction_window.limit, None)
                meter = self.deps.meter
                async with meter.charge("compaction", self.thread_id, size + cap) as charge:
                    async with self.deps.llm_slots:
                        completion = await compacting.complete(request)
                    await charge.record(completion, size)
                summary = completion.content.strip() or summary
        except (LLMError, BudgetExceeded) as exc:
            log.warning("compaction failed, keeping the full history for now: %s", exc)
            return False
        if not summary:
            return False
        upto = self.history[plan.keep_from - 1].id
        await self.deps.turns.set_summary(self.thread_id, summary, upto)
        self.summary = summary
        self.history = self.history[plan.keep_from :]
        log.info("compacted %d message(s) into a summary", plan.keep_from)
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
