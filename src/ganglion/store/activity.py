"""What the heartbeat asks the conversation store: which conversations were active, and
when each was last reviewed.
"""

from __future__ import annotations

from ganglion.store.db import ConversationDB
from ganglion.store.rows import ThreadActivity

__all__ = ["Activity"]


class Activity:
    """The conversations' activity, for the heartbeat."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def thread_activity(self, since: float) -> tuple[ThreadActivity, ...]:
        """The threads with activity of their own (the owner's messages and commands,
        the assistant's answers; not a heartbeat review's) after `since` (epoch seconds),
        each with when it was last reviewed."""

        def find() -> tuple[ThreadActivity, ...]:
            active = self._store.rows(
                "SELECT m.thread_id AS thread_id, MAX(m.created_at) AS last FROM messages m "
                "LEFT JOIN turns t ON t.turn_id = m.turn_id WHERE m.created_at > ? "
                "AND (m.kind IS NULL OR m.kind = 'command') "
                "AND (t.source IS NULL OR t.source != 'heartbeat') GROUP BY m.thread_id",
                (since,),
            )
            reviews = {
                row["thread_id"]: row["last"]
                for row in self._store.rows(
                    "SELECT thread_id, MAX(created_at) AS last FROM turns "
                    "WHERE source = 'heartbeat' AND created_at > ? GROUP BY thread_id",
                    (since,),
                )
            }
            return tuple(
                ThreadActivity(row["thread_id"], row["last"], reviews.get(row["thread_id"]))
                for row in active
            )

        return await self._store.read(find)
