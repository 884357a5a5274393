"""Supervision rules, all on trio's autojump clock."""

from __future__ import annotations

import random

import pytest
import trio

from ganglion_actors import Backoff, ChildSpec, Escalation, Inbox, Restart, open_supervisor


class Script:
    """An actor body that records its incarnations and ends as told."""

    def __init__(self, *endings: str) -> None:
        self.endings = list(endings)  # per incarnation: "crash", "return", "serve"
        self.starts: list[float] = []

    async def __call__(self, inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        self.starts.append(trio.current_time())
        ending = self.endings.pop(0) if self.endings else "serve"
        task_status.started()
        if ending == "crash":
            raise RuntimeError("crash")
        if ending == "serve":
            async for _ in inbox:
                pass


async def wait_for_starts(script: Script, count: int) -> None:
    with trio.fail_after(600):
        while len(script.starts) < count:
            await trio.sleep(0.01)


async def test_permanent_child_is_restarted_after_a_crash_and_a_normal_return(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "return", "serve")
    async with open_supervisor("s", intensity=10) as sup:
        await sup.start(ChildSpec("p", script, restart=Restart.PERMANENT))
        await wait_for_starts(script, 3)
        assert sup.statistics().restarts == 2


async def test_transient_child_is_restarted_after_a_crash_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "return")
    async with open_supervisor("s", intensity=10) as sup:
        ref = await sup.start(ChildSpec("t", script, restart=Restart.TRANSIENT))
        await trio.sleep(60)
        assert len(script.starts) == 2
        assert not ref.statistics().running


async def test_temporary_child_is_never_restarted(autojump_clock: trio.abc.Clock) -> None:
    script = Script("crash")
    async with open_supervisor("s", intensity=10) as sup:
        await sup.start(ChildSpec("tmp", script, restart=Restart.TEMPORARY))
        await trio.sleep(60)
        assert len(script.starts) == 1
        assert sup.statistics().restarts == 0


async def test_backoff_grows_exponentially_within_the_jitter_bounds(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "crash", "crash", "crash", "serve")
    backoff = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.2)
    async with open_supervisor("s", intensity=10, period=100, backoff=backoff) as sup:
        await sup.start(ChildSpec("b", script))
        await wait_for_starts(script, 5)
    gaps = [b - a for a, b in zip(script.starts, script.starts[1:], strict=False)]
    for attempt, gap in enumerate(gaps):
        expected = 1.0 * 2**attempt
        assert expected * 0.8 <= gap <= expected * 1.2, (attempt, gap)


def test_backoff_delay_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.5, factor=3.0, maximum=10.0, jitter=0.1)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(10)]
    assert all(d <= 11.0 for d in delays)
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jitter: not all the same


async def test_a_crash_storm_escalates_out_of_the_supervisor(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(*["crash"] * 10)
    backoff = Backoff(initial=0.1, factor=1.0, maximum=0.1, jitter=0.0)
    with pytest.raises(Escalation) as caught:
        async with open_supervisor("root", intensity=3, period=5, backoff=backoff) as sup:
            await sup.start(ChildSpec("storm", script))
            await trio.sleep_forever()
    assert caught.value.child == "storm"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert len(script.starts) == 4  # the first start plus `intensity` restarts


async def test_crashes_spread_over_more_than_the_period_do_not_escalate(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(*["crash"] * 6)
    backoff = Backoff(initial=10.0, factor=1.0, maximum=10.0, jitter=0.0)
    async with open_supervisor("root", intensity=3, period=5, backoff=backoff) as sup:
        await sup.start(ChildSpec("slow-storm", script))
        await wait_for_starts(script, 7)
        assert sup.statistics().restarts == 6


async def test_a_message_sent_while_restarting_reaches_the_next_incarnation(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: list[object] = []
    crashed = trio.Event()

    async def crash_then_collect(
        inbox: Inbox[object], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError("first incarnation dies")
        async for message in inbox:
            received.append(message)

    backoff = Backoff(initial=5.0, factor=1.0, maximum=5.0, jitter=0.0)
    async with open_supervisor("s", backoff=backoff) as sup:
        ref = await sup.start(ChildSpec("phoenix", crash_then_collect))
        await crashed.wait()
        await trio.sleep(1)  # inside the backoff: no incarnation is running
        assert not ref.statistics().running
        await ref.send("hello")
        with trio.fail_after(10):
            while not received:
                await trio.sleep(0.1)
        assert received == ["hello"]
        assert ref.statistics().restarts == 1


async def test_a_child_failing_before_started_fails_start(autojump_clock: trio.abc.Clock) -> None:
    async def broken(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        raise OSError("cannot bind")

    async with open_supervisor("s") as sup:
        with pytest.raises(OSError, match="cannot bind"):
            await sup.start(ChildSpec("broken", broken))
        assert sup.statistics().children == ()


async def test_shutdown_stops_children_in_reverse_order_after_draining(
    autojump_clock: trio.abc.Clock,
) -> None:
    order: list[str] = []
    drained: list[object] = []

    def child(name: str) -> ChildSpec[object]:
        async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            async for message in inbox:
                await trio.sleep(1)  # in-flight work finishes within the grace period
                drained.append(message)
            order.append(name)

        return ChildSpec(name, run)

    async with open_supervisor("s") as sup:
        refs = [await sup.start(child(n)) for n in ("a", "b", "c")]
        for ref in refs:
            ref.send_nowait(f"work for {ref.name}")
        await sup.shutdown(grace=10)
    assert order == ["c", "b", "a"]
    assert sorted(drained) == ["work for a", "work for b", "work for c"]  # type: ignore[type-var]


async def test_shutdown_cancels_what_outlives_the_grace_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    cancelled = trio.Event()

    async def stubborn(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("stubborn", stubborn))
        started = trio.current_time()
        await sup.shutdown(grace=3)
        assert trio.current_time() - started == pytest.approx(3, abs=0.1)
    assert cancelled.is_set()


async def test_supervisor_statistics(autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec("one", Script()))
        await sup.start(ChildSpec("two", Script()))
        stats = sup.statistics()
    assert (stats.name, stats.children, stats.running, stats.restarts) == (
        "root",
        ("one", "two"),
        2,
        0,
    )
