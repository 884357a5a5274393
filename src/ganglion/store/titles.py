"""What the titler asks the conversation store: which conversation is to be named, from
what, and where its title stands (`threads.title_state`).

The life of a title::

    (first message)        claim                  settle
    fallback title ---> NULL ------> 'asked' ---------------> 'generated' | 'fallback'

`threads.title` holds the first message's cleaned first line from the start (the
fallback, `ganglion.titles`); a generated title replaces it. `claim` marks the
conversation 'asked' before the model is asked, so a conversation is asked about at most
once however often the daemon restarts: one cut off while asked keeps its fallback.
Editing the first message sets the state back to NULL (`Turns.rewind_turn`): the new first
exchange is named again. The owner's rename (`custom_title`) is never written here, and
is what the lists show while it is set.
"""

from __future__ import annotations

import json

from ganglion.store.db import ConversationDB
from ganglion.store.rows import FirstExchange
from ganglion.transcript import Attachment

__all__ = ["Titles"]


class Titles:
    """The conversations' generated titles, for the titler."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def claim(self, thread_id: str) -> FirstExchange | None:
        """The first exchange of `thread_id` when it is to be named now (nothing was asked
        for it yet, the owner has not renamed it, its first message has an answer), marked
        'asked' in the same transaction; else None (nothing is written)."""
        if not await self._store.read(lambda: self._wanted(thread_id)):
            return None  # the usual case, after the first answer: no write at all

        def claim() -> FirstExchange | None:
            exchange = self._first_exchange(thread_id) if self._wanted(thread_id) else None
            if exchange is not None:
                self._store.execute(
                    "UPDATE threads SET title_state = 'asked' WHERE thread_id = ?", (thread_id,)
                )
            return exchange

        return await self._store.write(claim)

    async def settle(self, thread_id: str, title: str | None) -> str | None:
        """Store the title the model gave `thread_id` (None: it gave none, the fallback
        stays). Returns the title the lists show now when it changed, else None: the
        conversation was deleted, its first message edited meanwhile, or the owner's
        rename is what they show."""

        def settle() -> str | None:
            cursor = self._store.execute(
                "UPDATE threads SET title = coalesce(?, title), title_state = ? "
                "WHERE thread_id = ? AND title_state = 'asked' AND deleted = 0",
                (title, "fallback" if title is None else "generated", thread_id),
            )
            if cursor.rowcount == 0 or title is None:
                return None
            rows = self._store.rows(
                "SELECT custom_title FROM threads WHERE thread_id = ?", (thread_id,)
            )
            return title if rows[0]["custom_title"] is None else None

        return await self._store.write(settle)

    def _wanted(self, thread_id: str) -> bool:
        rows = self._store.rows(
            "SELECT 1 FROM threads WHERE thread_id = ? AND title_state IS NULL "
            "AND custom_title IS NULL AND deleted = 0",
            (thread_id,),
        )
        return bool(rows)

    def _first_exchange(self, thread_id: str) -> FirstExchange | None:
        """The owner's first message that has an answer, and that answer (the turn's
        last words, after its tool calls)."""
        asked = self._store.rows(
            "SELECT t.turn_id, m.content, m.attachments, th.model FROM turns t "
            "JOIN messages m ON m.id = t.user_message_id JOIN threads th USING (thread_id) "
            "WHERE t.thread_id = ? AND t.source = 'user' AND t.state = 'done' "
            "AND m.superseded_by IS NULL ORDER BY m.id LIMIT 1",
            (thread_id,),
        )
        if not asked:
            return None
        first = asked[0]
        answered = self._store.rows(
            "SELECT content FROM messages WHERE turn_id = ? AND role = 'assistant' "
            "AND kind IS NULL AND tool_calls IS NULL AND content IS NOT NULL "
            "AND superseded_by IS NULL ORDER BY id DESC LIMIT 1",
            (first["turn_id"],),
        )
        text = first["content"] or ""
        if not text.strip() and first["attachments"]:
            files = [Attachment.from_json(a).name for a in json.loads(first["attachments"])]
            text = f"(sent {', '.join(files)})"
        if not answered or not text.strip():
            return None
        return FirstExchange(thread_id, text, answered[0]["content"], first["model"])
