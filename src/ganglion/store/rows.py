"""What the conversation store hands out (frozen rows), its errors, and how rows are
encoded (pure: no database here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ganglion.errors import GanglionError
from ganglion.store.sqlite import StoreError
from ganglion.titles import fallback_title
from ganglion.transcript import Attachment, ChatMessage, Role, ToolCall

__all__ = [
    "Chosen",
    "FinishedTurn",
    "FirstExchange",
    "OutboxItem",
    "RewindReason",
    "RewindRefused",
    "Rewound",
    "SearchHit",
    "StoredMessage",
    "ThreadActivity",
    "ThreadDeleted",
    "ThreadState",
    "ThreadSummary",
    "Turn",
]

PENDING = ("queued", "running")


class ThreadDeleted(StoreError):
    """The conversation was deleted: nothing more is written into it, no turn of anyone's
    (the owner's, a reminder's, a review's) is taken."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"conversation {thread_id!r} was deleted")
        self.thread_id = thread_id


class RewindReason(StrEnum):
    """Why a turn cannot be taken back (the interfaces map these to their own codes)."""

    NOTHING = "nothing_to_rewind"  # the conversation has no turn of the owner's yet
    # The turn is not the last one (another came after it) or is not the owner's (a
    # reminder's, a heartbeat review's).
    NOT_LAST = "not_last"
    COMPACTED = "compacted"  # a compaction summary covers its message already
    BUSY = "busy"  # a turn is running or waiting (the thread actor says so first)


class RewindRefused(GanglionError):
    """A turn cannot be taken back: `reason` names the rule and the message, safe to
    show, says it to the owner."""

    def __init__(self, reason: RewindReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of a conversation. `kind` is None for what the model sees, else what the
    owner is shown beside it ('command', 'notice', 'failed'); `source` is the kind of
    turn ('user', 'reminder', 'heartbeat') when this is a turn's input."""

    id: int
    thread_id: str
    turn_id: str | None
    message: ChatMessage
    created_at: float
    meta: Mapping[str, Any] | None = None
    kind: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A conversation as a list of them shows it: `title` is the owner's, else the start
    of its first message; `model` the model chosen for it (None: the main one)."""

    thread_id: str
    title: str
    created_at: float
    updated_at: float | None
    archived: bool
    deleted: bool = False
    model: str | None = None


@dataclass(frozen=True, slots=True)
class FirstExchange:
    """What a conversation's title is made of: the owner's first message (`asked`), the
    answer to it, and the model the conversation asks (None: the main one)."""

    thread_id: str
    asked: str
    answered: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matched a search; `snippet` marks the matches with [ and ]."""

    thread_id: str
    title: str
    message_id: int
    snippet: str


@dataclass(frozen=True, slots=True)
class ThreadActivity:
    """When a thread last had activity of its own, and was last reviewed (None: never),
    in epoch seconds."""

    thread_id: str
    last_activity: float
    last_review: float | None


@dataclass(frozen=True, slots=True)
class Turn:
    """A turn as stored. `state` is 'queued', 'running', 'done' or 'failed';
    `user_message_id` is the id of `input` in the history once the turn started."""

    turn_id: str
    thread_id: str
    source: str
    state: str
    input: ChatMessage
    created_at: float
    user_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadState:
    """The current epoch of a thread: every message (the actor windows them) and the
    pending turns, oldest first; `model`: the model the owner chose for it (None: the
    main one)."""

    thread_id: str
    epoch: int
    summary: str | None
    summary_upto: int | None
    messages: tuple[StoredMessage, ...]
    pending: tuple[Turn, ...]
    model: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """What `finish_turn` stored: the final message, and the outbox row to mark
    delivered once an interface has delivered the reply."""

    message: StoredMessage | None
    outbox_id: int | None


@dataclass(frozen=True, slots=True)
class Rewound:
    """What `rewind_turn` did: the new turn (queued), whether it was created now (False:
    a rewind with this new turn id happened before, nothing was changed), and the id of
    the first superseded row (the thread drops it and all after it from its history)."""

    turn: Turn
    created: bool
    superseded_from: int | None


@dataclass(frozen=True, slots=True)
class Chosen:
    """What `choose_version` did: the id of the first row it superseded (the thread drops
    it and all after it from its history; None: the chosen version was shown already) and
    the chosen version's rows, which the thread takes in instead."""

    superseded_from: int | None
    messages: tuple[StoredMessage, ...]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    thread_id: str
    turn_id: str | None
    kind: str
    payload: Mapping[str, Any]
    created_at: float


def encode(message: ChatMessage) -> dict[str, Any]:
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": json.dumps(calls) if calls else None,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        # The images are a request's, never stored (see `ganglion.transcript`).
        "attachments": json.dumps([a.to_json() for a in message.attachments])
        if message.attachments
        else None,
    }


def decode(row: Mapping[str, Any]) -> ChatMessage:
    calls = tuple(
        ToolCall(c["id"], c["name"], c["arguments"]) for c in json.loads(row["tool_calls"] or "[]")
    )
    files = tuple(Attachment.from_json(a) for a in json.loads(row.get("attachments") or "[]"))
    role: Role = row["role"]
    return ChatMessage(
        role, row["content"], calls, row["tool_call_id"], row["name"], attachments=files
    )


def stored_message(row: Mapping[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        thread_id=row["thread_id"],
        turn_id=row["turn_id"],
        message=decode(row),
        created_at=row["created_at"],
        meta=json.loads(row["meta"]) if row["meta"] is not None else None,
        kind=row["kind"],
        source=row.get("source"),
    )


def thread_summary(row: Mapping[str, Any]) -> ThreadSummary:
    return ThreadSummary(
        thread_id=row["thread_id"],
        title=row["custom_title"] or row["title"] or "New chat",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        archived=bool(row["archived"]),
        deleted=bool(row["deleted"]),
        model=row.get("model"),
    )


def title(text: str) -> str | None:
    """A conversation's title until the model names it (`ganglion.titles`)."""
    return fallback_title(text)


def turn_row(row: Mapping[str, Any]) -> Turn:
    return Turn(
        turn_id=row["turn_id"],
        thread_id=row["thread_id"],
        user_message_id=row["user_message_id"],
        source=row["source"],
        state=row["state"],
        input=decode(json.loads(row["input"])),
        created_at=row["created_at"],
    )


def outbox_item(row: Mapping[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        thread_id=row["thread_id"],
        turn_id=row["turn_id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
    )
