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

from ganglion.tokens import BYTES_PER_TOKEN, estimate_message_tokens
from ganglion.transcript import ChatMessage

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
SEPARATOR = "\n\n"
MIN_SUMMARISED = 2

SUMMARY_INSTRUCTIONS = """\
You maintain the running summary of a long conversation between a person and their \
personal assistant. Write an updated summary that merges the previous summary (if any) \
with the new part of the transcript. Keep all facts, decisions, open tasks and promises, \
names, numbers, dates, file paths and the person's preferences; correct what the new part \
changes; drop greetings and small talk. Write plain, concise notes in the language of the \
conversation, at most about 400 words. Parts marked "[…truncated]" were cut for length. \
Output only the summary."""


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """Summarise `history[:keep_from]`, chunk by chunk, and keep the rest verbatim.

    `chunks` are consecutive runs of indices covering exactly `0 .. keep_from - 1`.
    """

    keep_from: int
    chunks: tuple[tuple[int, ...], ...]


def compaction_threshold(threshold_tokens: int | None, fraction: float, context_window: int) -> int:
    """The prompt size that triggers compaction: `threshold_tokens` when configured,
    else `fraction` of the model's context window."""
    return threshold_tokens if threshold_tokens is not None else int(fraction * context_window)


def needs_compaction(estimated_tokens: int, threshold: int) -> bool:
    """True once the estimate is strictly over the threshold."""
    return estimated_tokens > threshold


def _valid_cuts(history: Sequence[ChatMessage]) -> list[bool]:
    """`valid[p]` is True when keeping `history[p:]` separates no tool call from a result.

    A cut is invalid just before a `tool` message, and anywhere between an assistant
    message's calls and the last result answering them (robust to results that arrive
    late or out of order, not only to the usual adjacent layout).
    """
    valid = [True] * (len(history) + 1)
    called_at: dict[str, int] = {}
    for index, message in enumerate(history):
        for call in message.tool_calls:
            called_at[call.id] = index
        if message.role == "tool":
            valid[index] = False
            call_index = called_at.get(message.tool_call_id or "")
            if call_index is not None:
                for position in range(call_index + 1, index + 1):
                    valid[position] = False
    return valid


def _choose_cut(history: Sequence[ChatMessage], limit: int) -> int:
    """The latest valid cut at or before `limit`, moved back to a turn start (just before
    a user message, or the end of the history) if one is close enough: we give up at
    most half of what could be summarised to land on one. 0 when no cut is valid."""
    valid = _valid_cuts(history)
    best = next((p for p in range(limit, 0, -1) if valid[p]), 0)
    for position in range(best, (best + 1) // 2 - 1, -1):
        if position > 0 and (position == len(history) or history[position].role == "user"):
            return position
    return best


def plan_compaction(
    history: Sequence[ChatMessage],
    *,
    keep_recent: int,
    chunk_budget_tokens: int,
    force: bool = False,
) -> CompactionPlan | None:
    """Which messages to summarise (and in which chunks); None if nothing should be.

    At least the `keep_recent` newest messages are kept verbatim; the cut moves back from
    there so it never separates an assistant message's tool calls from their results, and
    preferably lands just before a user message. Without `force`, a summary is only worth
    a model call when it covers at least `MIN_SUMMARISED` messages; with `force`, None
    means there is nothing before the kept tail that can be cut off cleanly.

    The summarised messages (indices `0 .. keep_from - 1`) are split, in order, into
    chunks whose estimated tokens fit `chunk_budget_tokens`; a single message over the
    budget is a chunk of its own (`render_for_summary` truncates it).
    """
    if len(history) <= keep_recent:
        return None
    keep_from = _choose_cut(history, len(history) - keep_recent)
    if keep_from == 0 or (keep_from < MIN_SUMMARISED and not force):
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
        return f"tool {message.name or '?'} result: {message.text_for_model(images=False) or ''}"
    parts = []
    # Attachments stay as references: the summary says what came and where it is kept.
    if text := message.text_for_model(images=False):
        parts.append(f"{message.role}: {text}")
    for call in message.tool_calls:
        parts.append(f"{message.role} called {call.name}({call.arguments})")
    return "\n".join(parts) or f"{message.role}: (empty)"


def _clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, the marker included (never less than
    the marker itself)."""
    room = max(0, max_bytes - len(TRUNCATED.encode("utf-8")))
    return text.encode("utf-8")[:room].decode("utf-8", errors="ignore") + TRUNCATED


def render_for_summary(messages: Sequence[ChatMessage], *, max_tokens: int) -> str:
    """A plain transcript of `messages` that fits in `max_tokens` (by `estimate_tokens`).

    Lines read "user: …", "assistant: …", "assistant called X(args)" and
    "tool X result: …", messages separated by a blank line. When the whole does not fit,
    the longest messages are cut to a common length (short ones stay whole), each with a
    `TRUNCATED` marker: a message is truncated, never dropped. The only case that exceeds
    `max_tokens` is a budget too small to hold even a marker per message.
    """
    rendered = [_render_one(m) for m in messages]
    sizes = [len(text.encode("utf-8")) for text in rendered]
    room = max_tokens * BYTES_PER_TOKEN - len(SEPARATOR) * max(0, len(rendered) - 1)
    if sum(sizes) <= room:
        return SEPARATOR.join(rendered)
    low, high = 0, max(sizes)  # the largest per-message cap whose total fits
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(size, cap) for size in sizes) <= room:
            low = cap
        else:
            high = cap - 1
    return SEPARATOR.join(
        text if size <= low else _clip(text, low)
        for text, size in zip(rendered, sizes, strict=True)
    )


def summary_request(previous_summary: str | None, transcript: str) -> list[ChatMessage]:
    """The messages asking the compaction model to merge `transcript` into the summary."""
    previous = previous_summary.strip() if previous_summary else "(none)"
    return [
        ChatMessage("system", SUMMARY_INSTRUCTIONS),
        ChatMessage(
            "user",
            f"Previous summary:\n{previous}\n\nNew part of the transcript:\n{transcript}",
        ),
    ]


def summary_message(summary: str) -> ChatMessage:
    """How the summary stands in for the summarised messages in the prompt."""
    return ChatMessage("system", f"Summary of the earlier part of this conversation:\n{summary}")
