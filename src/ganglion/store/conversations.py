"""The conversation store: `data/conversation.db`.

Storage design
--------------

One SQLite database in WAL mode with `synchronous=FULL`: a committed user message
survives a power cut, which is what the write-ahead promise ("committed before the model
is called") needs. Tables:

- `threads`: one row per conversation. `epoch` is bumped by `/new`; messages of older
  epochs stay in the database (archived) but are no longer loaded. `summary` and
  `summary_upto` hold the compaction summary and the last message id it covers.
- `messages`: append-only, one row per chat message (tool calls as JSON), keyed by an
  autoincrement id and indexed by (thread_id, epoch, id). Appending is one INSERT whatever
  the history length: nothing is ever rewritten.
- `turns`: the life of each turn: `queued` (the input is stored in the row the moment it
  arrives) -> `running` (the input was appended to `messages`) -> `done` / `failed`.
  Unfinished turns are answered after a restart; `done` is written in the same
  transaction as the reply, so a turn is never answered twice.
- `outbox`: replies an interface must deliver, written in the turn's final transaction
  and marked when delivered (a tab that was closed gets them on reconnect).

All blocking work runs in a worker thread, one statement batch at a time (a
`CapacityLimiter(1)` per store), on one connection; each write is one short transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlite_utils

from ganglion.chat import ChatMessage, Role, ToolCall
from ganglion.store.migrations import Migrations
from ganglion.store.sqlite import SQLiteStore, StoreError, StoreStatistics

__all__ = [
    "ConversationStore",
    "FinishedTurn",
    "OutboxItem",
    "StoreError",
    "StoreStatistics",
    "StoredMessage",
    "ThreadState",
    "Turn",
]

migrations = Migrations("conversation")


@migrations.migration
def create_tables(db: sqlite_utils.Database) -> None:
    db.table("threads").create(
        {
            "thread_id": str,
            "interface": str,
            "created_at": float,
            "epoch": int,
            "summary": str,
            "summary_upto": int,
        },
        pk="thread_id",
        not_null={"interface", "created_at", "epoch"},
        defaults={"epoch": 0},
    )
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            thread_id TEXT NOT NULL REFERENCES threads(thread_id),
            epoch INTEGER NOT NULL,
            turn_id TEXT,
            role TEXT NOT NULL,
            content TEXT,
            tool_calls TEXT,
            tool_call_id TEXT,
            name TEXT,
            created_at REAL NOT NULL,
            meta TEXT
        )"""
    )
    db.execute("CREATE INDEX messages_by_thread ON messages (thread_id, epoch, id)")
    db.table("turns").create(
        {
            "turn_id": str,
            "thread_id": str,
            "epoch": int,
            "source": str,
            "state": str,
            "input": str,
            "user_message_id": int,
            "created_at": float,
            "finished_at": float,
        },
        pk="turn_id",
        not_null={"thread_id", "epoch", "source", "state", "input", "created_at"},
        foreign_keys=[("thread_id", "threads", "thread_id")],
    )
    db.execute(
        "CREATE INDEX turns_unfinished ON turns (thread_id, created_at) WHERE state IN ('queued', 'running')"
    )
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            thread_id TEXT NOT NULL,
            turn_id TEXT,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL
        )"""
    )
    db.execute(
        "CREATE INDEX outbox_undelivered ON outbox (thread_id, id) WHERE delivered_at IS NULL"
    )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    thread_id: str
    turn_id: str | None
    message: ChatMessage
    created_at: float
    meta: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    turn_id: str
    thread_id: str
    source: str
    state: str
    input: ChatMessage
    created_at: float


@dataclass(frozen=True, slots=True)
class ThreadState:
    thread_id: str
    epoch: int
    summary: str | None
    summary_upto: int | None
    messages: tuple[StoredMessage, ...]
    pending: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    message: StoredMessage | None
    outbox_id: int | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    thread_id: str
    turn_id: str | None
    kind: str
    payload: Mapping[str, Any]
    created_at: float


def _encode(message: ChatMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": json.dumps(
            [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
        )
        if message.tool_calls
        else None,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def _decode(row: Mapping[str, Any]) -> ChatMessage:
    calls = tuple(
        ToolCall(c["id"], c["name"], c["arguments"]) for c in json.loads(row["tool_calls"] or "[]")
    )
    role: Role = row["role"]
    return ChatMessage(role, row["content"], calls, row["tool_call_id"], row["name"])


def _stored(row: Mapping[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        thread_id=row["thread_id"],
        turn_id=row["turn_id"],
        message=_decode(row),
        created_at=row["created_at"],
        meta=json.loads(row["meta"]) if row["meta"] else None,
    )


def _turn(row: Mapping[str, Any]) -> Turn:
    return Turn(
        turn_id=row["turn_id"],
        thread_id=row["thread_id"],
        source=row["source"],
        state=row["state"],
        input=_decode(json.loads(row["input"])),
        created_at=row["created_at"],
    )


class ConversationStore(SQLiteStore):
    """Per-thread history, turns and outbox. Open with `await ConversationStore.open(path)`."""

    migrations = migrations
    description = "conversation store"

    def _epoch(self, thread_id: str) -> int:
        rows = self._rows("SELECT epoch FROM threads WHERE thread_id = ?", (thread_id,))
        if not rows:
            raise StoreError(f"unknown thread {thread_id!r}")
        return int(rows[0]["epoch"])

    def _insert_message(
        self,
        thread_id: str,
        turn_id: str | None,
        message: ChatMessage,
        meta: Mapping[str, Any] | None,
    ) -> StoredMessage:
        now = time.time()
        record = {
            "thread_id": thread_id,
            "epoch": self._epoch(thread_id),
            "turn_id": turn_id,
            **_encode(message),
            "created_at": now,
            "meta": json.dumps(meta) if meta else None,
        }
        cursor = self._db.execute(
            f"INSERT INTO messages ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
            list(record.values()),
        )
        assert cursor.lastrowid is not None
        return StoredMessage(cursor.lastrowid, thread_id, turn_id, message, now, meta)

    # -- threads ---------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, *, interface: str) -> ThreadState:
        """The thread's current epoch: summary, messages and unfinished turns."""

        def load() -> ThreadState:
            self._db.execute(
                "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch) "
                "VALUES (?, ?, ?, 0)",
                (thread_id, interface, time.time()),
            )
            thread = self._rows("SELECT * FROM threads WHERE thread_id = ?", (thread_id,))[0]
            epoch = thread["epoch"]
            messages = self._rows(
                "SELECT * FROM messages WHERE thread_id = ? AND epoch = ? ORDER BY id",
                (thread_id, epoch),
            )
            turns = self._rows(
                "SELECT * FROM turns WHERE thread_id = ? AND epoch = ? "
                "AND state IN ('queued', 'running') ORDER BY created_at, rowid",
                (thread_id, epoch),
            )
            return ThreadState(
                thread_id=thread_id,
                epoch=epoch,
                summary=thread["summary"],
                summary_upto=thread["summary_upto"],
                messages=tuple(_stored(r) for r in messages),
                pending=tuple(_turn(r) for r in turns),
            )

        return await self._write(load)

    async def set_summary(self, thread_id: str, summary: str, upto_message_id: int) -> None:
        await self._write(
            lambda: self._db.execute(
                "UPDATE threads SET summary = ?, summary_upto = ? WHERE thread_id = ?",
                (summary, upto_message_id, thread_id),
            )
        )

    async def new_epoch(self, thread_id: str) -> int:
        """Archive the thread's history and start afresh; return the new epoch."""

        def bump() -> int:
            epoch = self._epoch(thread_id)
            self._db.execute(
                "UPDATE turns SET state = 'failed', finished_at = ? WHERE thread_id = ? "
                "AND epoch = ? AND state IN ('queued', 'running')",
                (time.time(), thread_id, epoch),
            )
            self._db.execute(
                "UPDATE threads SET epoch = ?, summary = NULL, summary_upto = NULL "
                "WHERE thread_id = ?",
                (epoch + 1, thread_id),
            )
            return epoch + 1

        return await self._write(bump)

    async def threads_with_pending_turns(self) -> tuple[str, ...]:
        rows = await self._read(
            lambda: self._rows(
                "SELECT DISTINCT turns.thread_id FROM turns JOIN threads USING (thread_id) "
                "WHERE turns.state IN ('queued', 'running') AND turns.epoch = threads.epoch "
                "ORDER BY turns.thread_id"
            )
        )
        return tuple(r["thread_id"] for r in rows)

    # -- turns and messages ----------------------------------------------------------------

    async def queue_turn(
        self,
        thread_id: str,
        message: ChatMessage,
        *,
        source: str,
        turn_id: str | None = None,
    ) -> tuple[Turn, bool]:
        """Durably record an incoming turn. Idempotent by `turn_id`: returns the existing
        turn and False when it was recorded before."""
        turn_id = turn_id or uuid.uuid4().hex

        def queue() -> tuple[Turn, bool]:
            existing = self._rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
            if existing:
                return _turn(existing[0]), False
            now = time.time()
            self._db.execute(
                "INSERT INTO turns (turn_id, thread_id, epoch, source, state, input, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (
                    turn_id,
                    thread_id,
                    self._epoch(thread_id),
                    source,
                    json.dumps(_encode(message)),
                    now,
                ),
            )
            return Turn(turn_id, thread_id, source, "queued", message, now), True

        return await self._write(queue)

    async def start_turn(self, turn_id: str) -> StoredMessage:
        """Append the turn's input to the history and mark it running (one transaction)."""

        def start() -> StoredMessage:
            rows = self._rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
            if not rows or rows[0]["state"] != "queued":
                raise StoreError(f"turn {turn_id!r} is not queued")
            turn = _turn(rows[0])
            stored = self._insert_message(turn.thread_id, turn_id, turn.input, None)
            self._db.execute(
                "UPDATE turns SET state = 'running', user_message_id = ? WHERE turn_id = ?",
                (stored.id, turn_id),
            )
            return stored

        return await self._write(start)

    async def append(
        self,
        thread_id: str,
        turn_id: str | None,
        message: ChatMessage,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> StoredMessage:
        return await self._write(lambda: self._insert_message(thread_id, turn_id, message, meta))

    async def finish_turn(
        self,
        turn_id: str,
        *,
        state: Literal["done", "failed"],
        final: ChatMessage | None,
        outbox: Mapping[str, Any] | None = None,
    ) -> FinishedTurn:
        """Store the final reply, the turn's end and its outbox entry in one transaction."""

        def finish() -> FinishedTurn:
            rows = self._rows("SELECT thread_id FROM turns WHERE turn_id = ?", (turn_id,))
            if not rows:
                raise StoreError(f"unknown turn {turn_id!r}")
            thread_id = rows[0]["thread_id"]
            now = time.time()
            stored = self._insert_message(thread_id, turn_id, final, None) if final else None
            self._db.execute(
                "UPDATE turns SET state = ?, finished_at = ? WHERE turn_id = ?",
                (state, now, turn_id),
            )
            outbox_id = None
            if outbox is not None:
                cursor = self._db.execute(
                    "INSERT INTO outbox (thread_id, turn_id, kind, payload, created_at) "
                    "VALUES (?, ?, 'reply', ?, ?)",
                    (thread_id, turn_id, json.dumps(outbox), now),
                )
                outbox_id = cursor.lastrowid
            return FinishedTurn(stored, outbox_id)

        return await self._write(finish)

    # -- outbox and paging -----------------------------------------------------------------

    async def undelivered(
        self, thread_id: str | None = None, *, limit: int = 100
    ) -> tuple[OutboxItem, ...]:
        where, params = ("AND thread_id = ?", [thread_id]) if thread_id else ("", [])
        rows = await self._read(
            lambda: self._rows(
                f"SELECT * FROM outbox WHERE delivered_at IS NULL {where} ORDER BY id LIMIT ?",
                [*params, limit],
            )
        )
        return tuple(
            OutboxItem(
                r["id"],
                r["thread_id"],
                r["turn_id"],
                r["kind"],
                json.loads(r["payload"]),
                r["created_at"],
            )
            for r in rows
        )

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        marks = ", ".join("?" * len(outbox_ids))
        await self._write(
            lambda: self._db.execute(
                f"UPDATE outbox SET delivered_at = ? WHERE id IN ({marks}) AND delivered_at IS NULL",
                [time.time(), *outbox_ids],
            )
        )

    async def history_page(
        self, thread_id: str, *, before_id: int | None = None, limit: int = 200
    ) -> tuple[StoredMessage, ...]:
        """Up to `limit` messages of the current epoch before `before_id`, oldest first."""

        def page() -> tuple[StoredMessage, ...]:
            rows = self._rows(
                "SELECT m.* FROM messages m JOIN threads t USING (thread_id) "
                "WHERE m.thread_id = ? AND m.epoch = t.epoch AND m.id < ? "
                "ORDER BY m.id DESC LIMIT ?",
                (thread_id, before_id if before_id is not None else 2**62, limit),
            )
            return tuple(_stored(r) for r in reversed(rows))

        return await self._read(page)
