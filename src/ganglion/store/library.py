"""The library: the conversations as the owner browses them (list, search, history), and
what the daemon changes in it (the rows shown beside a conversation, rename, archive,
delete).

The interfaces read it directly; what changes a conversation goes through the daemon
(`ganglion.backend`), which tells the conversation's actor and every open tab too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ganglion.store.db import ConversationDB
from ganglion.store.rows import (
    SearchHit,
    StoredMessage,
    ThreadSummary,
    Turn,
    stored_message,
    thread_summary,
)
from ganglion.store.sqlite import StoreError
from ganglion.transcript import ChatMessage, Role

__all__ = ["Library"]

DISPLAY_KINDS = ("command", "notice", "failed")


def fts_query(text: str) -> str:
    """The owner's words as an FTS5 query: every word must appear (the last one may be
    the start of a word); quotes and operators are taken literally."""
    words = text.split()
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    if quoted:
        quoted[-1] += "*"
    return " ".join(quoted)


class Library:
    """The conversations of an interface, their titles, transcripts and search."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def list_threads(
        self, interface: str, *, archived: bool = False, limit: int = 200
    ) -> tuple[ThreadSummary, ...]:
        """The conversations of `interface` that have messages, most recent first."""
        rows = await self._store.read(
            lambda: self._store.rows(
                "SELECT * FROM threads WHERE interface = ? AND deleted = 0 AND archived = ? "
                "AND updated_at IS NOT NULL ORDER BY updated_at DESC LIMIT ?",
                (interface, int(archived), limit),
            )
        )
        return tuple(thread_summary(r) for r in rows)

    async def chosen_models(self) -> Mapping[str, str]:
        """Every conversation asking a model of its own (`/model`), and the model's name."""
        rows = await self._store.read(
            lambda: self._store.rows(
                "SELECT thread_id, model FROM threads WHERE model IS NOT NULL AND deleted = 0"
            )
        )
        return {row["thread_id"]: row["model"] for row in rows}

    async def thread_summary(self, thread_id: str) -> ThreadSummary | None:
        """One conversation as the list shows it (`deleted` ones too); None if unknown."""
        rows = await self._store.read(
            lambda: self._store.rows("SELECT * FROM threads WHERE thread_id = ?", (thread_id,))
        )
        return thread_summary(rows[0]) if rows else None

    async def search(self, interface: str, text: str, *, limit: int = 50) -> tuple[SearchHit, ...]:
        """Messages of `interface`'s live conversations holding every word of `text` (in
        what was said, or in the names of the files that came with it), best matches
        first."""
        query = fts_query(text)
        if not query:
            return ()
        rows = await self._store.read(
            lambda: self._store.rows(
                "SELECT m.id, m.thread_id, t.title, t.custom_title, "
                "snippet(messages_fts, -1, '[', ']', '…', 12) AS snippet "
                "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "JOIN threads t ON t.thread_id = m.thread_id "
                "WHERE messages_fts MATCH ? AND t.interface = ? AND t.deleted = 0 "
                "AND m.epoch = t.epoch AND m.superseded_by IS NULL ORDER BY rank LIMIT ?",
                (query, interface, limit),
            )
        )
        return tuple(
            SearchHit(
                r["thread_id"], r["custom_title"] or r["title"] or "New chat", r["id"], r["snippet"]
            )
            for r in rows
        )

    async def history_page(
        self, thread_id: str, *, before_id: int | None = None, limit: int = 200
    ) -> tuple[StoredMessage, ...]:
        """Up to `limit` messages of the current epoch before `before_id` (the newest when
        None), oldest first: pass the first id of a page to get the page before it."""
        where, params = ("AND m.id < ?", [before_id]) if before_id is not None else ("", [])

        def page() -> tuple[StoredMessage, ...]:
            rows = self._store.rows(
                "SELECT m.*, tu.source FROM messages m JOIN threads t USING (thread_id) "
                "LEFT JOIN turns tu ON tu.turn_id = m.turn_id AND tu.user_message_id = m.id "
                f"WHERE m.thread_id = ? AND m.epoch = t.epoch AND m.superseded_by IS NULL {where} "
                "ORDER BY m.id DESC LIMIT ?",
                [thread_id, *params, limit],
            )
            return tuple(stored_message(r) for r in reversed(rows))

        return await self._store.read(page)

    async def record(
        self,
        thread_id: str,
        kind: str,
        text: str,
        *,
        interface: str,
        turn_id: str | None = None,
    ) -> tuple[StoredMessage, bool]:
        """Append a row the owner sees and the model does not (`kind` in `DISPLAY_KINDS`:
        a command as typed, a notice, a failed turn's message). Creates the thread if it
        is new. Idempotent for commands by `turn_id` (the client's id for the send): a
        command recorded already is returned with False."""
        if kind not in DISPLAY_KINDS:
            raise StoreError(f"not a display kind: {kind!r}")
        role: Role = "user" if kind == "command" else "system"

        def insert() -> tuple[StoredMessage, bool]:
            self._store.refuse_deleted(thread_id)
            if kind == "command" and turn_id is not None:
                rows = self._store.rows(
                    "SELECT * FROM messages WHERE turn_id = ? AND kind = 'command'", (turn_id,)
                )
                if rows:
                    return stored_message(rows[0]), False
            self._store.execute(
                "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch) "
                "VALUES (?, ?, ?, 0)",
                (thread_id, interface, time.time()),
            )
            message = ChatMessage(role, text)
            return self._store.insert_message(thread_id, turn_id, message, None, kind), True

        return await self._store.write(insert)

    async def forget(self, message_id: int) -> None:
        """Remove a display row (a command its thread never took)."""
        await self._store.write(
            lambda: self._store.execute(
                "DELETE FROM messages WHERE id = ? AND kind IS NOT NULL", (message_id,)
            )
        )

    async def rename_thread(self, thread_id: str, title: str) -> None:
        """Give a conversation the owner's title (an empty one goes back to the default)."""
        await self._store.write(
            lambda: self._store.update_thread(
                thread_id, "custom_title", " ".join(title.split()) or None
            )
        )

    async def archive_thread(self, thread_id: str, archived: bool) -> None:
        await self._store.write(
            lambda: self._store.update_thread(thread_id, "archived", int(archived))
        )

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a conversation's messages, turns and replies for good. The thread's row
        stays, marked deleted, so a running actor that still writes to it fails no write."""

        def delete() -> None:
            self._store.update_thread(thread_id, "deleted", 1)
            self._store.execute("DELETE FROM messages WHERE thread_id = ?", (thread_id,))
            self._store.execute("DELETE FROM outbox WHERE thread_id = ?", (thread_id,))
            self._store.execute("DELETE FROM turns WHERE thread_id = ?", (thread_id,))
            self._store.execute(
                "UPDATE threads SET title = NULL, custom_title = NULL, summary = NULL, "
                "summary_upto = NULL WHERE thread_id = ?",
                (thread_id,),
            )

        await self._store.write(delete)

    async def queued_turns(self, thread_id: str) -> tuple[Turn, ...]:
        """The turns of the current epoch waiting for their turn (their input is not yet in
        the history), oldest first."""
        turns = await self._store.read(lambda: self._store.pending(thread_id))
        return tuple(turn for turn in turns if turn.state == "queued")
