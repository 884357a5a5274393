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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ganglion.fitting import Budget, Fit, fit_request
from ganglion.heartbeat.review import (
    REVIEW_MARKER,
    global_review_text,
    is_silent,
    thread_review_text,
)
from ganglion.llm import LLMError
from ganglion.messages import HeartbeatReview, Notice, Outbound, ReviewOutcome
from ganglion.store import StoredMessage, Turn
from ganglion.threads.turn import TurnError, repair_tool_pairs, run_model_loop
from ganglion.tokens import estimate_schema_tokens
from ganglion.tools import ToolRegistry
from ganglion.transcript import ChatMessage, Usage

if TYPE_CHECKING:
    from ganglion.threads.actor import ThreadActor

__all__ = ["recent_turns", "run_review"]

log = logging.getLogger(__name__)

NO_TOOLS = ToolRegistry()


def recent_turns(history: Sequence[StoredMessage], count: int) -> list[ChatMessage]:
    """The messages of the last `count` turns (from the `count`-th last user message on)."""
    if count <= 0:
        return []
    starts = [i for i, stored in enumerate(history) if stored.message.role == "user"]
    first = starts[-count] if len(starts) >= count else 0
    return repair_tool_pairs([stored.message for stored in history[first:]])


class _ReviewHost:
    """The `TurnHost` of a review: its own messages, nothing stored, nothing streamed."""

    def __init__(self, actor: ThreadActor, messages: list[ChatMessage], tools: bool) -> None:
        self.thread_id = actor.thread_id
        self.interface = actor.interface
        self.deps = actor.deps if tools else replace(actor.deps, tools=NO_TOOLS)
        self.tokens = 0
        self._actor = actor
        self._messages = messages

    async def budget(self) -> Budget:
        return await self._actor.budget()

    async def fit_prompt(
        self,
        budget: Budget,
        tools: list[dict[str, Any]] | None,
        *,
        final_note: str | None = None,
        may_compact: bool = False,
    ) -> Fit:
        note = [ChatMessage("system", final_note)] if final_note else []
        return fit_request([*self._messages, *note], estimate_schema_tokens(tools), budget)

    async def append(
        self, turn: Turn, message: ChatMessage, *, meta: Mapping[str, Any] | None = None
    ) -> None:
        self._messages.append(message)

    async def emit(self, event: Outbound) -> None:
        # Only what a tool kept (notices tied to the turn) reaches the conversation.
        if isinstance(event, Notice) and event.turn_id is not None:
            await self._actor.emit(event)

    def used(self, usage: Usage, estimated_prompt: int) -> None:
        prompt = usage.prompt_tokens or estimated_prompt
        self.tokens += prompt + usage.completion_tokens


async def run_review(actor: ThreadActor, review: HeartbeatReview) -> ReviewOutcome:
    """Run `review` in `actor`'s conversation (see the module docstring)."""
    store = actor.deps.store
    turn, _ = await store.queue_turn(
        actor.thread_id, ChatMessage("user", REVIEW_MARKER), source="heartbeat"
    )
    if review.scope == "global":
        context: list[ChatMessage] = []
        instructions = global_review_text()
    else:
        context = recent_turns(actor.history, actor.deps.config.heartbeat.recent_turns)
        instructions = thread_review_text()
    messages = [
        ChatMessage("system", await actor.system_prompt()),
        *context,
        ChatMessage("user", instructions),
    ]
    host = _ReviewHost(actor, messages, tools=review.scope == "global")
    try:
        text = await run_model_loop(host, turn)
    except (LLMError, TurnError) as exc:
        log.warning("heartbeat review of %s failed: %s", actor.thread_id, exc)
        await store.finish_turn(turn.turn_id, state="failed", final=None)
        return ReviewOutcome(actor.thread_id, "failed", exc.user_message, host.tokens)
    silent = is_silent(text)
    if silent or review.scope == "global":
        await store.finish_turn(turn.turn_id, state="done", final=None)
        if silent:
            return ReviewOutcome(actor.thread_id, "silent", "", host.tokens)
        return ReviewOutcome(actor.thread_id, "spoke", text, host.tokens)
    await actor.speak(turn, text)
    return ReviewOutcome(actor.thread_id, "spoke", text, host.tokens)
