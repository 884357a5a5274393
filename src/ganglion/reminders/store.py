"""The reminder store: `data/scheduler.db`.

Storage design
--------------

- `reminders`: one row per reminder, with its schedule, its target (a thread, or the
  system) and `next_fire`, the UTC epoch of its next slot (NULL once it will never fire
  again). A partial index on `next_fire` of active reminders gives the next due slot
  without a scan, however many reminders there are.
- `ledger`: one row per fired slot, keyed by (reminder, slot). A slot is *claimed* (and
  the reminder's `next_fire` advanced) in one transaction before anything is sent, and
  marked *done* once its thread confirmed that the reminder's turn is on disk. A slot is never claimed twice
  (primary key), so it never fires twice; a claimed slot that is not done (the daemon
  died in between) is sent again on start, and the thread receives it under a turn id
  derived from the slot, which it takes only once. Slots missed beyond the grace period
  are recorded as *missed*.

`reminders.json` next to the database is a human-readable mirror, rewritten atomically
(temp file + rename) after every change.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ganglion.datadir import REMINDERS_MIRROR
from ganglion.reminders.schedule import Schedule, describe
from ganglion.safefs import open_dir
from ganglion.store.migrations import Migrations
from ganglion.store.sqlite import SQLiteStore

__all__ = ["Claim", "Reminder", "ReminderStore", "Slot"]

migrations = Migrations("scheduler")


@migrations.migration
def create_reminders(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE reminders (
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            kind TEXT NOT NULL,
            spec TEXT NOT NULL,
            timezone TEXT NOT NULL,
            anchor REAL NOT NULL,
            thread_id TEXT,
            system INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL DEFAULT 'user',
            next_fire REAL,
            active INTEGER NOT NULL DEFAULT 1
        )"""
    )
    db.execute("CREATE INDEX reminders_due ON reminders (next_fire) WHERE active = 1")
    db.execute(
        """CREATE TABLE ledger (
            reminder_id TEXT NOT NULL REFERENCES reminders(id),
            slot REAL NOT NULL,
            state TEXT NOT NULL,
            claimed_at REAL NOT NULL,
            done_at REAL,
            PRIMARY KEY (reminder_id, slot)
        )"""
    )
    db.execute("CREATE INDEX ledger_unfinished ON ledger (state) WHERE state = 'claimed'")


@migrations.migration
def index_done_slots(db: sqlite_utils.Database) -> None:
    # Start-up checks the slots done lately against the conversation store.
    db.execute("CREATE INDEX ledger_done ON ledger (done_at) WHERE state = 'done'")


@migrations.migration
def add_turn_and_confirmation(db: sqlite_utils.Database) -> None:
    # The turn that set a reminder (limits per turn), and whether a recurring reminder
    # the model set is waiting for the owner's /confirm (inactive until then).
    db.execute("ALTER TABLE reminders ADD COLUMN turn_id TEXT")
    db.execute("ALTER TABLE reminders ADD COLUMN awaiting_confirmation INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX reminders_by_turn ON reminders (turn_id) WHERE turn_id IS NOT NULL")


def _utc(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass(frozen=True, slots=True)
class Reminder:
    id: str
    text: str
    schedule: Schedule
    thread_id: str | None
    system: bool
    next_fire: datetime | None
    active: bool
    created_by: str = "user"
    awaiting_confirmation: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Reminder:
        anchor = _utc(row["anchor"])
        assert anchor is not None
        return cls(
            id=row["id"],
            text=row["text"],
            schedule=Schedule(row["kind"], row["spec"], row["timezone"], anchor),
            thread_id=row["thread_id"],
            system=bool(row["system"]),
            next_fire=_utc(row["next_fire"]),
            active=bool(row["active"]),
            created_by=row["created_by"],
            awaiting_confirmation=bool(row["awaiting_confirmation"]),
        )


@dataclass(frozen=True, slots=True)
class Slot:
    """One firing of a reminder: the turn id the thread receives derives from it."""

    reminder: Reminder
    at: datetime

    @property
    def key(self) -> str:
        return self.at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Claim:
    """A due slot to claim, the reminder's next firing after it (None: it ends), and
    whether it is claimed as missed (too late to fire) rather than to fire."""

    slot: Slot
    next_fire: datetime | None
    missed: bool = False


class ReminderStore(SQLiteStore):
    migrations = migrations
    description = "scheduler database"

    async def add(
        self,
        text: str,
        schedule: Schedule,
        *,
        thread_id: str | None,
        system: bool,
        next_fire: datetime,
        created_by: str = "user",
        turn_id: str | None = None,
        awaiting_confirmation: bool = False,
    ) -> Reminder:
        """Store a reminder; one `awaiting_confirmation` stays inactive until `confirm`."""
        reminder = Reminder(
            id=uuid.uuid4().hex[:8],
            text=text,
            schedule=schedule,
            thread_id=thread_id,
            system=system,
            next_fire=next_fire,
            active=not awaiting_confirmation,
            created_by=created_by,
            awaiting_confirmation=awaiting_confirmation,
        )
        await self._write(
            lambda: self._db.execute(
                "INSERT INTO reminders (id, text, kind, spec, timezone, anchor, thread_id, "
                "system, created_at, created_by, next_fire, active, turn_id, "
                "awaiting_confirmation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    reminder.id,
                    text,
                    schedule.kind,
                    schedule.spec,
                    schedule.timezone,
                    schedule.anchor.timestamp(),
                    thread_id,
                    int(system),
                    time.time(),
                    created_by,
                    next_fire.timestamp(),
                    int(reminder.active),
                    turn_id,
                    int(awaiting_confirmation),
                ),
            )
        )
        await self.mirror()
        return reminder

    async def cancel(self, reminder_id: str) -> bool:
        """End a reminder (or withdraw one awaiting confirmation); False if neither."""
        return await self._cancel_where("id = ?", reminder_id) > 0

    async def cancel_thread(self, thread_id: str) -> int:
        """End every reminder set in `thread_id` (a conversation deleted); how many."""
        return await self._cancel_where("thread_id = ?", thread_id)

    async def _cancel_where(self, which: str, value: str) -> int:
        cursor = await self._write(
            lambda: self._db.execute(
                "UPDATE reminders SET active = 0, awaiting_confirmation = 0 "
                f"WHERE {which} AND (active = 1 OR awaiting_confirmation = 1)",
                (value,),
            )
        )
        await self.mirror()
        return int(cursor.rowcount)

    async def confirm(self, reminder_id: str, next_fire: datetime) -> bool:
        """Activate a reminder awaiting confirmation, first due at `next_fire`."""
        cursor = await self._write(
            lambda: self._db.execute(
                "UPDATE reminders SET active = 1, awaiting_confirmation = 0, next_fire = ? "
                "WHERE id = ? AND awaiting_confirmation = 1",
                (next_fire.timestamp(), reminder_id),
            )
        )
        await self.mirror()
        return cursor.rowcount > 0

    async def get(self, reminder_id: str) -> Reminder | None:
        rows = await self._read(
            lambda: self._rows("SELECT * FROM reminders WHERE id = ?", (reminder_id,))
        )
        return Reminder.from_row(rows[0]) if rows else None

    async def awaiting(self) -> list[Reminder]:
        """Recurring reminders the model set that wait for the owner's confirmation."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT * FROM reminders WHERE awaiting_confirmation = 1 ORDER BY created_at"
            )
        )
        return [Reminder.from_row(r) for r in rows]

    async def count_set(self, *, thread_id: str | None = None, turn_id: str | None = None) -> int:
        """Reminders pending (active or awaiting) set from `thread_id`, or ever set in
        `turn_id`."""
        params: tuple[str | None, ...]
        if turn_id is not None:
            sql, params = "SELECT count(*) AS n FROM reminders WHERE turn_id = ?", (turn_id,)
        else:
            sql = (
                "SELECT count(*) AS n FROM reminders WHERE thread_id = ? "
                "AND (active = 1 OR awaiting_confirmation = 1)"
            )
            params = (thread_id,)
        rows = await self._read(lambda: self._rows(sql, params))
        return int(rows[0]["n"])

    async def active(self) -> list[Reminder]:
        rows = await self._read(
            lambda: self._rows(
                "SELECT * FROM reminders WHERE active = 1 ORDER BY next_fire IS NULL, next_fire"
            )
        )
        return [Reminder.from_row(r) for r in rows]

    async def count_active(self) -> int:
        rows = await self._read(
            lambda: self._rows("SELECT count(*) AS n FROM reminders WHERE active = 1")
        )
        return int(rows[0]["n"])

    async def next_due_at(self) -> datetime | None:
        """When the earliest active slot is due (from the index, not a scan)."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT min(next_fire) AS due FROM reminders WHERE active = 1 AND next_fire IS NOT NULL"
            )
        )
        return _utc(rows[0]["due"])

    async def due(self, now: datetime, *, limit: int = 500) -> list[Reminder]:
        rows = await self._read(
            lambda: self._rows(
                "SELECT * FROM reminders WHERE active = 1 AND next_fire <= ? "
                "ORDER BY next_fire LIMIT ?",
                (now.timestamp(), limit),
            )
        )
        return [Reminder.from_row(r) for r in rows]

    async def claim(self, claims: Sequence[Claim]) -> list[Claim]:
        """Claim each slot and advance its reminder, all in one transaction; return the
        claims that won. A slot claimed before, or whose reminder was cancelled meanwhile,
        is left out (and nothing of it changes)."""

        def claim_all() -> list[Claim]:
            return [claim for claim in claims if self._claim_one(claim)]

        if not claims:
            return []
        return await self._write(claim_all)

    def _claim_one(self, claim: Claim) -> bool:
        slot = claim.slot
        active = self._rows("SELECT active FROM reminders WHERE id = ?", (slot.reminder.id,))
        if not active or not active[0]["active"]:
            return False
        exists = self._rows(
            "SELECT 1 FROM ledger WHERE reminder_id = ? AND slot = ?",
            (slot.reminder.id, slot.at.timestamp()),
        )
        if exists:
            return False
        self._db.execute(
            "INSERT INTO ledger (reminder_id, slot, state, claimed_at) VALUES (?, ?, ?, ?)",
            (
                slot.reminder.id,
                slot.at.timestamp(),
                "missed" if claim.missed else "claimed",
                time.time(),
            ),
        )
        following = claim.next_fire
        self._db.execute(
            "UPDATE reminders SET next_fire = ?, active = ? WHERE id = ?",
            (
                following.timestamp() if following else None,
                int(following is not None),
                slot.reminder.id,
            ),
        )
        return True

    async def complete(self, *slots: Slot) -> None:
        """Mark slots done (their turns are durable in their threads), in one transaction."""
        if not slots:
            return
        done = time.time()
        rows = [(done, slot.reminder.id, slot.at.timestamp()) for slot in slots]
        await self._write(
            lambda: self._db.conn.executemany(
                "UPDATE ledger SET state = 'done', done_at = ? WHERE reminder_id = ? AND slot = ?",
                rows,
            )
        )

    async def unfinished(self) -> list[Slot]:
        """Slots claimed but not marked done: the daemon stopped in between."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT r.*, l.slot AS ledger_slot FROM ledger l JOIN reminders r "
                "ON r.id = l.reminder_id WHERE l.state = 'claimed' ORDER BY l.slot"
            )
        )
        return [Slot(Reminder.from_row(r), _utc(r["ledger_slot"])) for r in rows]  # type: ignore[arg-type]

    async def done_since(self, since: datetime) -> list[Slot]:
        """Slots marked done at `since` or later, oldest first."""
        rows = await self._read(
            lambda: self._rows(
                "SELECT r.*, l.slot AS ledger_slot FROM ledger l JOIN reminders r "
                "ON r.id = l.reminder_id WHERE l.state = 'done' AND l.done_at >= ? "
                "ORDER BY l.slot",
                (since.timestamp(),),
            )
        )
        return [Slot(Reminder.from_row(r), _utc(r["ledger_slot"])) for r in rows]  # type: ignore[arg-type]

    async def mark_missed(self, *slots: Slot) -> None:
        """Record slots as missed (reported to the owner, never fired), in one transaction."""
        if not slots:
            return
        rows = [(slot.reminder.id, slot.at.timestamp()) for slot in slots]
        await self._write(
            lambda: self._db.conn.executemany(
                "UPDATE ledger SET state = 'missed' WHERE reminder_id = ? AND slot = ?", rows
            )
        )

    async def ledger_counts(self) -> dict[str, int]:
        """How many slots the ledger holds in each state (claimed, done, missed)."""
        rows = await self._read(
            lambda: self._rows("SELECT state, count(*) AS n FROM ledger GROUP BY state")
        )
        return {str(row["state"]): int(row["n"]) for row in rows}

    async def ledger(self, reminder_id: str) -> list[tuple[datetime, str]]:
        rows = await self._read(
            lambda: self._rows(
                "SELECT slot, state FROM ledger WHERE reminder_id = ? ORDER BY slot", (reminder_id,)
            )
        )
        return [(_utc(r["slot"]), r["state"]) for r in rows]  # type: ignore[misc]

    async def mirror(self) -> None:
        """Rewrite reminders.json from the database, in place: the shell's sandbox hides
        it with a mount on its inode, which a replacement by rename would take away from
        a command already running (the database is what counts; this is a copy)."""
        reminders = await self.active()
        path = self.path.with_name(REMINDERS_MIRROR)
        data = [
            {
                "id": r.id,
                "text": r.text,
                "schedule": describe(r.schedule),
                "timezone": r.schedule.timezone,
                "next_fire": r.next_fire.isoformat() if r.next_fire else None,
                "thread_id": r.thread_id,
                "system": r.system,
            }
            for r in reminders
        ]
        text = json.dumps(data, indent=2) + "\n"
        await self._run(lambda: _write_mirror(path, text))


def _write_mirror(path: Path, text: str) -> None:
    with open_dir(path.parent) as directory:
        directory.overwrite(path.name, text.encode())
