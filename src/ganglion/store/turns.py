"""The turns: the write-ahead state machine of the conversation store (tables and storage
design: `ganglion.store.conversations`).

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

A regenerated answer is a *version* of the one it replaced: the new turn names the first
turn of the line (`turns.version_of`). While it is still the last turn, the owner may
flip between the versions that were answered (`versions`, `choose_version`, by the same
rules): the rows of the one shown are superseded by the one chosen and the chosen one's
rows come back, so the model sees only the chosen answer. An edit starts a line of its
own (it answers another message).

All blocking work runs in a worker thread, one call at a time, on one connection; each
write is one short transaction (`ganglion.store.sqlite`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from ganglion.store.db import ConversationDB
from ganglion.store.rows import (
    PENDING,
    Chosen,
    FinishedTurn,
    RewindReason,
    RewindRefused,
    Rewound,
    StoredMessage,
    ThreadState,
    Turn,
    encode,
    stored_message,
    title,
    turn_row,
)
from ganglion.store.sqlite import StoreError
from ganglion.transcript import ChatMessage

__all__ = ["Turns"]


class Turns:
    """What the thread actors (and the daemon's `submit`) do to a conversation: load it, queue,
    start, append to and finish its turns, take the last one back, summarise, start afresh."""

    def __init__(self, store: ConversationDB) -> None:
        self._store = store

    async def load_thread(self, thread_id: str, *, interface: str) -> ThreadState:
        """The thread's current epoch: summary, messages and pending turns. Creates the
        thread on first use."""

        def load() -> ThreadState:
            self._store.execute(
                "INSERT OR IGNORE INTO threads (thread_id, interface, created_at, epoch) "
                "VALUES (?, ?, ?, 0)",
                (thread_id, interface, time.time()),
            )
            thread = self._store.rows("SELECT * FROM threads WHERE thread_id = ?", (thread_id,))[0]
            messages = self._store.rows(
                "SELECT * FROM messages WHERE thread_id = ? AND epoch = ? AND kind IS NULL "
                "AND superseded_by IS NULL ORDER BY id",
                (thread_id, thread["epoch"]),
            )
            return ThreadState(
                thread_id=thread_id,
                epoch=thread["epoch"],
                summary=thread["summary"],
                summary_upto=thread["summary_upto"],
                messages=tuple(stored_message(r) for r in messages),
                pending=self._store.pending(thread_id),
                model=thread["model"],
            )

        return await self._store.write(load)

    async def choose_model(self, thread_id: str, name: str | None) -> None:
        """Ask the model `name` (of `llm.models`; None: the main one) in `thread_id` from
        now on (`/model`); kept across restarts."""
        await self._store.write(lambda: self._store.update_thread(thread_id, "model", name))

    async def set_summary(self, thread_id: str, summary: str, upto_message_id: int) -> None:
        """Store the compaction summary of the current epoch, covering the messages up to
        and including `upto_message_id`."""

        def update() -> None:
            cursor = self._store.execute(
                "UPDATE threads SET summary = ?, summary_upto = ? WHERE thread_id = ?",
                (summary, upto_message_id, thread_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"unknown thread {thread_id!r}")

        await self._store.write(update)

    async def new_epoch(self, thread_id: str) -> int:
        """Archive the thread's history (the rows stay) and start afresh: bump the epoch,
        clear the summary, fail the pending turns. Returns the new epoch."""

        def bump() -> int:
            epoch = self._store.epoch(thread_id)
            self._store.execute(
                "UPDATE turns SET state = 'failed', finished_at = ? WHERE thread_id = ? "
                "AND epoch = ? AND state IN ('queued', 'running')",
                (time.time(), thread_id, epoch),
            )
            self._store.execute(
                "UPDATE threads SET epoch = ?, summary = NULL, summary_upto = NULL "
                "WHERE thread_id = ?",
                (epoch + 1, thread_id),
            )
            return epoch + 1

        return await self._store.write(bump)

    async def threads_with_pending_turns(self) -> tuple[str, ...]:
        """Threads with turns cut off before they finished (to re-activate at start)."""
        rows = await self._store.read(
            lambda: self._store.rows(
                "SELECT DISTINCT turns.thread_id FROM turns JOIN threads USING (thread_id) "
                "WHERE turns.state IN ('queued', 'running') AND turns.epoch = threads.epoch "
                "ORDER BY turns.thread_id"
            )
        )
        return tuple(r["thread_id"] for r in rows)

    async def missing_turns(self, turn_ids: Sequence[str]) -> set[str]:
        """Those of `turn_ids` that no turn has (in any state, any epoch)."""
        wanted = list(dict.fromkeys(turn_ids))

        def find() -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), 500):  # under SQLite's variable limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._store.rows(
                    f"SELECT turn_id FROM turns WHERE turn_id IN ({marks})", batch
                )
                found.update(r["turn_id"] for r in rows)
            return set(wanted) - found

        return await self._store.read(find) if wanted else set()

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
        return await self._store.write(lambda: self._queue(thread_id, message, source, turn_id))

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

        return await self._store.write(begin)

    async def take_turn(
        self,
        thread_id: str,
        message: ChatMessage,
        *,
        source: str,
        turn_id: str | None = None,
        start: bool = False,
    ) -> tuple[Turn, bool, StoredMessage | None]:
        """`queue_turn`, or with `start` `begin_turn`: the turn, whether it was created now,
        and its input as appended to the history when it was started."""
        if start:
            turn, started = await self.begin_turn(
                thread_id, message, source=source, turn_id=turn_id
            )
            return turn, started is not None, started
        turn, created = await self.queue_turn(thread_id, message, source=source, turn_id=turn_id)
        return turn, created, None

    async def start_turn(self, turn_id: str) -> StoredMessage:
        """Append a queued turn's input to the history and mark it running (one
        transaction). `StoreError` if the turn is not queued."""

        def start() -> StoredMessage:
            turn = self._store.get_turn(turn_id)
            if turn.state != "queued":
                raise StoreError(f"turn {turn_id!r} is {turn.state}, not queued")
            return self._start(turn)

        return await self._store.write(start)

    async def append(
        self,
        thread_id: str,
        turn_id: str | None,
        message: ChatMessage,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> StoredMessage:
        """Append one message to the thread's current epoch (one INSERT)."""
        return await self._store.write(
            lambda: self._store.insert_message(thread_id, turn_id, message, meta)
        )

    async def append_sending(
        self,
        thread_id: str,
        turn_id: str,
        message: ChatMessage,
        outbox: tuple[str, Mapping[str, Any]],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> FinishedTurn:
        """`append`, and in the same transaction `outbox` (kind, payload) for the
        interface to deliver: what a tool sends (a file) is delivered once it is on record,
        and only then."""

        def append() -> FinishedTurn:
            stored = self._store.insert_message(thread_id, turn_id, message, meta)
            kind, payload = outbox
            return FinishedTurn(
                stored, self._store.insert_outbox(thread_id, turn_id, kind, payload)
            )

        return await self._store.write(append)

    async def revise_input(self, turn_id: str, stored: StoredMessage) -> None:
        """Replace a running turn's input (`stored`, as appended to the history) with
        what was made of it: a voice message's transcript is the message."""
        encoded = json.dumps(encode(stored.message))

        def revise() -> None:
            self._store.execute(
                "UPDATE messages SET content = ? WHERE id = ?", (stored.message.content, stored.id)
            )
            self._store.execute("UPDATE turns SET input = ? WHERE turn_id = ?", (encoded, turn_id))

        await self._store.write(revise)

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
            turn = self._store.get_turn(turn_id)
            if turn.state not in PENDING:
                raise StoreError(f"turn {turn_id!r} is {turn.state} already")
            now = time.time()
            stored = (
                self._store.insert_message(turn.thread_id, turn_id, final, None)
                if final is not None
                else None
            )
            self._store.execute(
                "UPDATE turns SET state = ?, finished_at = ? WHERE turn_id = ?",
                (state, now, turn_id),
            )
            outbox_id = None
            if outbox is not None:
                outbox_id = self._store.insert_outbox(turn.thread_id, turn_id, "reply", outbox)
            return FinishedTurn(stored, outbox_id)

        return await self._store.write(finish)

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
            existing = self._store.rows("SELECT * FROM turns WHERE turn_id = ?", (new_turn_id,))
            if existing:
                return Rewound(turn_row(existing[0]), False, None)
            turn = self._last_turn(thread_id, turn_id)
            assert turn.user_message_id is not None
            first = turn.user_message_id
            now = time.time()
            self._supersede_from(thread_id, first, new_turn_id)
            # A reply taken back is never delivered late to a tab that missed it.
            self._store.execute(
                "UPDATE outbox SET delivered_at = ? WHERE turn_id = ? AND delivered_at IS NULL",
                (now, turn_id),
            )
            # An edit changes what was written; the files that came with it stay.
            message = (
                turn.input
                if text is None
                else ChatMessage("user", text, attachments=turn.input.attachments)
            )
            if text is not None and not self._said_before(thread_id, first):
                # A new first message: its answer names the conversation again.
                self._store.execute(
                    "UPDATE threads SET title = ?, title_state = NULL WHERE thread_id = ?",
                    (title(text), thread_id),
                )
            queued, _ = self._queue(thread_id, message, "user", new_turn_id)
            if text is None:  # a regeneration: another version of the same answer
                self._store.execute(
                    "UPDATE turns SET version_of = (SELECT coalesce(version_of, turn_id) "
                    "FROM turns WHERE turn_id = ?) WHERE turn_id = ?",
                    (turn_id, new_turn_id),
                )
            return Rewound(queued, True, first)

        return await self._store.write(rewind)

    async def versions(self, thread_id: str, turn_id: str) -> tuple[str, ...]:
        """The answered versions of `turn_id` (itself among them), oldest first, while it is
        the thread's last turn and may be taken back; else only `turn_id`."""

        def read() -> tuple[str, ...]:
            try:
                self._last_turn(thread_id, turn_id)
            except RewindRefused:
                return (turn_id,)
            return self._versions(thread_id, turn_id)

        return await self._store.read(read)

    async def choose_version(self, thread_id: str, turn_id: str) -> Chosen:
        """Show the version `turn_id` of the last turn's answer instead of the one shown,
        in one transaction (see the module's "Rewinding"). Choosing the one shown changes
        nothing. Error handling: `RewindRefused` (nothing written) when the last turn may
        not be taken back or `turn_id` is not one of its versions."""

        def choose() -> Chosen:
            last = self._last_turn(thread_id, None)
            if last.turn_id == turn_id:
                return Chosen(None, ())
            if turn_id not in self._versions(thread_id, last.turn_id):
                raise RewindRefused(
                    RewindReason.NOT_LAST,
                    "That answer is no longer one of the versions of your last message.",
                )
            assert last.user_message_id is not None
            self._supersede_from(thread_id, last.user_message_id, turn_id)
            epoch = self._store.epoch(thread_id)
            self._store.execute(
                "UPDATE messages SET superseded_by = NULL WHERE thread_id = ? AND epoch = ? "
                "AND turn_id = ?",
                (thread_id, epoch, turn_id),
            )
            rows = self._store.rows(
                "SELECT * FROM messages WHERE turn_id = ? AND kind IS NULL ORDER BY id",
                (turn_id,),
            )
            return Chosen(last.user_message_id, tuple(stored_message(r) for r in rows))

        return await self._store.write(choose)

    def _versions(self, thread_id: str, turn_id: str) -> tuple[str, ...]:
        """The versions of `turn_id` that were answered and are not in a summary."""
        rows = self._store.rows(
            "SELECT v.turn_id FROM turns t JOIN turns v "
            "ON v.turn_id = coalesce(t.version_of, t.turn_id) "
            "OR v.version_of = coalesce(t.version_of, t.turn_id) "
            "JOIN threads th ON th.thread_id = v.thread_id "
            "WHERE t.turn_id = ? AND v.thread_id = ? AND v.epoch = th.epoch "
            "AND (v.state = 'done' OR v.turn_id = t.turn_id) AND v.user_message_id IS NOT NULL "
            "AND (th.summary_upto IS NULL OR v.user_message_id > th.summary_upto) "
            "ORDER BY v.created_at, v.rowid",
            (turn_id, thread_id),
        )
        return tuple(r["turn_id"] for r in rows) or (turn_id,)

    async def turn(self, turn_id: str) -> Turn | None:
        """The turn `turn_id` as stored, or None if there is none."""
        rows = await self._store.read(
            lambda: self._store.rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        )
        return turn_row(rows[0]) if rows else None

    def _last_turn_id(self, thread_id: str) -> str:
        """The turn of the thread's last message (`RewindRefused` when there is none)."""
        epoch = self._store.epoch(thread_id)
        last = self._store.rows(
            "SELECT turn_id FROM messages WHERE thread_id = ? AND epoch = ? AND kind IS NULL "
            "AND superseded_by IS NULL ORDER BY id DESC LIMIT 1",
            (thread_id, epoch),
        )
        if not last or last[0]["turn_id"] is None:
            raise RewindRefused(
                RewindReason.NOTHING, "There is no message of yours to edit or regenerate yet."
            )
        return str(last[0]["turn_id"])

    def _supersede_from(self, thread_id: str, first: int, by: str) -> None:
        """Mark the current epoch's rows from `first` on as replaced by the turn `by`."""
        self._store.execute(
            "UPDATE messages SET superseded_by = ? WHERE thread_id = ? AND epoch = ? "
            "AND id >= ? AND superseded_by IS NULL",
            (by, thread_id, self._store.epoch(thread_id), first),
        )

    def _last_turn(self, thread_id: str, turn_id: str | None) -> Turn:
        """`turn_id` (None: whichever it is) if it is the owner's last turn in the thread
        and may be taken back."""
        turn = self._store.get_turn(self._last_turn_id(thread_id))
        if (
            (turn_id is not None and turn.turn_id != turn_id)
            or turn.source != "user"
            or turn.user_message_id is None
        ):
            raise RewindRefused(
                RewindReason.NOT_LAST,
                "Only your last message can be edited or its answer regenerated, and "
                "something came after this one.",
            )
        if turn.state in PENDING:
            raise RewindRefused(RewindReason.BUSY, "This message is still being answered.")
        summary_upto = self._store.rows(
            "SELECT summary_upto FROM threads WHERE thread_id = ?", (thread_id,)
        )[0]["summary_upto"]
        if summary_upto is not None and turn.user_message_id <= summary_upto:
            raise RewindRefused(
                RewindReason.COMPACTED,
                "This message is part of the summary of the older conversation now, so it "
                "can no longer be edited or regenerated.",
            )
        return turn

    def _said_before(self, thread_id: str, message_id: int) -> bool:
        """Whether the owner wrote in the thread before `message_id` (not superseded)."""
        rows = self._store.rows(
            "SELECT 1 FROM messages m JOIN turns t ON t.user_message_id = m.id "
            "WHERE m.thread_id = ? AND m.id < ? AND t.source = 'user' "
            "AND m.superseded_by IS NULL LIMIT 1",
            (thread_id, message_id),
        )
        return bool(rows)

    def _queue(
        self, thread_id: str, message: ChatMessage, source: str, turn_id: str
    ) -> tuple[Turn, bool]:
        self._store.refuse_deleted(thread_id)
        existing = self._store.rows("SELECT * FROM turns WHERE turn_id = ?", (turn_id,))
        if existing:
            turn = turn_row(existing[0])
            if turn.thread_id != thread_id:
                raise StoreError(f"turn {turn_id!r} belongs to thread {turn.thread_id!r}")
            return turn, False
        now = time.time()
        self._store.execute(
            "INSERT INTO turns (turn_id, thread_id, epoch, source, state, input, created_at) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            (
                turn_id,
                thread_id,
                self._store.epoch(thread_id),
                source,
                json.dumps(encode(message)),
                now,
            ),
        )
        if source == "user" and message.content:
            self._store.execute(
                "UPDATE threads SET title = ?, updated_at = ? WHERE thread_id = ? AND title IS NULL",
                (title(message.content), now, thread_id),
            )
        if source == "reminder":
            # A reminder that speaks in an archived conversation brings it back to the list.
            self._store.execute(
                "UPDATE threads SET archived = 0 WHERE thread_id = ? AND archived = 1",
                (thread_id,),
            )
        return Turn(turn_id, thread_id, source, "queued", message, now), True

    def _start(self, turn: Turn) -> StoredMessage:
        stored = self._store.insert_message(turn.thread_id, turn.turn_id, turn.input, None)
        self._store.execute(
            "UPDATE turns SET state = 'running', user_message_id = ? WHERE turn_id = ?",
            (stored.id, turn.turn_id),
        )
        return stored
