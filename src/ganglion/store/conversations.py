"""The conversation store: `data/conversation.db`.

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
`turns`
    One row per turn, keyed by `turn_id` (an interface's event id where it has one, so
    a resubmitted event finds its turn): `source` ('user', 'reminder', 'heartbeat'),
    `input` (the incoming message, JSON), `state`, `user_message_id`, timestamps. A
    partial index covers the unfinished turns.
`outbox`
    Replies an interface must deliver (`kind`, JSON `payload`), written in the
    transaction that finishes the turn and marked `delivered_at` once delivered;
    partial indexes cover the undelivered ones (per thread, and of all threads), so
    finding them never walks the replies delivered before.

The life of a turn::

    queue_turn            start_turn                   finish_turn
    ----------> queued ---------------> running ----------------------> done | failed

A turn that arrives while another one of its thread runs is *queued*: its input is
durable in `turns.input` but not yet in `messages`, so the history keeps the order the
model saw (a user message never lands between an assistant's tool calls and their
results). `start_turn` appends it to the history when its turn comes. Queued and running
turns are *pending*: both are answered after a restart. `finish_turn` writes the final
reply, the end state and the outbox entry in one transaction and refuses a turn that is
finished already, so a turn is either pending or answered, and never answered twice.

Rewinding
---------

The owner may take back the last turn of a conversation (regenerate its answer, or edit
their message): `rewind_turn` marks that turn's input and every row after it
`superseded_by` the new turn and queues the new turn, in one transaction. Superseded rows
stay in the database (what was said remains on record) but are no longer loaded for the
model, shown in the history or found by a search. Only the last turn of the current
epoch can be taken back, and only while no turn is pending, and never one that a
compaction summary covers already (`RewindRefused` says which rule).

All blocking work runs in a worker thread, one call at a time, on one connection; each
write is one short transaction (`ganglion.store.sqlite`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlite_utils

from ganglion.errors import GanglionError
from ganglion.store.migrations import Migrations
from ganglion.store.sqlite import SQLiteStore, StoreError, StoreStatistics
from ganglion.transcript import ChatMessage, Role, ToolCall

__all__ = [
    "ConversationStore",
    "FinishedTurn",
    "OutboxItem",
    "RewindRefused",
    "Rewound",
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

PENDING = ("queued", "running")
TITLE_CHARS = 80
DISPLAY_KINDS = ("command", "notice", "failed")
# What the search index holds: the words of the conversation, not tool output.
_SEARCHED = "new.kind IS NULL AND new.role IN ('user', 'assistant') AND new.content IS NOT NULL"

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


@migrations.migration
def index_undelivered_outbox(db: sqlite_utils.Database) -> None:
    # `undelivered()` of all threads orders by id; without this index SQLite walks the
    # whole outbox in id order, every reply ever delivered included.
    db.execute("CREATE INDEX outbox_undelivered_all ON outbox (id) WHERE delivered_at IS NULL")


@migrations.migration
def display_rows_titles_and_search(db: sqlite_utils.Database) -> None:
    # Rows shown to the owner but never to the model (`kind`: a command, its output, a
    # notice, a failed turn's message), in the same id order as the conversation.
    db.execute("ALTER TABLE messages ADD COLUMN kind TEXT")
    db.execute("CREATE INDEX messages_by_turn ON messages (turn_id)")
    db.execute("ALTER TABLE threads ADD COLUMN title TEXT")
    db.execute("ALTER TABLE threads ADD COLUMN custom_title TEXT")
    db.execute("ALTER TABLE threads ADD COLUMN updated_at REAL")
    db.execute("ALTER TABLE threads ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE threads ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE threads SET updated_at = (SELECT MAX(created_at) FROM messages "
        "WHERE messages.thread_id = threads.thread_id)"
    )
    db.execute(
        "UPDATE threads SET title = (SELECT substr(json_extract(t.input, '$.content'), 1, ?) FROM turns t "
        "WHERE t.thread_id = threads.thread_id AND t.source = 'user' ORDER BY t.created_at "
        "LIMIT 1)",
        (TITLE_CHARS,),
    )
    db.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN {_SEARCHED} "
        "BEGIN INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute(
        f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages "
        f"WHEN {_SEARCHED.replace('new.', 'old.')} BEGIN INSERT INTO messages_fts "
        "(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END"
    )
    db.execute(
        "INSERT INTO messages_fts (rowid, content) SELECT id, content FROM messages "
        f"WHERE {_SEARCHED.replace('new.', '')}"
    )


@migrations.migration
def superseded_messages(db: sqlite_utils.Database) -> None:
    # The rows of a turn the owner took back (regenerate, edit) stay, named by the turn
    # that replaced them, and are left out of everything read for the model or the owner.
    db.execute("ALTER TABLE messages ADD COLUMN superseded_by TEXT")


class ThreadDeleted(StoreError):
    """The conversation was deleted: nothing more is written into it, no turn of anyone's
    (the owner's, a reminder's, a review's) is taken."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"conversation {thread_id!r} was deleted")
        self.thread_id = thread_id


class RewindRefused(GanglionError):
    """A turn cannot be taken back; `code` names the rule (for a web `error` frame) and
    the message, safe to show, says it to the owner:

    - `nothing_to_rewind`: the conversation has no turn of the owner's yet
    - `not_last`: the turn is not the last one (another came after it) or is not the
      owner's (a reminder's, a heartbeat review's)
    - `compacted`: a compaction summary covers its message already
    - `busy`: a turn is running or waiting (the thread actor says so first)
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One row of a conversation. `kind` is None for what the model sees, else what the
    owner is shown beside it ('command', 'notice', 'failed'); `source` is the kind of
    turn ('user', 'reminder', 'heartbeat') when this is a turn's input."""

    id: int
    thread_id: str
    turn_id: str | None
    message: ChatMessage
    created_at: float
    meta: Mapping[str, Any] | None = None
    kind: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A conversation as a list of them shows it: `title` is the owner's, else the start
    of its first message."""

    thread_id: str
    title: str
    created_at: float
    updated_at: float | None
    archived: bool
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matched a search; `snippet` marks the matches with [ and ]."""

    thread_id: str
    title: str
    message_id: int
    snippet: str


@dataclass(frozen=True, slots=True)
class ThreadActivity:
    """When a thread last had activity of its own, and was last reviewed (None: never),
    in epoch seconds."""

    thread_id: str
    last_activity: float
    last_review: float | None


@dataclass(frozen=True, slots=True)
class Turn:
    """A turn as stored. `state` is 'queued', 'running', 'done' or 'failed';
    `user_message_id` is the id of `input` in the history once the turn started."""

    turn_id: str
    thread_id: str
    source: str
    state: str
    input: ChatMessage
    created_at: float
    user_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadState:
    """The current epoch of a thread: every message (the actor windows them) and the
    pending turns, oldest first."""

    thread_id: str
    epoch: int
    summary: str | None
    summary_upto: int | None
    messages: tuple[StoredMessage, ...]
    pending: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """What `finish_turn` stored: the final message, and the outbox row to mark
    delivered once an interface has delivered the reply."""

    message: StoredMessage | None
    outbox_id: int | None


@dataclass(frozen=True, slots=True)
class Rewound:
    """What `rewind_turn` did: the new turn (queued), whether it was created now (False:
    a rewind with this new turn id happened before, nothing was changed), and the id of
    the first superseded row (the thread drops it and all after it from its history)."""

    turn: Turn
    created: bool
    superseded_from: int | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    thread_id: str
    turn_id: str | None
    kind: str
    payload: Mapping[str, Any]
    created_at: float


def _encode(message: ChatMessage) -> dict[str, Any]:
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": json.dumps(calls) if calls else None,
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
        meta=json.loads(row["meta"]) if row["meta"] is not None else None,
        kind=row["kind"],
        source=row.get("source"),
    )


def _summary(row: Mapping[str, Any]) -> ThreadSummary:
    return ThreadSummary(
        thread_id=row["thread_id"],
        title=row["custom_title"] or row["title"] or "New chat",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        archived=bool(row["archived"]),
        deleted=bool(row["deleted"]),
    )


def fts_query(text: str) -> str:
    """The owner's words as an FTS5 query: every word must appear (the last one may be
    the start of a word); quotes and operators are taken literally."""
    words = text.split()
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    if quoted:
        quoted[-1] += "*"
    return " ".join(quoted)


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def _turn(row: Mapping[str, Any]) -> Turn:
    return Turn(
        turn_id=row["turn_id"],
        thread_id=row["thread_id"],
        user_message_id=row["user_message_id"],
        source=row["source"],
        state=row["state"],
        input=_decode(json.loads(row["input"])),
        created_at=row["created_at"],
    )


def _outbox_item(row: Mapping[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        thread_id=row["thread_id"],
        turn_id=row["turn_id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
    )


class ConversationStore(SQLiteStore):
    """Per-thread history, turns and outbox. Open with `await ConversationStore.open(path)`,
    close with `aclose()`.

    Error handling: every method raises `StoreError`, for an unknown thread or turn as
    for a database failure. A thread exists once `load_thread` has been called for it.
    """

    migrations = migrations
    description = "conversation store"

    # -- threads ---------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, *, interface: str) -> ThreadState:
        """The thread's current epoch: summary, messages and pending turns. Creates the
        thread on first use."""

        def load() -> ThreadState:
            self._db.execute(
                "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch) "
                "VALUES (?, ?, ?, 0)",
                (thread_id, interface, time.time()),
            )
            thread = self._rows("SELECT * FROM threads WHERE thread_id = ?", (thread_id,))[0]
            messages = self._rows(
                "SELECT * FROM messages WHERE thread_id = ? AND epoch = ? AND kind IS NULL "
                "AND superseded_by IS NULL ORDER BY id",
                (thread_id, thread["epoch"]),
            )
            return ThreadState(
                thread_id=thread_id,
                epoch=thread["epoch"],
                summary=thread["summary"],
                summary_upto=thread["summary_upto"],
                messages=tuple(_stored(r) for r in messages),
                pending=self._pending(thread_id),
            )

        return await self._write(load)

    async def set_summary(self, thread_id: str, summary: str, upto_message_id: int) -> None:
        """Store the compaction summary of the current epoch, covering the messages up to
        and including `upto_message_id`."""

        def update() -> None:
            cursor = self._db.execute(
                "UPDATE threads SET summary = ?, summary_upto = ? WHERE thread_id = ?",
                (summary, upto_message_id, thread_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"unknown thread {thread_id!r}")

        await self._write(update)

    async def new_epoch(self, thread_id: str) -> int:
        """Archive the thread's history (the rows stay) and start afresh: bump the epoch,
        clear the summary, fail the pending turns. Returns the new epoch."""

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
        """Threads with turns cut off before they finished (to re-activate at start)."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT DISTINCT turns.thread_id FROM turns JOIN threads USING (thread_id) "
                "WHERE turns.state IN ('queued', 'running') AND turns.epoch = threads.epoch "
                "ORDER BY turns.thread_id"
            )
        )
        return tuple(r["thread_id"] for r in rows)

    async def thread_activity(self, since: float) -> tuple[ThreadActivity, ...]:
        """The threads with activity of their own (the owner's messages and commands,
        the assistant's answers; not a heartbeat review's) after `since` (epoch seconds),
        each with when it was last reviewed."""

        def find() -> tuple[ThreadActivity, ...]:
            active = self._rows(
                "SELECT m.thread_id AS thread_id, MAX(m.created_at) AS last FROM messages m "
                "LEFT JOIN turns t ON t.turn_id = m.turn_id WHERE m.created_at > ? "
                "AND (m.kind IS NULL OR m.kind = 'command') "
                "AND (t.source IS NULL OR t.source != 'heartbeat') GROUP BY m.thread_id",
                (since,),
            )
            reviews = {
                row["thread_id"]: row["last"]
                for row in self._rows(
                    "SELECT thread_id, MAX(created_at) AS last FROM turns "
                    "WHERE source = 'heartbeat' AND created_at > ? GROUP BY thread_id",
                    (since,),
                )
            }
            return tuple(
                ThreadActivity(row["thread_id"], row["last"], reviews.get(row["thread_id"]))
                for row in active
            )

        return await self._read(find)

    async def missing_turns(self, turn_ids: Sequence[str]) -> set[str]:
        """Those of `turn_ids` that no turn has (in any state, any epoch)."""
        wanted = list(dict.fromkeys(turn_ids))

        def find() -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), 500):  # under SQLite's variable limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._rows(f"SELECT turn_id FROM turns WHERE turn_id IN ({marks})", batch)
                found.update(r["turn_id"] for r in rows)
            return set(wanted) - found

        return await self._read(find) if wanted else set()

    # -- turns and messages ----------------------------------------------------------------

    async def queue_turn(
        self,
        thread_id: str,
        message: ChatMessage,
        *,
        source: str,
        turn_id: str | None = None,
    ) -> tuple[Turn, bool]:
        """Durably record an incoming turn as queued; `turn_id` defaults to a new uuid4.

        Idempotent by `turn_id`: a resubmission returns the stored turn and False.
        """
        turn_id = turn_id or uuid.uuid4().hex
        return await self._write(lambda: self._queue(thread_id, message, source, turn_id))

    async def begin_turn(
        self,
        thread_id: str,
        message: ChatMessage,
        *,
        source: str,
        turn_id: str | None = None,
    ) -> tuple[Turn, StoredMessage | None]:
        """`queue_turn` and `start_turn` in one transaction, for a thread with nothing
        queued or running: one commit where there would be two. Returns the turn, now
        running, and its input as appended to the history; for a resubmission, the turn
        as stored and None (nothing is written).
        """
        turn_id = turn_id or uuid.uuid4().hex

        def begin() -> tuple[Turn, StoredMessage | None]:
            turn, created = self._queue(thread_id, message, source, turn_id)
            if not created:
                return turn, None
            stored = self._start(turn)
            return replace(turn, state="running", user_message_id=stored.id), stored

        return await self._write(begin)

    async def start_turn(self, turn_id: str) -> StoredMessage:
        """Append a queued turn's input to the history and mark it running (one
        transaction). `StoreError` if the turn is not queued."""

        def start() -> StoredMessage:
            turn = self._get_turn(turn_id)
            if turn.state != "queued":
                raise StoreError(f"turn {turn_id!r} is {turn.state}, not queued")
            return self._start(turn)

        return await self._write(start)

    async def append(
        self,
        thread_id: str,
        turn_id: str | None,
        message: ChatMessage,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> StoredMessage:
        """Append one message to the thread's current epoch (one INSERT)."""
        return await self._write(lambda: self._insert_message(thread_id, turn_id, message, meta))

    async def finish_turn(
        self,
        turn_id: str,
        *,
        state: Literal["done", "failed"],
        final: ChatMessage | None,
        outbox: Mapping[str, Any] | None = None,
    ) -> FinishedTurn:
        """In one transaction: append `final` (if given), end the turn in `state`, and
        queue `outbox` (if given) as a 'reply' for the interface to deliver.

        `StoreError` if the turn is unknown or finished already (nothing is written).
        """

        def finish() -> FinishedTurn:
            turn = self._get_turn(turn_id)
            if turn.state not in PENDING:
                raise StoreError(f"turn {turn_id!r} is {turn.state} already")
            now = time.time()
            stored = (
                self._insert_message(turn.thread_id, turn_id, final, None)
                if final is not None
                else None
            )
            self._db.execute(
                "UPDATE turns SET state = ?, finished_at = ? WHERE turn_id = ?",
                (state, now, turn_id),
            )
            outbox_id = None
            if outbox is not None:
                cursor = self._db.execute(
                    "INSERT INTO outbox (thread_id, turn_id, kind, payload, created_at) "
                    "VALUES (?, ?, 'reply', ?, ?)",
                    (turn.thread_id, turn_id, json.dumps(dict(outbox)), now),
                )
                outbox_id = cursor.lastrowid
            return FinishedTurn(stored, outbox_id)

        return await self._write(finish)

    async def rewind_turn(
        self, thread_id: str, turn_id: str, *, new_turn_id: str, text: str | None
    ) -> Rewound:
        """Take back the thread's last turn `turn_id` and queue it again as `new_turn_id`,
        in one transaction: its input and every row after it are marked superseded (kept,
        never loaded again), its undelivered reply is dropped from the outbox, and the new
        turn is queued with `text` (an edit) or the same input (regenerate).

        Idempotent by `new_turn_id`: a rewind done already returns its turn and False.
        Error handling: `RewindRefused` (nothing written) when `turn_id` is not the last
        turn of the owner's, or a summary covers it; `StoreError` for an unknown thread.
        """

        def rewind() -> Rewound:
            existing = self._rows("SELECT * FROM turns WHERE turn_id = ?", (new_turn_id,))
            if existing:
                return Rewound(_turn(existing[0]), False, None)
            turn = self._last_turn(thread_id, turn_id)
            assert turn.user_message_id is not None
            first = turn.user_message_id
            now = time.time()
            self._db.execute(
                "UPDATE messages SET superseded_by = ? WHERE thread_id = ? AND epoch = ? "
                "AND id >= ? AND superseded_by IS NULL",
                (new_turn_id, thread_id, self._epoch(thread_id), first),
            )
            # A reply taken back is never delivered late to a tab that missed it.
            self._db.execute(
                "UPDATE outbox SET delivered_at = ? WHERE turn_id = ? AND delivered_at IS NULL",
                (now, turn_id),
            )
            message = turn.input if text is None else ChatMessage("user", text)
            if text is not None and not self._said_before(thread_id, first):
                self._db.execute(
                    "UPDATE threads SET title = ? WHERE thread_id = ?", (_title(text), thread_id)
                )
            queued, _ = self._queue(thread_id, message, "user", new_turn_id)
            return Rewound(queued, True, first)

        return await self._write(rewind)

    # -- outbox and paging -----------------------------------------------------------------

    async def undelivered(
        self, thread_id: str | None = None, *, limit: int = 100
    ) -> tuple[OutboxItem, ...]:
        """Outbox entries not yet delivered, oldest first (of one thread, or of all)."""
        where, params = ("AND thread_id = ?", [thread_id]) if thread_id is not None else ("", [])
        rows = await self._read(
            lambda: self._rows(
                f"SELECT * FROM outbox WHERE delivered_at IS NULL {where} ORDER BY id LIMIT ?",
                [*params, limit],
            )
        )
        return tuple(_outbox_item(r) for r in rows)

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        """Mark outbox entries delivered; ids delivered already or unknown are ignored."""
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
        """Up to `limit` messages of the current epoch before `before_id` (the newest when
        None), oldest first: pass the first id of a page to get the page before it."""
        where, params = ("AND m.id < ?", [before_id]) if before_id is not None else ("", [])

        def page() -> tuple[StoredMessage, ...]:
            rows = self._rows(
                "SELECT m.*, tu.source FROM messages m JOIN threads t USING (thread_id) "
                "LEFT JOIN turns tu ON tu.turn_id = m.turn_id AND tu.user_message_id = m.id "
                f"WHERE m.thread_id = ? AND m.epoch = t.epoch AND m.superseded_by IS NULL {where} "
                "ORDER BY m.id DESC LIMIT ?",
                [thread_id, *params, limit],
            )
            return tuple(_stored(r) for r in reversed(rows))

        return await self._read(page)

    # -- what the owner is shown beside the conversation ----------------------------------

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
            self._refuse_deleted(thread_id)
            if kind == "command" and turn_id is not None:
                rows = self._rows(
                    "SELECT * FROM messages WHERE turn_id = ? AND kind = 'command'", (turn_id,)
                )
                if rows:
                    return _stored(rows[0]), False
            self._db.execute(
                "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch) "
                "VALUES (?, ?, ?, 0)",
                (thread_id, interface, time.time()),
            )
            message = ChatMessage(role, text)
            return self._insert_message(thread_id, turn_id, message, None, kind), True

        return await self._write(insert)

    async def forget(self, message_id: int) -> None:
        """Remove a display row (a command its thread never took)."""
        await self._write(
            lambda: self._db.execute(
                "DELETE FROM messages WHERE id = ? AND kind IS NOT NULL", (message_id,)
            )
        )

    async def turn(self, turn_id: str) -> Turn | None:
        """The turn `turn_id` as stored, or None if there is none."""
        rows = await self._read(
            lambda: self._rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        )
        return _turn(rows[0]) if rows else None

    async def queued_turns(self, thread_id: str) -> tuple[Turn, ...]:
        """The turns of the current epoch waiting for their turn (their input is not yet in
        the history), oldest first."""
        turns = await self._read(lambda: self._pending(thread_id))
        return tuple(turn for turn in turns if turn.state == "queued")

    # -- the list of conversations ----------------------------------------------------------

    async def list_threads(
        self, interface: str, *, archived: bool = False, limit: int = 200
    ) -> tuple[ThreadSummary, ...]:
        """The conversations of `interface` that have messages, most recent first."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT * FROM threads WHERE interface = ? AND deleted = 0 AND archived = ? "
                "AND updated_at IS NOT NULL ORDER BY updated_at DESC LIMIT ?",
                (interface, int(archived), limit),
            )
        )
        return tuple(_summary(r) for r in rows)

    async def thread_summary(self, thread_id: str) -> ThreadSummary | None:
        """One conversation as the list shows it (`deleted` ones too); None if unknown."""
        rows = await self._read(
            lambda: self._rows("SELECT * FROM threads WHERE thread_id = ?", (thread_id,))
        )
        return _summary(rows[0]) if rows else None

    async def search(self, interface: str, text: str, *, limit: int = 50) -> tuple[SearchHit, ...]:
        """Messages of `interface`'s live conversations holding every word of `text`, best
        matches first."""
        query = fts_query(text)
        if not query:
            return ()
        rows = await self._read(
            lambda: self._rows(
                "SELECT m.id, m.thread_id, t.title, t.custom_title, "
                "snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet "
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

    async def rename_thread(self, thread_id: str, title: str) -> None:
        """Give a conversation the owner's title (an empty one goes back to the default)."""
        await self._write(
            lambda: self._update_thread(thread_id, "custom_title", " ".join(title.split()) or None)
        )

    async def archive_thread(self, thread_id: str, archived: bool) -> None:
        await self._write(lambda: self._update_thread(thread_id, "archived", int(archived)))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a conversation's messages, turns and replies for good. The thread's row
        stays, marked deleted, so a running actor that still writes to it fails no write."""

        def delete() -> None:
            self._update_thread(thread_id, "deleted", 1)
            self._db.execute("DELETE FROM messages WHERE thread_id = ?", (thread_id,))
            self._db.execute("DELETE FROM outbox WHERE thread_id = ?", (thread_id,))
            self._db.execute("DELETE FROM turns WHERE thread_id = ?", (thread_id,))
            self._db.execute(
                "UPDATE threads SET title = NULL, custom_title = NULL, summary = NULL, "
                "summary_upto = NULL WHERE thread_id = ?",
                (thread_id,),
            )

        await self._write(delete)

    # -- in the worker thread --------------------------------------------------------------

    def _update_thread(self, thread_id: str, column: str, value: Any) -> None:
        cursor = self._db.execute(
            f"UPDATE threads SET {column} = ? WHERE thread_id = ? AND deleted = 0",
            (value, thread_id),
        )
        if cursor.rowcount == 0:
            raise StoreError(f"unknown thread {thread_id!r}")

    def _refuse_deleted(self, thread_id: str) -> None:
        rows = self._rows("SELECT deleted FROM threads WHERE thread_id = ?", (thread_id,))
        if rows and rows[0]["deleted"]:
            raise ThreadDeleted(thread_id)

    def _epoch(self, thread_id: str) -> int:
        rows = self._rows("SELECT epoch FROM threads WHERE thread_id = ?", (thread_id,))
        if not rows:
            raise StoreError(f"unknown thread {thread_id!r}")
        return int(rows[0]["epoch"])

    def _get_turn(self, turn_id: str) -> Turn:
        rows = self._rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        if not rows:
            raise StoreError(f"unknown turn {turn_id!r}")
        return _turn(rows[0])

    def _last_turn(self, thread_id: str, turn_id: str) -> Turn:
        """`turn_id` if it is the owner's last turn in the thread and may be taken back."""
        epoch = self._epoch(thread_id)
        last = self._rows(
            "SELECT turn_id FROM messages WHERE thread_id = ? AND epoch = ? AND kind IS NULL "
            "AND superseded_by IS NULL ORDER BY id DESC LIMIT 1",
            (thread_id, epoch),
        )
        if not last or last[0]["turn_id"] is None:
            raise RewindRefused(
                "nothing_to_rewind", "There is no message of yours to edit or regenerate yet."
            )
        turn = self._get_turn(last[0]["turn_id"])
        if turn.turn_id != turn_id or turn.source != "user" or turn.user_message_id is None:
            raise RewindRefused(
                "not_last",
                "Only your last message can be edited or its answer regenerated, and "
                "something came after this one.",
            )
        if turn.state in PENDING:
            raise RewindRefused("busy", "This message is still being answered.")
        summary_upto = self._rows(
            "SELECT summary_upto FROM threads WHERE thread_id = ?", (thread_id,)
        )[0]["summary_upto"]
        if summary_upto is not None and turn.user_message_id <= summary_upto:
            raise RewindRefused(
                "compacted",
                "This message is part of the summary of the older conversation now, so it "
                "can no longer be edited or regenerated.",
            )
        return turn

    def _said_before(self, thread_id: str, message_id: int) -> bool:
        """Whether the owner wrote in the thread before `message_id` (not superseded)."""
        rows = self._rows(
            "SELECT 1 FROM messages m JOIN turns t ON t.user_message_id = m.id "
            "WHERE m.thread_id = ? AND m.id < ? AND t.source = 'user' "
            "AND m.superseded_by IS NULL LIMIT 1",
            (thread_id, message_id),
        )
        return bool(rows)

    def _pending(self, thread_id: str) -> tuple[Turn, ...]:
        rows = self._rows(
            "SELECT turns.* FROM turns JOIN threads USING (thread_id) "
            "WHERE turns.thread_id = ? AND turns.epoch = threads.epoch "
            "AND turns.state IN ('queued', 'running') ORDER BY turns.rowid",
            (thread_id,),
        )
        return tuple(_turn(r) for r in rows)

    def _queue(
        self, thread_id: str, message: ChatMessage, source: str, turn_id: str
    ) -> tuple[Turn, bool]:
        self._refuse_deleted(thread_id)
        existing = self._rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        if existing:
            turn = _turn(existing[0])
            if turn.thread_id != thread_id:
                raise StoreError(f"turn {turn_id!r} belongs to thread {turn.thread_id!r}")
            return turn, False
        now = time.time()
        self._db.execute(
            "INSERT INTO turns (turn_id, thread_id, epoch, source, state, input, created_at) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            (turn_id, thread_id, self._epoch(thread_id), source, json.dumps(_encode(message)), now),
        )
        if source == "user" and message.content:
            self._db.execute(
                "UPDATE threads SET title = ?, updated_at = ? WHERE thread_id = ? AND title IS NULL",
                (_title(message.content), now, thread_id),
            )
        return Turn(turn_id, thread_id, source, "queued", message, now), True

    def _start(self, turn: Turn) -> StoredMessage:
        stored = self._insert_message(turn.thread_id, turn.turn_id, turn.input, None)
        self._db.execute(
            "UPDATE turns SET state = 'running', user_message_id = ? WHERE turn_id = ?",
            (stored.id, turn.turn_id),
        )
        return stored

    def _insert_message(
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
            "epoch": self._epoch(thread_id),
            "turn_id": turn_id,
            **_encode(message),
            "created_at": now,
            "meta": json.dumps(dict(meta)) if meta is not None else None,
            "kind": kind,
        }
        cursor = self._db.execute(
            f"INSERT INTO messages ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
            list(record.values()),
        )
        self._db.execute("UPDATE threads SET updated_at = ? WHERE thread_id = ?", (now, thread_id))
        assert cursor.lastrowid is not None
        return StoredMessage(cursor.lastrowid, thread_id, turn_id, message, now, meta, kind)
