"""Replies as Matrix message content: Markdown to sanitised HTML, cut to fit an event.

Pure functions, no I/O.

- `message_content(text)`: `body` is the Markdown text itself (what clients without
  HTML show), `formatted_body` its rendering in `org.matrix.custom.html`, by the rules
  the web chat uses too (`ganglion.markdown`: CommonMark, tables and strikethrough, raw
  HTML escaped, no images, no unsafe links, single newlines kept).
- `edit_content(target, content)`: `content` as an edit (`m.replace`) of the event
  `target`: `m.new_content` is it, the outer body its fallback ("* " first) for clients
  that do not know edits.
- `reply_content(event_id, content)`: `content` as a rich reply to `event_id`
  (`m.in_reply_to`, with no fallback quoted into the body: Matrix 1.13 dropped it).
- `in_thread(root, content, latest)`: `content` in the Element thread of `root`
  (`m.thread`): a rich reply stays one (`is_falling_back` false), anything else
  replies to `latest` as the fallback for clients without threads; an edit is left
  as it is (its relation is `m.replace`).
- `split_reply(text)`: a reply too large for one event becomes several, cut on
  paragraph boundaries (a fenced code block is cut between its lines and each piece is
  fenced again); a paragraph larger than an event alone is cut between lines, then
  between characters.

Matrix limits a whole event to 65,536 bytes (signatures and the envelope included), and
an encrypted event carries its content base64-encoded (4/3 larger), so the content of
one message is kept under `MAX_CONTENT_BYTES` of JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from ganglion.markdown import render_html

__all__ = [
    "MAX_CONTENT_BYTES",
    "edit_content",
    "in_thread",
    "message_content",
    "render_html",
    "reply_content",
    "split_reply",
]

MAX_CONTENT_BYTES: Final = 30_000
HTML_FORMAT: Final = "org.matrix.custom.html"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def message_content(text: str, *, msgtype: str = "m.text") -> dict[str, Any]:
    """The content of an `m.room.message` carrying `text` (Markdown)."""
    return {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": render_html(text),
    }


def edit_content(target: str, content: dict[str, Any]) -> dict[str, Any]:
    """`content` as the `m.replace` of the event `target`."""
    fallback = {**content, "body": f"* {content['body']}"}
    if "formatted_body" in content:
        fallback["formatted_body"] = f"* {content['formatted_body']}"
    return {
        **fallback,
        "m.new_content": content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }


def reply_content(event_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """`content` as a reply to the event `event_id`."""
    return {**content, "m.relates_to": {"m.in_reply_to": {"event_id": event_id}}}


def in_thread(root: str, content: dict[str, Any], latest: str) -> dict[str, Any]:
    """`content` as an event of the thread `root` (see the module docstring)."""
    relation = content.get("m.relates_to") or {}
    if relation.get("rel_type") == "m.replace":
        return content
    quoted = relation.get("m.in_reply_to")
    thread: dict[str, Any] = {"rel_type": "m.thread", "event_id": root}
    if quoted is not None:
        thread |= {"is_falling_back": False, "m.in_reply_to": quoted}
    else:
        thread |= {"is_falling_back": True, "m.in_reply_to": {"event_id": latest}}
    return {**content, "m.relates_to": thread}


def content_size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def split_reply(text: str, limit: int = MAX_CONTENT_BYTES) -> list[str]:
    """`text` cut into pieces whose message content stays under `limit` bytes of JSON,
    on paragraph boundaries where possible. Short texts come back as `[text]`."""
    if content_size(message_content(text)) <= limit:
        return [text]
    return _join([piece for block in _blocks(text) for piece in _fit(block, limit)], "\n\n", limit)


def _join(pieces: list[str], separator: str, limit: int) -> list[str]:
    """Consecutive pieces joined with `separator` while the result fits. Sizes add up
    (each piece is rendered once): a join costs at most `_JOIN_COST` bytes of markup."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        piece_size = _size(piece)
        if current and size + _JOIN_COST + piece_size > limit - _EMPTY:
            chunks.append(separator.join(current))
            current, size = [], 0
        size += piece_size + (_JOIN_COST if current else 0)
        current.append(piece)
    if current:
        chunks.append(separator.join(current))
    return [chunk for chunk in chunks if chunk.strip()]


def _blocks(text: str) -> list[str]:
    """Paragraphs (separated by blank lines), with each fenced code block kept whole."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)):
            fence = None
        if fence is None and not line.strip():
            if current:
                blocks.append("\n".join(current))
            current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _fit(block: str, limit: int) -> list[str]:
    """`block` as is when it fits in one message, else cut between lines (a fenced code
    block is fenced again in every piece), else between characters."""
    if content_size(message_content(block)) <= limit:
        return [block]
    lines = block.split("\n")
    opened = _FENCE.match(lines[0])
    if opened and len(lines) > 2:
        fence_open, fence_close = lines[0], opened.group(1)
        inner = lines[1:-1] if lines[-1].strip().startswith(fence_close) else lines[1:]
        budget = limit - content_size(message_content(f"{fence_open}\n\n{fence_close}"))
        return [f"{fence_open}\n{chunk}\n{fence_close}" for chunk in _pack(inner, budget)]
    return _pack(lines, limit)


def _pack(lines: list[str], limit: int) -> list[str]:
    """Lines joined into chunks under `limit`; a line too long alone is cut between
    characters into chunks of its own."""
    pieces: list[str] = []
    for line in lines:
        if _fits(line, limit):
            pieces.append(line)
        else:
            pieces += _cut(line, limit)
    # Cut pieces of one line must not get a newline between them: each stays alone.
    if len(pieces) == len(lines):
        return _join(pieces, "\n", limit)
    chunks: list[str] = []
    for line in lines:
        chunks += _join([line], "\n", limit) if _fits(line, limit) else _cut(line, limit)
    return chunks


def _cut(line: str, limit: int) -> list[str]:
    """`line` cut into pieces that fit. HTML and JSON escaping make a character cost 1 to
    12 bytes: each piece's length is guessed from the cost of its first characters, then
    shortened until it fits."""
    pieces: list[str] = []
    start = 0
    while start < len(line):
        sample = line[start : start + 256]
        per_char = max(1.0, _size(sample) / len(sample))
        length = max(1, int((limit - _EMPTY) / per_char * 0.9))
        while length > 1 and not _fits(line[start : start + length], limit):
            length = int(length * 0.8)
        pieces.append(line[start : start + length])
        start += length
    return pieces


def _fits(text: str, limit: int) -> bool:
    return content_size(message_content(text)) <= limit


def _size(text: str) -> int:
    """What `text` adds to an empty message's content."""
    return content_size(message_content(text)) - _EMPTY


_EMPTY: Final = content_size(message_content(""))
# Joining two pieces adds at most a paragraph break in both the body and the HTML.
_JOIN_COST: Final = 32
