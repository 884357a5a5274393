"""Whom a room message is for, and what the model reads with it: pure decisions, no I/O.

Rules (each test in tests/test_matrix_addressing.py names one):

1. A room with more than two joined members is a group room. There, with
   `matrix.group_rooms: mentions` (the default; `matrix.rooms` sets it per room), a
   message is answered only when it is addressed to the bot: its `m.mentions.user_ids`
   holds the bot, or it replies to one of the bot's messages, or it is in a thread whose
   root is one of them, or (only when it carries no `m.mentions` at all, from a client
   that sends none) its body names the bot: display name, user id or localpart, as a
   word, in any case. A command (`/help`) is always for the bot. In a room of two, and
   with `always`, every message is.
2. A message a group room does not address to the bot is context: kept, from allowed
   users only (nobody else's text gets this far), as `Name: text` on one line, each
   cut to `SAID_CHARS`, at most `SAID_KEPT` of them per conversation, and shown to the model
   with the next message it answers there, newest last, within `CONTEXT_CHARS` in all
   (the oldest go first).
3. In a group room the model reads who is speaking (`Name: text`); in a room of two it
   reads the owner's words as they are.
4. A message that replies to an earlier one (the bot's, or an allowed user's) carries
   that message to the model, cut to `QUOTE_CHARS`, unless it is the bot's reply to the
   conversation's newest message (the model has it already). The first message of a
   thread carries the thread's root the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ganglion.config import GroupRooms, MatrixConfig
from ganglion.matrix.events import Incoming

__all__ = [
    "CONTEXT_CHARS",
    "QUOTE_CHARS",
    "SAID_CHARS",
    "SAID_KEPT",
    "Quote",
    "group_rule",
    "is_addressed",
    "localpart",
    "names_the_bot",
    "said_line",
    "shorten",
    "text_for_model",
]

SAID_CHARS: Final = 500
SAID_KEPT: Final = 20
CONTEXT_CHARS: Final = 4_000
QUOTE_CHARS: Final = 1_000
MIN_NAME: Final = 2  # a one-letter name would be found in every sentence


@dataclass(frozen=True, slots=True)
class Quote:
    """An earlier message a new one refers to: who said it (`name`: as the room shows
    them; None for the bot itself), and what (rule 4)."""

    name: str | None
    text: str
    thread_root: bool = False


def group_rule(config: MatrixConfig, room_id: str) -> GroupRooms:
    """`matrix.rooms`' rule for `room_id`, else `matrix.group_rooms`."""
    room = config.rooms.get(room_id)
    if room is not None and room.group_rooms is not None:
        return room.group_rooms
    return config.group_rooms


def localpart(user_id: str) -> str:
    return user_id.removeprefix("@").partition(":")[0]


def names_the_bot(text: str, names: Sequence[str]) -> bool:
    """Whether `text` names the bot by one of `names`, as a word, in any case."""
    for name in names:
        if len(name.strip()) < MIN_NAME:
            continue
        if re.search(rf"(?<![\w@]){re.escape(name.strip())}(?!\w)", text, re.IGNORECASE):
            return True
    return False


def is_addressed(
    message: Incoming,
    own_user_id: str,
    own_names: Sequence[str],
    *,
    replied_to: str | None,
    thread_root_by: str | None,
    command: bool,
) -> bool:
    """Whether a group room's `message` is for the bot (rule 1): `replied_to` and
    `thread_root_by` are the senders of the event it replies to and of its thread's
    root, when known."""
    if command:
        return True
    if message.mentions is not None and own_user_id in message.mentions:
        return True
    if own_user_id in (replied_to, thread_root_by):
        return True
    return message.mentions is None and names_the_bot(message.text, [own_user_id, *own_names])


def shorten(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def said_line(name: str, message: Incoming) -> str:
    """A context message as the model reads it (rule 2): on one line, so that no line
    of it can pass for another speaker's."""
    what = message.text or (f"[sent a file: {message.media.name}]" if message.media else "")
    return f"{_one_line(name)}: {shorten(_one_line(what), SAID_CHARS)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def text_for_model(
    text: str,
    *,
    speaker: str | None = None,
    said: Sequence[str] = (),
    quote: Quote | None = None,
) -> tuple[str, str]:
    """What the model reads for a message saying `text`: (preamble, preamble + text).
    `speaker` names who speaks in a group room (rule 3), `said` the room's context
    messages since the last answer (rule 2), `quote` what it refers to (rule 4). The
    preamble alone is what an edit of the message keeps."""
    parts: list[str] = []
    kept = _within(said, CONTEXT_CHARS)
    if kept:
        parts.append("[Said in the room meanwhile, not to you:]\n" + "\n".join(kept))
    if quote is not None:
        parts.append(_quoted(quote))
    preamble = "\n\n".join(parts) + ("\n\n" if parts else "")
    if speaker is not None:
        preamble += f"{speaker}: "
    return preamble, preamble + text


def _quoted(quote: Quote) -> str:
    whose = "your" if quote.name is None else f"{quote.name}'s"
    what = "this thread starts with" if quote.thread_root else "in reply to"
    return f'[{what.capitalize()} {whose} message: "{shorten(quote.text, QUOTE_CHARS)}"]'


def _within(lines: Sequence[str], limit: int) -> list[str]:
    """The newest of `lines` that fit in `limit` characters together."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > limit:
            break
        kept.append(line)
    return kept[::-1]
