"""Reminder firing lateness with 10,000 scheduled, and start-up with 100,000 stored.

Lateness: 10,000 reminders are scheduled; 1,000 of them come due over 20 seconds, the
rest wait in the future (they must cost nothing while waiting). Each firing's lateness is
the time between its slot and the moment its turn is durable in a real conversation store
(what a thread does before it confirms the hand-over, and the slot is marked done), on the
real clock; `handed_over_*` is the time to the hand-over call itself.

Start-up: 100,000 reminders are stored; the time to open the store and get the actor to
`started()` (recovering unfinished slots and finding the next due slot) is measured.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from ganglion.config import RemindersConfig
from ganglion.messages import ReminderDue
from ganglion.reminders.actor import ReminderActor
from ganglion.reminders.store import ReminderStore
from ganglion.store import ConversationStore
from ganglion.transcript import ChatMessage
from ganglion_actors import ChildSpec, open_supervisor

SCHEDULED = 10_000
DUE_IN_WINDOW = 1_000
WINDOW_SECONDS = 20.0
STORED_FOR_STARTUP = 100_000


def _rows(count: int, first: datetime, spread: float, far: bool) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        offset = int(spread * n / max(1, count))  # whole seconds: slots are kept to the second
        at = first + timedelta(seconds=offset) + (timedelta(days=30) if far else timedelta())
        rows.append(
            {
                "id": uuid.uuid4().hex[:12],
                "text": f"reminder {n}",
                "kind": "at",
                "spec": at.replace(tzinfo=None).isoformat(),
                "timezone": "UTC",
                "anchor": time.time(),
                "thread_id": f"web_{n % 50:016x}",
                "system": 0,
                "created_at": time.time(),
                "created_by": "user",
                "next_fire": at.timestamp(),
                "active": 1,
            }
        )
    return rows


def _fill(path: Path, rows: list[dict[str, Any]]) -> None:
    db = ReminderStore.connect(path)
    db.table("reminders").insert_all(rows, batch_size=5000)
    db.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def _lateness(path: Path) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    rows = _rows(DUE_IN_WINDOW, start, WINDOW_SECONDS, far=False)
    rows += _rows(SCHEDULED - DUE_IN_WINDOW, start, WINDOW_SECONDS, far=True)
    await trio.to_thread.run_sync(_fill, path, rows)
    store = await ReminderStore.open(path)
    conversations = await ConversationStore.open(path.with_name("conversation.db"))
    for thread_id in {row["thread_id"] for row in rows}:
        await conversations.turns.load_thread(thread_id, interface="web")
    late: list[float] = []
    handed: list[float] = []
    done = trio.Event()

    async def deliver(due: ReminderDue) -> None:
        slot = datetime.strptime(due.slot, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        handed.append((datetime.now(UTC) - slot).total_seconds() * 1000)
        await conversations.turns.queue_turn(
            due.thread_id, ChatMessage("user", due.text), source="reminder", turn_id=due.turn_id
        )
        late.append((datetime.now(UTC) - slot).total_seconds() * 1000)
        if len(late) >= DUE_IN_WINDOW:
            done.set()

    async def notify(thread_id: str, text: str) -> None:
        pass

    actor = ReminderActor(store, RemindersConfig(), "UTC", deliver, notify)
    async with open_supervisor("bench") as sup:
        await sup.start(ChildSpec("reminders", actor.serve))
        with trio.fail_after(WINDOW_SECONDS + 120):
            await done.wait()
        await sup.shutdown(5)
    await store.aclose()
    await conversations.aclose()
    return {
        "scheduled": SCHEDULED,
        "fired": len(late),
        "lateness_p50_ms": round(_percentile(late, 0.5), 2),
        "lateness_p99_ms": round(_percentile(late, 0.99), 2),
        "lateness_max_ms": round(max(late), 2),
        "lateness_mean_ms": round(statistics.fmean(late), 2),
        "handed_over_p50_ms": round(_percentile(handed, 0.5), 2),
        "handed_over_p99_ms": round(_percentile(handed, 0.99), 2),
        "conversation_commits": conversations.statistics().commits,
    }


async def _startup(path: Path) -> dict[str, Any]:
    rows = _rows(STORED_FOR_STARTUP, datetime.now(UTC) + timedelta(days=1), 86400 * 30, far=False)
    await trio.to_thread.run_sync(_fill, path, rows)
    started = time.perf_counter()
    store = await ReminderStore.open(path)

    async def deliver(due: ReminderDue) -> None:
        pass

    async def notify(thread_id: str, text: str) -> None:
        pass

    actor = ReminderActor(store, RemindersConfig(), "UTC", deliver, notify)
    async with open_supervisor("bench") as sup:
        await sup.start(ChildSpec("reminders", actor.serve))
        ready = time.perf_counter() - started
        await sup.shutdown(5)
    await store.aclose()
    return {"stored": STORED_FOR_STARTUP, "startup_ms": round(ready * 1000, 1)}


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        lateness = await _lateness(Path(tmp) / "late.db")
        startup = await _startup(Path(tmp) / "startup.db")
    return {"firing": lateness, "startup": startup}


def main() -> dict[str, Any]:
    return trio.run(_run)
