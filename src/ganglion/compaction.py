"""Planning history compaction (pure).

When a thread's estimated prompt passes the threshold, its older messages are summarised
by the compaction model and only the summary plus the most recent messages go into the
prompt (the full history stays in the database). The cut point is chosen so that a tool
call is never separated from its results, preferably just before a user message. The
summarised part is split into chunks that each fit the compaction request budget, so a
compaction request never exceeds the model's context window: chunks are summarised one
after the other, each merged into the running summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ganglion.chat import ChatMessage
from ganglion.tokens import estimate_message_tokens, estimate_tokens

__all__ = [
    "CompactionPlan",
    "compaction_threshold",
    "needs_compaction",
    "plan_compaction",
    "render_for_summary",
    "summary_message",
    "summary_request",
]

TRUNCATED = " […truncated]"

SUMMARY_INSTRUCTIONS = """\
You maintain the running summary of a long conversation between a person and their \
personal assistant. Write an updated summary that merges the previous summary (if any) \
with the new part of the transcript. Keep every fact, decision, preference, name, number, \
date, file path and open task or promise; drop greetings and small talk. Write plain \
concise notes in the language of the conversation, at most about 400 words. Output only \
the summary."""


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    keep_from: int
    chunks: tuple[tuple[int, ...], ...]


def compaction_threshold(threshold_tokens: int | None, fraction: float, context_window: int) -> int:
    return threshold_tokens if threshold_tokens is not None else int(fraction * context_window)


def needs_compaction(estimated_tokens: int, threshold: int) -> bool:
    return estimated_tokens > threshold


def _safe_cut(history: Sequence[ChatMessage], cut: int) -> int:
    """Move `cut` back until it does not split a tool call from its results; prefer a
    position just before a user message."""
    if cut >= len(history):
        return len(history)  # keep nothing: no pair can be split
    safe = cut
    while safe > 0 and history[safe].role == "tool":
        safe -= 1  # history[safe] becomes the assistant message that made the calls
    for position in range(safe, 0, -1):
        if history[position].role == "user":
            return position
    return safe


def plan_compaction(
    history: Sequence[ChatMessage],
    *,
    keep_recent: int,
    chunk_budget_tokens: int,
    force: bool = False,
) -> CompactionPlan | None:
    """Which messages to summarise (and in which chunks); None if nothing should be.

    Without `force`, a summary is only worth it when it covers at least two messages.
    """
    if len(history) <= keep_recent:
        return None
    keep_from = _safe_cut(history, len(history) - keep_recent)
    if keep_from == 0 or (keep_from < 2 and not force):
        return None
    chunks: list[tuple[int, ...]] = []
    current: list[int] = []
    used = 0
    for index in range(keep_from):
        cost = estimate_message_tokens(history[index])
        if current and used + cost > chunk_budget_tokens:
            chunks.append(tuple(current))
            current, used = [], 0
        current.append(index)
        used += cost
    chunks.append(tuple(current))
    return CompactionPlan(keep_from, tuple(chunks))


def _render_one(message: ChatMessage) -> str:
    if message.role == "tool":
        return f"tool {message.name or '?'} result: {message.content or ''}"
    parts = []
    if message.content:
        parts.append(f"{message.role}: {message.content}")
    for call in message.tool_calls:
        parts.append(f"{message.role} called {call.name}({call.arguments})")
    return "\n".join(parts) or f"{message.role}: (empty)"


def _truncate(text: str, max_tokens: int) -> str:
    if estimate_tokens(text) <= max_tokens:
        return text
    budget = max(0, max_tokens * 3 - len(TRUNCATED.encode()))
    clipped = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return clipped + TRUNCATED


def render_for_summary(messages: Sequence[ChatMessage], *, max_tokens: int) -> str:
    """A plain transcript of `messages` that fits in `max_tokens`.

    Each message gets an equal share of what the whole would exceed: oversize messages
    are truncated with a marker, never dropped.
    """
    rendered = [_render_one(m) for m in messages]
    if estimate_tokens("\n\n".join(rendered)) <= max_tokens:
        return "\n\n".join(rendered)
    share = max(8, max_tokens // max(1, len(rendered)) - 1)
    return "\n\n".join(_truncate(text, share) for text in rendered)


def summary_request(previous_summary: str | None, transcript: str) -> list[ChatMessage]:
    previous = previous_summary.strip() if previous_summary else "(none)"
    return [
        ChatMessage("system", SUMMARY_INSTRUCTIONS),
        ChatMessage(
            "user",
            f"Previous summary:\n{previous}\n\nNew part of the transcript:\n{transcript}",
        ),
    ]


def summary_message(summary: str) -> ChatMessage:
    return ChatMessage("system", f"Summary of the earlier part of this conversation:\n{summary}")
