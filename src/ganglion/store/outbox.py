"""The outbox: replies an interface must deliver, until it has."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ganglion.store.db import ConversationDB
from ganglion.store.rows import OutboxItem, outbox_item

__all__ = ["Outbox"]


class Outbox:
    """What the interfaces read and mark: the replies not yet delivered."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def undelivered(
        self, thread_id: str | None = None, *, limit: int = 100
    ) -> tuple[OutboxItem, ...]:
        """Outbox entries not yet delivered, oldest first (of one thread, or of all)."""
        where, params = ("AND thread_id = ?", [thread_id]) if thread_id is not None else ("", [])
        rows = await self._store.read(
            lambda: self._store.rows(
                f"SELECT * FROM outbox WHERE delivered_at IS NULL {where} ORDER BY id LIMIT ?",
                [*params, limit],
            )
        )
        return tuple(outbox_item(r) for r in rows)

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        """Mark outbox entries delivered; ids delivered already or unknown are ignored."""
        if not outbox_ids:
            return
        marks = ", ".join("?" * len(outbox_ids))
        await self._store.write(
            lambda: self._store.execute(
                f"UPDATE outbox SET delivered_at = ? WHERE id IN ({marks}) AND delivered_at IS NULL",
                [time.time(), *outbox_ids],
            )
        )
