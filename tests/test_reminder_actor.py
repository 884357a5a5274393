"""The reminder actor on a mock clock with an injectable wall clock."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ganglion.config import RemindersConfig
from ganglion.messages import AddReminder, CancelReminder, ListReminders, ReminderDue, ReminderInfo
from ganglion.reminders.actor import HANDOVER_TIMEOUT, RETRY_DELAY, ReminderActor
from ganglion.reminders.schedule import ScheduleError
from ganglion.reminders.store import ReminderStore
from ganglion.store import StoreError, ThreadDeleted
from ganglion_actors import ActorDied, ActorRef, ActorStopped, ChildSpec, Restart, open_supervisor

THREAD = "web_1234567812345678"


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Jumps after a short real idle moment: the store works in a worker thread."""
    return trio.testing.MockClock(autojump_threshold=0.02)


START = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)


@dataclass
class Rig:
    store: ReminderStore
    ref: ActorRef[Any]
    delivered: list[ReminderDue]
    notices: list[tuple[str, str]]
    wall: WallClock

    async def add(self, kind: str, spec: str, text: str = "ping", **kw: Any) -> ReminderInfo:
        with trio.fail_after(30):
            info: ReminderInfo = await self.ref.ask(
                lambda reply: AddReminder(text, kind, spec, reply, **{"thread_id": THREAD, **kw})  # type: ignore[arg-type]
            )
            return info

    async def elapse(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait for `condition`, however long the store's worker thread takes (the mock
        clock may jump while it works, so a fixed sleep would be a race)."""
        with trio.fail_after(30 * 86400):
            while not condition():
                await trio.sleep(0.5)

    async def ledger_settles(self, reminder_id: str, states: list[str]) -> None:
        with trio.fail_after(30 * 86400):
            while [s for _, s in await self.store.ledger(reminder_id)] != states:
                await trio.sleep(0.5)

    async def delivered_count(self, count: int) -> None:
        await self.until(lambda: len(self.delivered) >= count)


@dataclass
class WallClock:
    """Wall time = a base instant + the trio clock + jumps the test makes."""

    base: datetime
    offset: float = 0.0
    zero: float = field(default_factory=trio.current_time)

    def __call__(self) -> datetime:
        return self.base + timedelta(seconds=trio.current_time() - self.zero + self.offset)


@asynccontextmanager
async def rig(
    data: Path,
    wall: WallClock,
    *,
    fail_deliver: int = 0,
    unconfirmed: list[BaseException | None] | None = None,
    turns: set[str] | None = None,
    config: RemindersConfig | None = None,
    max_sleep: float = 3600,
) -> AsyncIterator[Rig]:
    """`unconfirmed`: how the next hand-overs fail to be confirmed by the thread (an
    exception to raise, or None for a thread that never answers). `turns`: the turn ids
    the conversation store has (None: no check)."""
    store = await ReminderStore.open(data / "scheduler.db")
    delivered: list[ReminderDue] = []
    notices: list[tuple[str, str]] = []
    failures = [fail_deliver]
    refusals = list(unconfirmed or [])

    async def deliver(due: ReminderDue) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("killed while handing the slot over")
        if refusals:
            refusal = refusals.pop(0)
            if refusal is None:
                await trio.sleep_forever()
            raise refusal
        delivered.append(due)

    async def missing_turns(turn_ids: Sequence[str]) -> set[str]:
        assert turns is not None
        return set(turn_ids) - turns

    async def notify(thread_id: str, text: str) -> None:
        notices.append((thread_id, text))

    actor = ReminderActor(
        store,
        config or RemindersConfig(min_interval=60, confirm_recurring=False),
        "Europe/Paris",
        deliver,
        notify,
        missing_turns=None if turns is None else missing_turns,
        wall=wall,
        max_sleep=max_sleep,
    )
    try:
        async with open_supervisor("test", intensity=0) as sup:
            ref = await sup.start(ChildSpec("reminders", actor.serve, restart=Restart.TEMPORARY))
            yield Rig(store, ref, delivered, notices, wall)
            await sup.shutdown(1)
    finally:
        await store.aclose()


async def test_a_one_shot_fires_once_at_its_time(tmp_path: Path, clock: trio.abc.Clock) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        info = await r.add("at", "in 10m", "stretch")
        assert info.next_fire == "2026-03-27 13:10 CET"
        await r.elapse(9 * 60)
        assert r.delivered == []
        await r.elapse(2 * 60)
        await r.delivered_count(1)
        assert [(d.text, d.thread_id, d.slot) for d in r.delivered] == [
            ("stretch", THREAD, "2026-03-27T12:10:00Z")
        ]
        await r.elapse(3600)
        assert len(r.delivered) == 1
        assert await r.store.active() == []


async def test_an_interval_fires_every_period(tmp_path: Path, clock: trio.abc.Clock) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        await r.add("every", "1h")
        await r.elapse(3 * 3600 + 30)
        await r.delivered_count(3)
        slots = [d.slot for d in r.delivered]
        # The mock clock may run on while the store's worker thread writes (a loaded
        # machine): later slots may have fired too, but never out of order or twice.
        assert slots[:3] == [
            "2026-03-27T13:00:00Z",
            "2026-03-27T14:00:00Z",
            "2026-03-27T15:00:00Z",
        ]
        assert slots == sorted(set(slots))


async def test_a_daily_cron_fires_at_nine_local_across_the_dst_change(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        await r.add("cron", "0 9 * * *", timezone="Europe/Paris")
        await r.elapse(4 * 86400)
        await r.delivered_count(4)
    assert [d.slot for d in r.delivered] == [
        "2026-03-28T08:00:00Z",  # 09:00 CET
        "2026-03-29T07:00:00Z",  # 09:00 CEST, after the switch
        "2026-03-30T07:00:00Z",
        "2026-03-31T07:00:00Z",
    ]


async def test_an_interval_keeps_its_rhythm_across_a_restart(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall) as r:
        await r.add("every", "1h")
        await r.elapse(90 * 60)
        await r.delivered_count(1)
        assert len(r.delivered) == 1
    wall.offset += 45 * 60  # down for 45 minutes, across the 14:00 slot
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        assert [d.slot for d in r.delivered] == ["2026-03-27T14:00:00Z"]  # missed, fired once
        await r.elapse(3600)
        await r.delivered_count(2)
        assert [d.slot for d in r.delivered][-1] == "2026-03-27T15:00:00Z"


async def test_a_recurring_reminder_that_missed_many_slots_fires_once(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall) as r:
        await r.add("every", "10m")
    wall.offset += 3 * 3600  # 18 slots missed
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        assert len(r.delivered) == 1
        await r.elapse(10 * 60)
        await r.delivered_count(2)
        assert len(r.delivered) == 2


async def test_a_one_shot_missed_within_the_grace_fires_after_restart(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall) as r:
        await r.add("at", "in 5m")
    wall.offset += 3600
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        assert len(r.delivered) == 1
        assert r.notices == []


async def test_a_one_shot_missed_beyond_the_grace_is_recorded_and_reported(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    config = RemindersConfig(misfire_grace=600, min_interval=60, confirm_recurring=False)
    async with rig(tmp_path, wall, config=config) as r:
        info = await r.add("at", "in 5m", "call mum")
    wall.offset += 3600
    async with rig(tmp_path, wall, config=config) as r:
        await r.until(lambda: bool(r.notices))
        assert r.delivered == []
        ((thread, text),) = r.notices
        assert thread == THREAD and "Missed reminder" in text and "call mum" in text
        assert await r.store.ledger(info.reminder_id) == [(START + timedelta(minutes=5), "missed")]


async def test_a_kill_after_the_claim_never_loses_the_slot(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall, fail_deliver=1) as r:
        info = await r.add("at", "in 1m")
        await r.elapse(120)
        await r.until(
            lambda: not r.ref.statistics().running
        )  # the actor died between claim and hand-over
    store = await ReminderStore.open(tmp_path / "scheduler.db")
    assert [s for _, s in await store.ledger(info.reminder_id)] == ["claimed"]
    await store.aclose()
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        assert [d.slot for d in r.delivered] == ["2026-03-27T12:01:00Z"]
        await r.ledger_settles(info.reminder_id, ["done"])
        await r.elapse(3600)
        assert len(r.delivered) == 1


async def test_a_kill_before_the_claim_fires_the_slot_after_restart(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall) as r:
        info = await r.add("at", "in 1m")
    wall.offset += 120  # the daemon was down when it came due: nothing was claimed
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        assert len(r.delivered) == 1
        await r.ledger_settles(info.reminder_id, ["done"])


@pytest.mark.parametrize(
    ("kind", "spec", "extra", "message"),
    [
        ("cron", "0 25 * * *", {}, "invalid cron expression"),
        ("at", "2026-12-01 09:00", {"timezone": "Moon/Base"}, "unknown timezone"),
        ("at", "2026-01-01 09:00", {}, "in the past"),
        ("every", "30s", {}, "shortest allowed interval"),
        ("at", "in 5m", {"text": "x" * 5000}, "longer than 4000"),
        ("every", "1h", {"source": "reminder"}, "only schedule one-shot"),
        ("cron", "0 9 * * *", {"source": "heartbeat"}, "only schedule one-shot"),
        ("at", "in 5m", {"thread_id": None}, "needs a thread"),
    ],
)
async def test_bad_reminders_are_refused_and_nothing_is_stored(
    tmp_path: Path, clock: trio.abc.Clock, kind: str, spec: str, extra: dict[str, Any], message: str
) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        text = extra.pop("text", "ping")
        with pytest.raises(ScheduleError, match=message):
            await r.add(kind, spec, text, **extra)
        assert await r.store.active() == []


async def test_max_active_is_enforced(tmp_path: Path, clock: trio.abc.Clock) -> None:
    config = RemindersConfig(max_active=2, min_interval=60, confirm_recurring=False)
    async with rig(tmp_path, WallClock(START), config=config) as r:
        await r.add("at", "in 5m")
        await r.add("at", "in 6m")
        with pytest.raises(ScheduleError, match="already 2 active reminders"):
            await r.add("at", "in 7m")


async def test_list_cancel_and_the_json_mirror(tmp_path: Path, clock: trio.abc.Clock) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        kept = await r.add("cron", "30 8 * * 1-5", "standup")
        dropped = await r.add("at", "in 1h", "tea")
        assert await r.ref.ask(lambda reply: CancelReminder(dropped.reminder_id, reply)) is True
        listed = await r.ref.ask(ListReminders)
        assert [i.reminder_id for i in listed] == [kept.reminder_id]
        assert listed[0].next_fire == "2026-03-30 08:30 CEST"
        mirror = json.loads((tmp_path / "reminders.json").read_text())
        assert [m["text"] for m in mirror] == ["standup"]


async def test_a_foreign_scheduler_db_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER)")
    conn.close()
    with pytest.raises(StoreError, match="not a usable Ganglion scheduler database"):
        await ReminderStore.open(path)


async def test_a_wall_clock_jump_is_noticed_within_a_minute(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall, max_sleep=60) as r:
        await r.add("at", "in 1d")
        await r.elapse(5)
        wall.offset += 86400  # the machine slept for a day (suspend/resume)
        await r.elapse(61)
        await r.delivered_count(1)
        assert len(r.delivered) == 1


async def test_a_kill_after_the_hand_over_resends_the_same_slot(
    tmp_path: Path, clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = WallClock(START)
    original = ReminderStore.complete

    async def killed(self: ReminderStore, *slots: Any) -> None:
        raise RuntimeError("killed before the slot was marked done")

    monkeypatch.setattr(ReminderStore, "complete", killed)
    async with rig(tmp_path, wall) as r:
        await r.add("at", "in 1m")
        await r.elapse(120)
        await r.delivered_count(1)
        first = list(r.delivered)
    monkeypatch.setattr(ReminderStore, "complete", original)
    async with rig(tmp_path, wall) as r:
        await r.delivered_count(1)
        # handed over again under the same slot: the thread's turn id makes it a no-op there
        assert [d.slot for d in r.delivered] == [d.slot for d in first] == ["2026-03-27T12:01:00Z"]
        await r.elapse(3600)
        assert len(r.delivered) == 1


async def test_a_burst_due_together_is_claimed_and_finished_in_two_writes(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        for i in range(20):
            await r.add("at", "2026-03-27 13:30", f"burst {i}")
        writes_before = r.store.statistics().writes
        await r.elapse(3600)
        await r.delivered_count(20)
        for due in r.delivered:
            await r.ledger_settles(due.reminder_id, ["done"])
        assert sorted(d.text for d in r.delivered) == sorted(f"burst {i}" for i in range(20))
        # one claim transaction and one completion transaction for the whole burst
        assert r.store.statistics().writes - writes_before == 2


async def test_autonomous_turns_share_a_small_budget_of_pending_one_shots(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    async with rig(tmp_path, WallClock(START)) as r:
        for i in range(5):
            await r.add("at", f"in {i + 5}m", source="reminder" if i % 2 else "heartbeat")
        with pytest.raises(ScheduleError, match="already have 5 reminders pending"):
            await r.add("at", "in 1h", source="heartbeat")
        await r.add("every", "1h", source="user")  # a person is not limited


@pytest.mark.parametrize(
    "refusal",
    [ActorDied("thread"), ActorStopped("thread"), None],
    ids=["thread died", "thread stopped", "thread never confirms"],
)
async def test_a_slot_is_done_only_once_its_thread_confirms_it(
    tmp_path: Path, clock: trio.abc.Clock, refusal: BaseException | None
) -> None:
    async with rig(tmp_path, WallClock(START), unconfirmed=[refusal]) as r:
        info = await r.add("at", "in 1m")
        await r.elapse(60 + 1 + (HANDOVER_TIMEOUT if refusal is None else 0))
        assert r.delivered == []
        assert [s for _, s in await r.store.ledger(info.reminder_id)] == ["claimed"]
        await r.elapse(RETRY_DELAY)
        await r.delivered_count(1)
        await r.ledger_settles(info.reminder_id, ["done"])
        await r.elapse(3600)
        assert [d.slot for d in r.delivered] == ["2026-03-27T12:01:00Z"]


async def test_only_the_unconfirmed_slots_of_a_burst_are_retried(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    async with rig(tmp_path, WallClock(START), unconfirmed=[ActorDied("thread")]) as r:
        for i in range(5):
            await r.add("at", "2026-03-27 13:30", f"burst {i}")
        await r.elapse(31 * 60)
        await r.delivered_count(4)
        await r.elapse(RETRY_DELAY)
        await r.delivered_count(5)
        await r.elapse(3600)
        assert sorted(d.text for d in r.delivered) == [f"burst {i}" for i in range(5)]


async def test_a_reminder_of_a_deleted_conversation_is_cancelled_never_fired(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    # Issue 26 row 3: the conversation is gone (its thread refuses the turn).
    async with rig(tmp_path, WallClock(START), unconfirmed=[ThreadDeleted(THREAD)]) as r:
        info = await r.add("every", "1h")
        await r.elapse(3600 + 1)
        await r.ledger_settles(info.reminder_id, ["missed"])
        assert await r.store.active() == []
        await r.elapse(5 * 3600)  # no retry, no next slot
        assert r.delivered == []
        assert [s for _, s in await r.store.ledger(info.reminder_id)] == ["missed"]


def _turn_id(thread: str, due: ReminderDue) -> str:
    return f"{thread}/reminder/{due.reminder_id}/{due.slot}"


async def test_a_slot_done_without_its_turn_is_told_and_sent_again_within_the_grace(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    async with rig(tmp_path, wall) as r:
        await r.add("at", "in 1m", "water the plants")
        await r.elapse(120)
        await r.delivered_count(1)
        (due,) = r.delivered
        await r.ledger_settles(due.reminder_id, ["done"])
    # the conversation database lost the turn (restored from an older backup)
    async with rig(tmp_path, wall, turns=set()) as r:
        await r.delivered_count(1)
        assert [(d.reminder_id, d.slot) for d in r.delivered] == [(due.reminder_id, due.slot)]
        ((thread, text),) = r.notices
        assert thread == THREAD and "never recorded" in text and "water the plants" in text
    # found once: with the turn back in place, the next start is quiet
    async with rig(tmp_path, wall, turns={_turn_id(THREAD, due)}) as r:
        await r.elapse(60)
        assert r.delivered == [] and r.notices == []


async def test_a_slot_done_without_its_turn_beyond_the_grace_is_reported_missed(
    tmp_path: Path, clock: trio.abc.Clock
) -> None:
    wall = WallClock(START)
    config = RemindersConfig(misfire_grace=600, min_interval=60, confirm_recurring=False)
    async with rig(tmp_path, wall, config=config) as r:
        info = await r.add("at", "in 1m", "call mum")
        await r.elapse(120)
        await r.ledger_settles(info.reminder_id, ["done"])
    wall.offset += 3600
    async with rig(tmp_path, wall, config=config, turns=set()) as r:
        await r.until(lambda: bool(r.notices))
        ((thread, text),) = r.notices
        assert thread == THREAD and "Missed reminder" in text and "never recorded" in text
        await r.ledger_settles(info.reminder_id, ["missed"])
        assert r.delivered == []
    async with rig(tmp_path, wall, config=config, turns=set()) as r:
        await r.elapse(60)
        assert r.notices == []  # told once
