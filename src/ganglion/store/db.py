"""The conversation database: one connection and one writer (`SQLiteStore`), shared by
the store's seven parts (`turns`, `outbox`, `library`, `activity`, `usage`, `approvals`,
`titles`), and the few things each of them does inside the worker thread.

The methods that take no `await` run inside the worker thread only (in a function
handed to `read` or `write`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ganglion.store.rows import StoredMessage, ThreadDeleted, Turn, encode, turn_row
from ganglion.store.schema import migrations
from ganglion.store.sqlite import SQLiteStore, StoreError
from ganglion.transcript import ChatMessage

__all__ = ["ConversationDB"]

T = TypeVar("T")


class ConversationDB(SQLiteStore):
    """`data/conversation.db`, open. Error handling: `StoreError`, for an unknown thread
    or turn as for a database failure."""

    migrations = migrations
    description = "conversation store"

    async def read(self, fn: Callable[[], T]) -> T:
        return await self._read(fn)

    async def write(self, fn: Callable[[], T]) -> T:
        """`fn` in the writer's next transaction (writes that arrive together share one)."""
        return await self._write(fn)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._rows(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def update_thread(self, thread_id: str, column: str, value: Any) -> None:
        cursor = self.execute(
            f"UPDATE threads SET {column} = ? WHERE thread_id = ? AND deleted = 0",
            (value, thread_id),
        )
        if cursor.rowcount == 0:
            raise StoreError(f"unknown thread {thread_id!r}")

    def refuse_deleted(self, thread_id: str) -> None:
        rows = self.rows("SELECT deleted FROM threads WHERE thread_id = ?", (thread_id,))
        if rows and rows[0]["deleted"]:
            raise ThreadDeleted(thread_id)

    def epoch(self, thread_id: str) -> int:
        rows = self.rows("SELECT epoch FROM threads WHERE thread_id = ?", (thread_id,))
        if not rows:
            raise StoreError(f"unknown thread {thread_id!r}")
        return int(rows[0]["epoch"])

    def get_turn(self, turn_id: str) -> Turn:
        rows = self.rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        if not rows:
            raise StoreError(f"unknown turn {turn_id!r}")
        return turn_row(rows[0])

    def pending(self, thread_id: str) -> tuple[Turn, ...]:
        rows = self.rows(
            "SELECT turns.* FROM turns JOIN threads USING (thread_id) "
            "WHERE turns.thread_id = ? AND turns.epoch = threads.epoch "
            "AND turns.state IN ('queued', 'running') ORDER BY turns.rowid",
            (thread_id,),
        )
        return tuple(turn_row(r) for r in rows)

    def insert_message(
        self,
        thread_id: str,
        turn_id: str | None,
        message: ChatMessage,
        meta: Mapping[str, Any] | None,
        kind: str | None = None,
    ) -> StoredMessage:
        now = time.time()
        record = {
            "thread_id": thread_id,
            "epoch": self.epoch(thread_id),
            "turn_id": turn_id,
            **encode(message),
            "created_at": now,
            "meta": json.dumps(dict(meta)) if meta is not None else None,
            "kind": kind,
        }
        cursor = self.execute(
            f"INSERT INTO messages ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
            list(record.values()),
        )
        self.execute("UPDATE threads SET updated_at = ? WHERE thread_id = ?", (now, thread_id))
        assert cursor.lastrowid is not None
        return StoredMessage(cursor.lastrowid, thread_id, turn_id, message, now, meta, kind)

    def insert_outbox(
        self, thread_id: str, turn_id: str | None, kind: str, payload: Mapping[str, Any]
    ) -> int:
        """Queue `payload` for the interface to deliver ('reply': a turn's answer; 'file':
        a file a tool sent)."""
        cursor = self.execute(
            "INSERT INTO outbox (thread_id, turn_id, kind, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (thread_id, turn_id, kind, json.dumps(dict(payload)), time.time()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid
