"""Persistent stores (SQLite through sqlite-utils)."""

from ganglion.store.conversations import (
    ConversationStore,
    FinishedTurn,
    OutboxItem,
    StoredMessage,
    StoreError,
    StoreStatistics,
    ThreadState,
    Turn,
)
from ganglion.store.migrations import MigrationError, Migrations
from ganglion.store.sqlite import SQLiteStore

__all__ = [
    "ConversationStore",
    "FinishedTurn",
    "MigrationError",
    "Migrations",
    "OutboxItem",
    "SQLiteStore",
    "StoreError",
    "StoreStatistics",
    "StoredMessage",
    "ThreadState",
    "Turn",
]
