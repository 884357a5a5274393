"""The turns: the write-ahead state machine of `data/conversation.db`.

Storage design
--------------

One SQLite database (through sqlite-utils) in WAL mode with `synchronous=FULL` and
foreign keys on. With `synchronous=NORMAL` a power cut may undo the last commits; the
write-ahead promise (a user's message is on disk before the model is called) needs every
commit synced, which costs one fsync of the WAL per write (see benchmarks/bench_store.py).
The schema is built by the migrations below (`ganglion.store.migrations`).

`threads`
    One row per conversation: `interface`, `created_at`, `epoch` (bumped by `/new`:
    older epochs stay in the database, archived, but are no longer loaded), `summary`
    and `summary_upto` (the compaction summary and the last message id it covers).
`messages`
    Append-only, one row per chat message: role, content, `tool_calls` (JSON list of
    {id, name, arguments}), `tool_call_id`, `name`, `meta` (JSON, e.g. a tool's
    duration and outcome), stamped with the thread's epoch and the turn that produced
    it. Indexed by (thread_id, epoch, id). Appending is one INSERT whatever the
    history length: nothing is rewritten or counted. `superseded_by` names the turn
    that took a row's place when the owner took its turn back (see "Rewinding").
    `attachments` (JSON list of `transcript.Attachment`) are the files that came with
    a message, or that a tool sent: references to `data/inbox/`, never the bytes. A
    voice message's row is the one rewritten, once: its transcript becomes its content.
    The search index (`messages_fts`) holds the words said and the attachments' names.
`turns`
    One row per turn, keyed by `turn_id` (an interface's event id where it has one, so
    a resubmitted event finds its turn): `source` ('user', 'reminder', 'heartbeat'),
    `input` (the incoming message, JSON), `state`, `user_message_id`, timestamps. A
    partial index covers the unfinished turns.
`outbox`
    Replies an interface must deliver (`kind` 'reply', or 'file' for what `send_file`
    sent, JSON `payload`), written in the transaction that finishes the turn (a file:
    that stores the tool's message) and marked `delivered_at` once delivered;
    partial indexes cover the undelivered ones (per thread, and of all threads), so
    finding them never walks the replies delivered before.

Parts
-----

One connection and one writer (`ConversationDB`), seven parts, each for one audience:

    turns      the thread actors: the write-ahead state machine of turns (`store.turns`)
    outbox     the interfaces: replies to deliver, marked once delivered
    library    the interfaces read it (list, search, history); the daemon changes it
               (rename, archive, delete, the rows shown beside a conversation)
    activity   the heartbeat: which conversations were active, and when reviewed
    usage      the meter: what each model call cost (`store.usage`)
    approvals  the thread actors and the interfaces: tool calls waiting for the owner's
               yes, and what became of them (`store.approvals`)
    titles     the titler: which conversation to name, from what (`store.titles`)

All blocking work runs in a worker thread, one call at a time, on one connection; each
write is one short transaction, and writes that arrive together share one
(`ganglion.store.sqlite`).
"""

from __future__ import annotations

from pathlib import Path

import sqlite_utils

from ganglion.store.activity import Activity
from ganglion.store.approvals import Approvals
from ganglion.store.db import ConversationDB
from ganglion.store.library import Library
from ganglion.store.outbox import Outbox
from ganglion.store.titles import Titles
from ganglion.store.turns import Turns
from ganglion.store.usage import UsageBook

__all__ = ["ConversationStore"]


class ConversationStore(ConversationDB):
    """The conversation store, open: its seven parts share its connection and its writer.
    Open with `await ConversationStore.open(path)`, close with `aclose()`.

    Error handling: every part raises `StoreError`, for an unknown thread or turn as for
    a database failure. A thread exists once `turns.load_thread` has been called for it.
    """

    def __init__(self, path: Path, db: sqlite_utils.Database) -> None:
        super().__init__(path, db)
        self.turns = Turns(self)
        self.outbox = Outbox(self)
        self.library = Library(self)
        self.activity = Activity(self)
        self.usage = UsageBook(self)
        self.approvals = Approvals(self)
        self.titles = Titles(self)
