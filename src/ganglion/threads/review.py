"""A heartbeat review inside a thread: light, traceless when silent.

A review is not a turn of the conversation. It runs the turn loop (`run_model_loop`) on a
prompt of its own: the system prompt (memories and goals included), the conversation's
last few turns (`heartbeat.recent_turns`; the global review has none) and the review's
instructions; nothing of it is added to the history the next turn sends, and it never
compacts. Only the store's turn record (source "heartbeat", no message) remembers it ran:
that is when the conversation was last reviewed.

When the answer is silent (`heartbeat.review.is_silent`) nothing else is written and
nothing is delivered. When it speaks, a conversation's review is stored as a short marker
(`REVIEW_MARKER`) and the answer, and delivered through the outbox like any reply; the
global review (in the system heartbeat thread) hands its answer back to the heartbeat
actor, which speaks it into the conversation it chose (`Announce`).

Per-conversation reviews are offered no tools (cheap); the global review has them, to act
on the goals. A tool that changes what outlives the conversation still shows its "Kept:"
notice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ganglion.beats import REVIEW_MARKER, global_review_text, is_silent, thread_review_text
from ganglion.fitting import Budget, Fit, fit_request
from ganglion.llm import Completion, LLMError, OnText
from ganglion.messages import HeartbeatReview, Notice, Outbound, ReviewOutcome
from ganglion.spend import Source
from ganglion.store import StoredMessage, Turn
from ganglion.threads.conversation import Conversation, Images
from ganglion.threads.repair import repair_tool_pairs
from ganglion.threads.turn import Emit, TurnError, run_model_loop
from ganglion.tokens import estimate_schema_tokens
from ganglion.tools import ToolRegistry
from ganglion.transcript import ChatMessage
from ganglion.usage import BudgetExceeded

__all__ = ["Review", "recent_turns", "run_review"]

log = logging.getLogger(__name__)

NO_TOOLS = ToolRegistry()


def recent_turns(history: Sequence[StoredMessage], count: int) -> list[ChatMessage]:
    """The messages of the last `count` turns (from the `count`-th last user message on)."""
    if count <= 0:
        return []
    starts = [i for i, stored in enumerate(history) if stored.message.role == "user"]
    first = starts[-count] if len(starts) >= count else 0
    return repair_tool_pairs([stored.message for stored in history[first:]])


class _Aside(Conversation):
    """The conversation a review runs on: its own messages, nothing stored, never
    compacted; the reviewed conversation's budget."""

    def __init__(
        self, reviewed: Conversation, messages: list[ChatMessage], tools: ToolRegistry
    ) -> None:
        super().__init__(reviewed.deps, reviewed.thread_id, reviewed.interface, tools=tools)
        self.tokens = 0  # what its requests used, so far (a failed review counts too)
        self._messages = messages

    async def complete(
        self,
        fit: Fit,
        *,
        tools: list[dict[str, Any]] | None,
        on_text: OnText | None = None,
        source: Source = "heartbeat",
    ) -> Completion:
        completion = await super().complete(fit, tools=tools, on_text=on_text, source=source)
        usage = completion.usage
        self.tokens += (usage.prompt_tokens or fit.tokens) + usage.completion_tokens
        return completion

    async def fit(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        images: Images | None = None,
    ) -> Fit:
        note = [ChatMessage("system", final_note)] if final_note else []
        return fit_request([*self._messages, *note], estimate_schema_tokens(tools), budget)

    async def fit_compacting(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        images: Images | None = None,
    ) -> Fit:
        return await self.fit(budget, tools, final_note=final_note)

    async def append(
        self,
        turn: Turn,
        message: ChatMessage,
        *,
        meta: Mapping[str, Any] | None = None,
        outbox: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int | None:
        # A review has no tools that send files: nothing goes to the outbox from here.
        self._messages.append(message)
        return None


@dataclass(frozen=True, slots=True)
class Review:
    """How a review went, and what the thread actor is to say in the conversation for
    it (`speak`: the review's stored turn and the answer; None: nothing)."""

    outcome: ReviewOutcome
    speak: tuple[Turn, str] | None = None


async def run_review(conversation: Conversation, review: HeartbeatReview, emit: Emit) -> Review:
    """Run `review` in `conversation` (see the module docstring); `emit` receives what a
    tool kept (the "Kept:" notices), nothing else."""
    turns = conversation.deps.turns
    thread_id = conversation.thread_id
    turn, _ = await turns.queue_turn(
        thread_id, ChatMessage("user", REVIEW_MARKER), source="heartbeat"
    )
    if review.scope == "global":
        context: list[ChatMessage] = []
        instructions = global_review_text()
    else:
        recent = conversation.deps.config.heartbeat.recent_turns
        context = recent_turns(conversation.history, recent)
        instructions = thread_review_text()
    messages = [
        ChatMessage("system", await conversation.system_prompt()),
        *context,
        ChatMessage("user", instructions),
    ]
    aside = _Aside(
        conversation, messages, conversation.tools if review.scope == "global" else NO_TOOLS
    )

    async def kept(event: Outbound) -> None:
        # Only what a tool kept (notices tied to the turn) reaches the conversation.
        if isinstance(event, Notice) and event.turn_id is not None:
            await emit(event)

    try:
        text = await run_model_loop(aside, turn, kept)
    except BudgetExceeded as exc:
        # Stopped for the day: the meter has told the owner once; the review is no news.
        await turns.finish_turn(turn.turn_id, state="failed", final=None)
        return Review(ReviewOutcome(thread_id, "skipped", exc.user_message, aside.tokens))
    except (LLMError, TurnError) as exc:
        log.warning("heartbeat review of %s failed: %s", thread_id, exc)
        await turns.finish_turn(turn.turn_id, state="failed", final=None)
        return Review(ReviewOutcome(thread_id, "failed", exc.user_message, aside.tokens))
    tokens = aside.tokens
    silent = is_silent(text)
    if silent or review.scope == "global":
        await turns.finish_turn(turn.turn_id, state="done", final=None)
        if silent:
            return Review(ReviewOutcome(thread_id, "silent", "", tokens))
        return Review(ReviewOutcome(thread_id, "spoke", text, tokens))
    return Review(ReviewOutcome(thread_id, "spoke", text, tokens), speak=(turn, text))
