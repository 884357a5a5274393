"""Persistent stores (SQLite through sqlite-utils)."""

from __future__ import annotations

from ganglion.store.conversations import (
    ConversationStore,
    FinishedTurn,
    OutboxItem,
    RewindRefused,
    Rewound,
    SearchHit,
    StoredMessage,
    StoreError,
    StoreStatistics,
    ThreadActivity,
    ThreadDeleted,
    ThreadState,
    ThreadSummary,
    Turn,
)
from ganglion.store.migrations import Migration, MigrationError, Migrations
from ganglion.store.sqlite import SQLiteStore

__all__ = [
    "ConversationStore",
    "FinishedTurn",
    "Migration",
    "MigrationError",
    "Migrations",
    "OutboxItem",
    "RewindRefused",
    "Rewound",
    "SQLiteStore",
    "SearchHit",
    "StoreError",
    "StoreStatistics",
    "StoredMessage",
    "ThreadActivity",
    "ThreadDeleted",
    "ThreadState",
    "ThreadSummary",
    "Turn",
]
