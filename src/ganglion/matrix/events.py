"""Which invites to accept and which room events to answer: pure decisions, no I/O.

Rules (each test in tests/test_matrix_events.py names one):

1. An invite is accepted only from a user in `allowed_users` (anyone when
   `allow_all_users`), and, when `allowed_rooms` is not empty, only into one of them.
2. A room event is answered only when it is an `m.room.message` of type `m.text` (or
   `m.emote`) with a non-empty text body, or a picture, file, voice or video message
   (`m.image`, `m.file`, `m.audio`, `m.video`, as `matrix.media.media_of` reads it),
   sent by an allowed user other than the bot, in an allowed room. A media message's
   text is its caption (empty without one).
3. Never answered: the bot's own events, notices (`m.notice`: bots talk to each other
   with them, and answering would loop), redactions and redacted events, anything that
   is not a message, a reaction or an edit.
4. The reply fallback an older client quotes into `body` ("> <@user> ...") is not part
   of what was said, and is dropped.
5. The controls (each from an allowed user in an allowed room, like a message): an edit
   (`m.replace`) of a text message with a non-empty `m.new_content` is an `Edit` of the
   original (whose sender the caller checks: only they may edit it); `/stop` alone, or
   a ⏹️ reaction (`m.annotation`), is a `Stop` (of the turn answering the reacted-to
   message, or of whatever runs); a 🔁 reaction is a `Regenerate` of the reply it is on.
6. An approval's answer (`matrix.questions`): a ✅ or ❌ reaction is an `Answer` to the
   event it is on; a text reply (`m.in_reply_to`) saying yes, no or always is an
   `Answer` to the event it replies to, which the caller takes for an ordinary message
   (its `message`) when that event asks nothing. Other reactions are not acted on.
7. What a message says about where it stands, for the caller to decide on: the event
   it replies to (`m.in_reply_to`; not the fallback one of a thread message that
   `is_falling_back`), the Element thread it is in (`m.thread`: its root), and whom it
   mentions (`m.mentions.user_ids`; None when it carries no `m.mentions` at all, as
   from an older client, which is not the same as mentioning no one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ganglion.config import MatrixConfig
from ganglion.ids import matrix_thread_id
from ganglion.matrix.media import MEDIA_MSGTYPES, MediaError, MediaRef, media_of
from ganglion.matrix.questions import ALLOW_KEYS, DENY_KEYS, reply_answer
from ganglion.messages import ApprovalAnswer

__all__ = [
    "REGENERATE_KEYS",
    "STOP_COMMAND",
    "STOP_KEYS",
    "Answer",
    "Control",
    "Edit",
    "Incoming",
    "Regenerate",
    "Skip",
    "Stop",
    "classify_event",
    "events_after_own_join",
    "invite_refusal",
    "is_allowed_room",
    "is_allowed_user",
    "message_text",
]

ANSWERED_MSGTYPES: Final = frozenset({"m.text", "m.emote"})
_REPLY_FALLBACK = re.compile(r"\A(?:>.*\n)+\n", re.MULTILINE)
STOP_COMMAND: Final = "/stop"
# With and without the emoji presentation selector: clients send either.
STOP_KEYS: Final = frozenset({"\u23f9\ufe0f", "\u23f9"})
REGENERATE_KEYS: Final = frozenset({"\U0001f501", "\U0001f501\ufe0f"})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message to answer; `media` the file it brought (to download before it is), or
    `problem`: why the file it names cannot be had (the sender is told)."""

    room_id: str
    event_id: str
    sender: str
    text: str
    media: MediaRef | None = None
    problem: str | None = None
    reply_to: str | None = None
    thread_root: str | None = None
    mentions: frozenset[str] | None = None

    @property
    def conversation(self) -> str:
        """The thread id of the conversation it belongs to (the room, or its thread)."""
        return matrix_thread_id(self.room_id, self.thread_root)


@dataclass(frozen=True, slots=True)
class Edit:
    """`sender` rewrote their message `original` to `text` (rule 5)."""

    room_id: str
    event_id: str
    sender: str
    original: str
    text: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the turn answering `target` (None: whichever turn of the conversation runs:
    the room's, or that of the thread `thread_root` when said in one)."""

    room_id: str
    event_id: str
    sender: str
    target: str | None
    thread_root: str | None = None


@dataclass(frozen=True, slots=True)
class Regenerate:
    """Answer again the turn whose reply is the bot's event `target`."""

    room_id: str
    event_id: str
    sender: str
    target: str


@dataclass(frozen=True, slots=True)
class Answer:
    """`sender` answered what the bot's event `target` asks: a ✅ / ❌ reaction on it, or
    a reply to it saying yes / no / always (`text`: the reply, and `message` the
    ordinary message it is when `target` asks nothing; None for a reaction)."""

    room_id: str
    event_id: str
    sender: str
    target: str
    answer: ApprovalAnswer
    text: str | None = None
    message: Incoming | None = field(default=None, compare=False)


Control = Edit | Stop | Regenerate | Answer


@dataclass(frozen=True, slots=True)
class Skip:
    """An event not answered, and why (for the debug log and the statistics)."""

    reason: str


def is_allowed_user(config: MatrixConfig, user_id: str) -> bool:
    return config.allow_all_users or user_id in config.allowed_users


def is_allowed_room(config: MatrixConfig, room_id: str) -> bool:
    return not config.allowed_rooms or room_id in config.allowed_rooms


def invite_refusal(config: MatrixConfig, room_id: str, inviter: str | None) -> str | None:
    """Why an invite into `room_id` from `inviter` is refused, or None to accept it."""
    if inviter is None or not is_allowed_user(config, inviter):
        return f"{inviter or 'an unknown user'} is not in matrix.allowed_users"
    if not is_allowed_room(config, room_id):
        return f"{room_id} is not in matrix.allowed_rooms"
    return None


def classify_event(
    config: MatrixConfig, own_user_id: str, room_id: str, event: Mapping[str, Any]
) -> Incoming | Control | Skip:
    """Decide about one (decrypted) room event, given as its JSON source."""
    sender = event.get("sender")
    event_id = event.get("event_id")
    if not isinstance(sender, str) or not isinstance(event_id, str):
        return Skip("malformed event")
    if sender == own_user_id:
        return Skip("own event")
    if event.get("type") == "m.room.redaction":
        return Skip("redaction")
    if event.get("type") not in ("m.room.message", "m.reaction"):
        return Skip(f"not a message ({event.get('type')})")
    if not is_allowed_user(config, sender):
        return Skip("sender not in allowed_users")
    if not is_allowed_room(config, room_id):
        return Skip("room not in allowed_rooms")
    content = event.get("content")
    unsigned = event.get("unsigned")
    if not content or (isinstance(unsigned, Mapping) and "redacted_because" in unsigned):
        return Skip("redacted")
    if not isinstance(content, Mapping):
        return Skip("malformed content")
    relation = content.get("m.relates_to")
    if event.get("type") == "m.reaction":
        return _reaction(room_id, event_id, sender, relation)
    if isinstance(relation, Mapping) and relation.get("rel_type") == "m.replace":
        return _edit(room_id, event_id, sender, relation, content.get("m.new_content"))
    msgtype = content.get("msgtype")
    reply_to, root = _reply_and_thread(relation)
    where: dict[str, Any] = {
        "reply_to": reply_to,
        "thread_root": root,
        "mentions": _mentions(content.get("m.mentions")),
    }
    if msgtype in MEDIA_MSGTYPES:
        try:
            media = media_of(content)
        except MediaError as exc:
            return Incoming(room_id, event_id, sender, "", problem=str(exc), **where)
        return Incoming(room_id, event_id, sender, media.caption or "", media, **where)
    if msgtype not in ANSWERED_MSGTYPES:
        return Skip(f"message type {msgtype}")
    body = content.get("body")
    if not isinstance(body, str):
        return Skip("malformed content: body is not text")
    text = _without_reply_fallback(body, relation).strip()
    if not text:
        return Skip("empty message")
    if msgtype == "m.emote":
        text = f"* {sender} {text}"
    if text == STOP_COMMAND:
        return Stop(room_id, event_id, sender, None, root)
    message = Incoming(room_id, event_id, sender, text, **where)
    answer = reply_answer(text)
    target = _replied_to(relation)
    if answer is not None and target is not None and msgtype == "m.text":
        return Answer(room_id, event_id, sender, target, answer, text, message)
    return message


def _reply_and_thread(relation: object) -> tuple[str | None, str | None]:
    """The event a message replies to and the root of its thread (rule 7)."""
    if not isinstance(relation, Mapping):
        return None, None
    root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
    root = root if isinstance(root, str) and root else None
    reply_to = _replied_to(relation)
    if root is not None and relation.get("is_falling_back") is True:
        reply_to = None
    return reply_to, root


def _mentions(mentions: object) -> frozenset[str] | None:
    if not isinstance(mentions, Mapping):
        return None
    user_ids = mentions.get("user_ids")
    if not isinstance(user_ids, list):
        return frozenset()
    return frozenset(user for user in user_ids if isinstance(user, str))


def _replied_to(relation: object) -> str | None:
    """The event a rich reply replies to (`m.in_reply_to`), or None."""
    if not isinstance(relation, Mapping):
        return None
    reply = relation.get("m.in_reply_to")
    target = reply.get("event_id") if isinstance(reply, Mapping) else None
    return target if isinstance(target, str) else None


def _reaction(room_id: str, event_id: str, sender: str, relation: object) -> Control | Skip:
    if not isinstance(relation, Mapping) or relation.get("rel_type") != "m.annotation":
        return Skip("malformed reaction")
    target, key = relation.get("event_id"), relation.get("key")
    if not isinstance(target, str) or not isinstance(key, str):
        return Skip("malformed reaction")
    if key in STOP_KEYS:
        return Stop(room_id, event_id, sender, target)
    if key in REGENERATE_KEYS:
        return Regenerate(room_id, event_id, sender, target)
    if key in ALLOW_KEYS or key in DENY_KEYS:
        return Answer(room_id, event_id, sender, target, "allow" if key in ALLOW_KEYS else "deny")
    return Skip(f"reaction {key}")


def _edit(
    room_id: str, event_id: str, sender: str, relation: Mapping[str, Any], new: object
) -> Edit | Skip:
    original = relation.get("event_id")
    if not isinstance(original, str) or not isinstance(new, Mapping):
        return Skip("malformed edit")
    body = new.get("body")
    if new.get("msgtype") not in ANSWERED_MSGTYPES or not isinstance(body, str):
        return Skip(f"edit to a message of type {new.get('msgtype')}")
    text = body.strip()
    if not text:
        return Skip("edit to an empty message")
    return Edit(room_id, event_id, sender, original, text)


def message_text(content: Mapping[str, Any]) -> str:
    """A message's text as its reader sees it: the body without a reply fallback ("":
    none)."""
    body = content.get("body")
    if not isinstance(body, str):
        return ""
    return _without_reply_fallback(body, content.get("m.relates_to")).strip()


def _without_reply_fallback(body: str, relation: object) -> str:
    if isinstance(relation, Mapping) and "m.in_reply_to" in relation:
        return _REPLY_FALLBACK.sub("", body, count=1)
    return body


def events_after_own_join(
    own_user_id: str, events: Sequence[Mapping[str, Any]]
) -> Sequence[Mapping[str, Any]]:
    """The events of a timeline that come after the bot's own join in it (all of them
    when it has no join: the bot was in the room before this timeline started)."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        content = event.get("content")
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == own_user_id
            and isinstance(content, Mapping)
            and content.get("membership") == "join"
            and not _is_profile_change(event)
        ):
            return events[index + 1 :]
    return events


def _is_profile_change(event: Mapping[str, Any]) -> bool:
    """A join that follows a join is a display name or avatar change, not a joining."""
    unsigned = event.get("unsigned")
    previous = unsigned.get("prev_content") if isinstance(unsigned, Mapping) else None
    return isinstance(previous, Mapping) and previous.get("membership") == "join"
