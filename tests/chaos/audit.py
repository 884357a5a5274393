"""What the databases say after a chaos run, read once the daemon has stopped."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ganglion.messages import reminder_turn_id

__all__ = ["Audit", "audit"]


@dataclass
class Audit:
    turns: dict[str, str] = field(default_factory=dict)  # turn id -> state
    finals: Counter[str] = field(default_factory=Counter)  # turn id -> final replies stored
    tool_rounds_doubled: list[tuple[str, int, str]] = field(default_factory=list)
    tool_results: int = 0
    slots: dict[str, int] = field(default_factory=dict)  # ledger state -> count
    slots_doubled: int = 0
    one_shots_unfired: list[str] = field(default_factory=list)
    # Ledger slots marked done whose turn is not stored, not done, or not answered once:
    # (turn id, what was found).
    done_slots_unanswered: list[tuple[str, str]] = field(default_factory=list)
    done_slots: int = 0
    integrity: dict[str, str] = field(default_factory=dict)

    def user_turns(self, thread_id: str) -> dict[str, str]:
        """The client message ids the daemon stored for `thread_id`, with their state."""
        prefix = f"{thread_id}/"
        return {
            turn_id[len(prefix) :]: state
            for turn_id, state in self.turns.items()
            if turn_id.startswith(prefix) and "/reminder/" not in turn_id
        }

    @property
    def reminder_turns(self) -> dict[str, str]:
        return {t: s for t, s in self.turns.items() if "/reminder/" in t}

    @property
    def failed_turns(self) -> list[str]:
        return sorted(t for t, s in self.turns.items() if s == "failed")


def audit(data_dir: Path) -> Audit:
    found = Audit()
    for db in sorted(data_dir.glob("*.db")):
        with sqlite3.connect(db) as conn:
            found.integrity[db.name] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    with sqlite3.connect(data_dir / "conversation.db") as conn:
        found.turns = dict(conn.execute("SELECT turn_id, state FROM turns"))
        found.finals.update(
            dict(
                conn.execute(
                    "SELECT turn_id, count(*) FROM messages WHERE role = 'assistant' "
                    "AND tool_calls IS NULL AND turn_id IS NOT NULL GROUP BY turn_id"
                )
            )
        )
        _audit_tools(conn, found)
    with sqlite3.connect(data_dir / "scheduler.db") as conn:
        found.slots = dict(conn.execute("SELECT state, count(*) FROM ledger GROUP BY state"))
        found.slots_doubled = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM ledger GROUP BY reminder_id, slot "
            "HAVING count(*) > 1)"
        ).fetchone()[0]
        found.one_shots_unfired = [
            rid
            for (rid,) in conn.execute(
                "SELECT r.id FROM reminders r WHERE r.kind = 'at' AND NOT EXISTS (SELECT 1 "
                "FROM ledger l WHERE l.reminder_id = r.id AND l.state IN ('done', 'missed'))"
            )
        ]
        done = conn.execute(
            "SELECT r.id, r.thread_id, l.slot FROM ledger l JOIN reminders r "
            "ON r.id = l.reminder_id WHERE l.state = 'done'"
        ).fetchall()
    _cross_check_ledger(done, found)
    return found


def _cross_check_ledger(done: list[tuple[str, str, float]], found: Audit) -> None:
    """Every slot the ledger marks done has its turn stored, finished, with one reply."""
    found.done_slots = len(done)
    for reminder_id, thread_id, slot in done:
        key = datetime.fromtimestamp(slot, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        turn_id = reminder_turn_id(thread_id, reminder_id, key)
        state = found.turns.get(turn_id)
        if state != "done" or found.finals[turn_id] != 1:
            what = f"turn {state or 'not stored'}, {found.finals[turn_id]} final replies"
            found.done_slots_unanswered.append((turn_id, what))


def _audit_tools(conn: sqlite3.Connection, found: Audit) -> None:
    """Each tool result belongs to the round of the assistant message that asked for it
    (the latest one before it in its turn); no call may have two results in a round."""
    rounds: Counter[tuple[str, int, str]] = Counter()
    current: dict[str, int] = {}
    rows = conn.execute(
        "SELECT id, turn_id, role, tool_calls, tool_call_id FROM messages "
        "WHERE turn_id IS NOT NULL ORDER BY id"
    )
    for message_id, turn_id, role, tool_calls, call_id in rows:
        if role == "assistant" and tool_calls:
            current[turn_id] = message_id
        elif role == "tool":
            found.tool_results += 1
            rounds[(turn_id, current.get(turn_id, -1), call_id)] += 1
    found.tool_rounds_doubled = [key for key, count in rounds.items() if count > 1]
