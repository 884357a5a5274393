"""Fitting a request into the model's context window (pure).

A request is the system prompt, the tool schemas, the summary, the history and room for
the answer. `Budget` says how many of the server's tokens there are (the window learned by
`ganglion.llm.window`), how many are kept for the answer, and how `ganglion.tokens`
estimates convert into the server's tokens. `fit_request` then either passes the messages
through untouched, or cuts the middle out of the largest ones (never the system prompt,
never a tool call's arguments) until the whole fits, or says that it cannot: the system
prompt and tools alone leave no room.

Cutting is the last resort, after compaction has summarised what it could: it keeps a
huge paste or tool result usable (its beginning and end, with a note saying what was
cut) instead of sending a request the server must refuse. Cuts are deterministic, so
the same history is cut the same way on every request, and only what is sent is cut:
the store keeps every message whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ganglion.tokens import BYTES_PER_TOKEN, estimate_message_tokens, estimate_tokens
from ganglion.transcript import ChatMessage

__all__ = [
    "MIN_KEPT_TOKENS",
    "Budget",
    "Clip",
    "Fit",
    "answer_reserve",
    "clip_middle",
    "fit_request",
]

# A cut message keeps at least this many estimated tokens of its own text.
MIN_KEPT_TOKENS = 48
CUT_NOTE = (
    "\n[… {cut:,} characters cut here: the message is too long for the model's context window …]\n"
)
# Share of what is kept that comes from the beginning of a cut message.
HEAD_SHARE = 0.6


def answer_reserve(window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer: `llm.max_tokens` when set (servers such as vLLM
    refuse a request whose prompt plus `max_tokens` exceeds the window), else an eighth
    of the window, between 256 and 2,048 tokens."""
    if max_tokens is not None:
        return min(max_tokens, window // 2)
    return max(256, min(2048, window // 8))


@dataclass(frozen=True, slots=True)
class Budget:
    """How much a request may hold. `window` and `reserve` are in the server's tokens;
    `ratio` converts an estimate into them (`WindowState.count`)."""

    window: int
    reserve: int
    ratio: float = 1.0
    safety: float = 1.08

    @property
    def room(self) -> int:
        """The server's tokens the prompt may take."""
        return max(0, self.window - self.reserve)

    def count(self, estimate: int) -> int:
        """An estimate (from `ganglion.tokens`) in the server's tokens, rounded up."""
        return math.ceil(estimate * self.ratio * self.safety)

    def estimated_room(self) -> int:
        """`room` in estimate units: the most a prompt may be estimated at."""
        return math.floor(self.room / (self.ratio * self.safety))


@dataclass(frozen=True, slots=True)
class Clip:
    """Message `index` was cut from `original` to `kept` estimated tokens."""

    index: int
    original: int
    kept: int


@dataclass(frozen=True, slots=True)
class Fit:
    """The messages to send (`clips` say which were cut), and the request's size in the
    server's tokens; or, when `fits` is False, the size of what could not be cut (the
    system prompt, the tool schemas and the shortest form of every other message)."""

    messages: list[ChatMessage]
    tokens: int
    fixed_tokens: int
    clips: tuple[Clip, ...] = ()
    fits: bool = True


def clip_middle(text: str, max_tokens: int) -> str:
    """`text` with its middle replaced by a note, at most `max_tokens` estimated tokens
    in all (the note included); `text` itself when it fits."""
    if estimate_tokens(text) <= max_tokens:
        return text
    data = text.encode("utf-8")
    note_bytes = len(CUT_NOTE.format(cut=len(text)).encode("utf-8"))
    room = max(0, max_tokens * BYTES_PER_TOKEN - note_bytes)
    head = data[: int(room * HEAD_SHARE)].decode("utf-8", errors="ignore")
    tail_bytes = room - len(head.encode("utf-8"))
    tail = data[len(data) - tail_bytes :].decode("utf-8", errors="ignore") if tail_bytes else ""
    cut = len(text) - len(head) - len(tail)
    return head + CUT_NOTE.format(cut=cut) + tail


def _content_tokens(message: ChatMessage) -> int:
    return estimate_tokens(message.content or "")


def fit_request(messages: Sequence[ChatMessage], tools_estimate: int, budget: Budget) -> Fit:
    """`messages` (the system prompt first) cut as little as possible to fit `budget`
    together with tool schemas estimated at `tools_estimate`.

    The first message (the system prompt) is never cut; every other message's text may
    be: the longest are cut to a common length (the shorter ones stay whole), as long as
    each keeps `MIN_KEPT_TOKENS`. Tool calls, ids and names are never cut.
    """
    costs = [estimate_message_tokens(m) for m in messages]
    total = sum(costs) + tools_estimate
    if budget.count(total) <= budget.room:
        return Fit(list(messages), budget.count(total), budget.count(total))
    contents = [0, *(_content_tokens(m) for m in messages[1:])]
    # What each message costs beyond its text, and the smallest form it can take.
    fixed = [cost - text for cost, text in zip(costs, contents, strict=True)]
    fixed[0] = costs[0]
    floor_total = tools_estimate + sum(fixed) + sum(min(c, MIN_KEPT_TOKENS) for c in contents)
    # The note costs tokens too: a cut message takes its cap plus at most one more token
    # for rounding, so the cap is searched against a room one token smaller per message.
    room = budget.estimated_room() - tools_estimate - sum(fixed) - len(messages)
    if sum(min(c, MIN_KEPT_TOKENS) for c in contents) > room:
        return Fit(list(messages), budget.count(total), budget.count(floor_total), fits=False)
    low, high = MIN_KEPT_TOKENS, max(contents)
    while low < high:  # the largest per-message cap whose total fits
        cap = (low + high + 1) // 2
        if sum(min(c, cap) for c in contents) <= room:
            low = cap
        else:
            high = cap - 1
    fitted = list(messages)
    clips: list[Clip] = []
    for index in range(1, len(messages)):
        if contents[index] > low:
            message = messages[index]
            fitted[index] = replace(message, content=clip_middle(message.content or "", low))
            clips.append(Clip(index, contents[index], _content_tokens(fitted[index])))
    sent = sum(estimate_message_tokens(m) for m in fitted) + tools_estimate
    return Fit(fitted, budget.count(sent), budget.count(floor_total), tuple(clips))
