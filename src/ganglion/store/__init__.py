"""Persistent stores (SQLite through sqlite-utils).

sqlite.py         `SQLiteStore`: one connection, one writer (group commit), migrations
migrations.py     ordered, recorded migrations
conversations.py  `ConversationStore`: `data/conversation.db`, its seven parts:
  turns.py          the write-ahead state machine of turns (the thread actors)
  outbox.py         replies to deliver (the interfaces)
  library.py        list, search, history, rename, archive, delete (interfaces read)
  activity.py       what the heartbeat asks
  usage.py          what the model calls cost
  approvals.py      tool calls waiting for the owner's yes
  titles.py         which conversation to name, from what (the titler)
db.py             `ConversationDB`: the connection the seven parts share
schema.py         the conversation database's migrations
rows.py           the frozen rows the store hands out, its reasons for refusing
"""

from __future__ import annotations

from ganglion.store.activity import Activity
from ganglion.store.approvals import Approval, Approvals, ApprovalState
from ganglion.store.conversations import ConversationStore
from ganglion.store.library import Library
from ganglion.store.migrations import Migration, MigrationError, Migrations
from ganglion.store.outbox import Outbox
from ganglion.store.rows import (
    Chosen,
    FinishedTurn,
    FirstExchange,
    OutboxItem,
    RewindReason,
    RewindRefused,
    Rewound,
    SearchHit,
    StoredMessage,
    ThreadActivity,
    ThreadDeleted,
    ThreadState,
    ThreadSummary,
    Turn,
)
from ganglion.store.sqlite import SQLiteStore, StoreError, StoreStatistics
from ganglion.store.titles import Titles
from ganglion.store.turns import Turns
from ganglion.store.usage import DayUsage, UsageBook

__all__ = [
    "Activity",
    "Approval",
    "ApprovalState",
    "Approvals",
    "Chosen",
    "ConversationStore",
    "DayUsage",
    "FinishedTurn",
    "FirstExchange",
    "Library",
    "Migration",
    "MigrationError",
    "Migrations",
    "Outbox",
    "OutboxItem",
    "RewindReason",
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
    "Titles",
    "Turn",
    "Turns",
    "UsageBook",
]
