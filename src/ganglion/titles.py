"""Conversation titles (pure): what the model is asked for one, and how any title is
cleaned before the owner sees it in a list.

Rules every title keeps, whoever wrote it (the model, or the first line of the first
message when the model could not):

1. One line of plain text: no Markdown (headings, quotes, list markers, emphasis, code
   marks; a link is its text), no surrounding quotes, no trailing period or colon.
2. At most `TITLE_CHARS` characters, cut at a word with "…".
3. Never a command (a leading `/word`) nor a tool call (`CALL:…`, JSON): a model's
   answer of that kind is no title at all; a message's first line loses the command
   word and keeps what follows it.

The owner's own rename (`threads.custom_title`) is theirs and never cleaned here.
"""

from __future__ import annotations

import json
import re
from typing import Final

from ganglion.transcript import ChatMessage

__all__ = [
    "TITLE_CHARS",
    "TITLE_INSTRUCTIONS",
    "TITLE_MAX_TOKENS",
    "clean_title",
    "fallback_title",
    "model_title",
    "title_request",
]

TITLE_CHARS: Final = 60
TITLE_MAX_TOKENS: Final = 40  # a title is a dozen tokens; room for a model that dithers
EXCHANGE_CHARS: Final = 1500  # of the first message and of its answer, in the request
# A model's line longer than this is an answer, not a title: it is not used.
LONGEST_ANSWER: Final = 2 * TITLE_CHARS

TITLE_INSTRUCTIONS: Final = (
    "You name conversations for a list. Reply with a short title for the conversation "
    "below: at most six words, plain text on one line, in the conversation's language; "
    "no quotes, no Markdown, no final period. Reply with the title only."
)

_THINKING = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^(title|titre|titel|título)\s*:\s*", re.IGNORECASE)
_COMMAND = re.compile(r"^/[A-Za-z][\w-]*\b\s*")
_CALL = re.compile(r"^CALL\s*:", re.IGNORECASE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_REFERENCE = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_LEADING = re.compile(r"^(?:#{1,6}\s+|#{1,6}$|>+\s?|[-*+]\s+|\d{1,9}[.)]\s+|\[[ xX]\]\s+)")
_HASHES = re.compile(r"(?:^|\s)#{1,6}(?=\s|$)")  # "# Heading one ## two", flattened
_FENCE = re.compile(r"^(```|~~~)")
_MARKS = re.compile(r"\*+|`+|~~|(?<!\w)_+|_+(?!\w)")
_QUOTES: Final = (('"', '"'), ("'", "'"), ("“", "”"), ("\u2018", "\u2019"), ("«", "»"), ("„", "“"))


def title_request(asked: str, answered: str) -> list[ChatMessage]:
    """The request for a title of the conversation that began with `asked` and its
    answer `answered` (each shortened to `EXCHANGE_CHARS`)."""
    exchange = (
        f"User: {_shortened(asked, EXCHANGE_CHARS)}\n\n"
        f"Assistant: {_shortened(answered, EXCHANGE_CHARS)}"
    )
    return [ChatMessage("system", TITLE_INSTRUCTIONS), ChatMessage("user", exchange)]


def model_title(text: str) -> str | None:
    """The title in a model's answer, cleaned; None when it gave none worth showing
    (empty, a command, a tool call, JSON without a title in it, a paragraph)."""
    text = _THINKING.sub("", text).strip()
    if text[:1] in "{[":
        return _json_title(text)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or len(lines[0].strip()) > LONGEST_ANSWER:
        return None
    first = _LABEL.sub("", lines[0].strip())
    if _COMMAND.match(first) or _CALL.match(first):
        return None
    return clean_title(first)


def fallback_title(text: str) -> str | None:
    """The title of a conversation until (or unless) the model names it: the first line
    of its first message that makes one, cleaned (None: no line does)."""
    for line in text.splitlines():
        line = line.strip()
        if _CALL.match(line) or _FENCE.match(line) or (line[:1] in "{[" and _is_json(line)):
            continue
        title = clean_title(_COMMAND.sub("", line, count=1))
        if title is not None:
            return title
    return None


def clean_title(line: str) -> str | None:
    """`line` as a title (the rules at the top); None when nothing readable is left."""
    text = " ".join(line.split())
    for _ in range(3):  # "> - # Heading": the marks a line can start with, nested
        text = _LEADING.sub("", text).strip()
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HASHES.sub(" ", text)
    text = _MARKS.sub("", text)
    text = " ".join(text.split())
    text = _unquoted(text).rstrip(" .:;,")
    text = _unquoted(text)
    if not any(ch.isalnum() for ch in text):
        return None
    return _shortened(text, TITLE_CHARS)


def _unquoted(text: str) -> str:
    for opening, closing in _QUOTES:
        if len(text) > 1 and text.startswith(opening) and text.endswith(closing):
            return text[len(opening) : -len(closing)].strip()
    return text


def _shortened(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at a word where one ends near the end."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + "…"


def _json_title(text: str) -> str | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("title"), str):
        return clean_title(data["title"])
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
