"""Supervision rules, all on trio's autojump clock."""

from __future__ import annotations

import logging
import random

import pytest
import trio
import trio.testing

from ganglion_actors import (
    Backoff,
    ChildSpec,
    Escalation,
    Inbox,
    Restart,
    open_supervisor,
)

STEADY = Backoff(initial=1.0, factor=1.0, maximum=1.0, jitter=0.0)


class Script:
    """An actor body that records its incarnations and ends each one as told:
    "crash" (after started), "fail-start" (before started), "late-crash" (after 100 s),
    "return", or "serve" (until its inbox ends; also once the script runs out)."""

    def __init__(self, *endings: str) -> None:
        self.endings = list(endings)
        self.starts: list[float] = []
        self._changed = trio.Event()

    async def __call__(self, inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        self.starts.append(trio.current_time())
        self._changed.set()
        self._changed = trio.Event()
        ending = self.endings.pop(0) if self.endings else "serve"
        if ending == "fail-start":
            raise OSError("cannot start")
        task_status.started()
        if ending == "late-crash":
            await trio.sleep(100)
        if ending in ("crash", "late-crash"):
            raise RuntimeError("crash")
        if ending == "serve":
            async for _ in inbox:
                pass

    async def wait_for_starts(self, count: int) -> None:
        with trio.fail_after(600):
            while len(self.starts) < count:
                await self._changed.wait()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def lingering(name: str, record: list[tuple[str, float]]) -> ChildSpec[object]:
    """A child that serves forever and takes a second to clean up when cancelled."""

    async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            record.append((name, trio.current_time()))

    return ChildSpec(name, run)


async def test_permanent_child_is_restarted_after_a_crash(autojump_clock: trio.abc.Clock) -> None:
    script = Script("crash", "serve")
    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("p", script, restart=Restart.PERMANENT))
        await script.wait_for_starts(2)
        assert sup.statistics().restarts == 1


async def test_permanent_child_is_restarted_after_a_normal_return(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("return", "serve")
    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("p", script, restart=Restart.PERMANENT))
        await script.wait_for_starts(2)
        assert sup.statistics().restarts == 1


async def test_transient_child_is_restarted_after_a_crash_but_not_a_return(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "return")
    async with open_supervisor("s") as sup:
        ref = await sup.start(ChildSpec("t", script, restart=Restart.TRANSIENT))
        await trio.sleep(60)
        assert len(script.starts) == 2
        assert not ref.statistics().running


async def test_temporary_child_is_never_restarted(autojump_clock: trio.abc.Clock) -> None:
    script = Script("crash")
    async with open_supervisor("s") as sup:
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
        await script.wait_for_starts(5)
    for attempt, gap in enumerate(script.gaps()):
        expected = 1.0 * 2**attempt
        assert expected * 0.8 <= gap <= expected * 1.2, (attempt, gap)


def test_backoff_delay_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.5, factor=3.0, maximum=10.0, jitter=0.1)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(10)]
    assert 0.45 <= delays[0] <= 0.55
    assert all(9.0 <= d <= 11.0 for d in delays[5:])
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not all the same


async def test_backoff_starts_over_after_an_incarnation_ran_longer_than_the_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "crash", "late-crash", "serve")
    backoff = Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)
    async with open_supervisor("s", intensity=10, period=10, backoff=backoff) as sup:
        await sup.start(ChildSpec("b", script))
        await script.wait_for_starts(4)
    assert script.gaps() == [1.0, 2.0, 100.0 + 1.0]


async def test_a_crash_storm_escalates_out_of_the_supervisor(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(*["crash"] * 10)
    with pytest.raises(Escalation) as caught:
        async with open_supervisor("root", intensity=3, period=5, backoff=STEADY) as sup:
            await sup.start(ChildSpec("storm", script))
            await trio.sleep_forever()
    assert caught.value.child == "storm"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert len(script.starts) == 4  # the first start plus `intensity` restarts


async def test_as_many_crashes_spread_over_more_than_the_period_do_not_escalate(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(*["crash"] * 6)
    backoff = Backoff(initial=10.0, factor=1.0, maximum=10.0, jitter=0.0)
    async with open_supervisor("root", intensity=3, period=5, backoff=backoff) as sup:
        await sup.start(ChildSpec("slow-storm", script))
        await script.wait_for_starts(7)
        assert sup.statistics().restarts == 6


async def test_escalation_cancels_the_other_children_in_reverse_start_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    stopped: list[tuple[str, float]] = []
    storm = Script(*["crash"] * 10)
    with pytest.raises(Escalation):
        async with open_supervisor("root", intensity=1, period=60, backoff=STEADY) as sup:
            await sup.start(lingering("a", stopped))
            await sup.start(lingering("b", stopped))
            await sup.start(ChildSpec("storm", storm))
            await sup.start(lingering("c", stopped))
            await trio.sleep_forever()
    assert [name for name, _ in stopped] == ["c", "b", "a"]
    assert stopped[1][1] - stopped[0][1] == pytest.approx(1)  # one after the other


async def test_a_crash_is_logged_with_the_actor_name(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script("crash", "serve")
    async with open_supervisor("s") as sup:
        await sup.start(ChildSpec("clumsy", script))
        await script.wait_for_starts(2)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "clumsy" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_a_message_sent_while_restarting_reaches_the_next_incarnation(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: list[object] = []
    crashed = trio.Event()
    got_one = trio.Event()

    async def crash_then_collect(
        inbox: Inbox[object], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError("first incarnation dies")
        async for message in inbox:
            received.append(message)
            got_one.set()

    backoff = Backoff(initial=5.0, factor=1.0, maximum=5.0, jitter=0.0)
    async with open_supervisor("s", backoff=backoff) as sup:
        ref = await sup.start(ChildSpec("phoenix", crash_then_collect))
        await crashed.wait()
        await trio.sleep(1)  # inside the backoff: no incarnation is running
        assert not ref.statistics().running
        await ref.send("hello")
        with trio.fail_after(10):
            await got_one.wait()
        assert received == ["hello"]


async def test_references_stay_valid_across_restarts(autojump_clock: trio.abc.Clock) -> None:
    script = Script("crash", "crash", "serve")
    async with open_supervisor("s", backoff=STEADY) as sup:
        ref = await sup.start(ChildSpec("phoenix", script))
        await script.wait_for_starts(3)
        await ref.send("still reachable")
        await trio.testing.wait_all_tasks_blocked()
        stats = ref.statistics()
        assert (stats.running, stats.restarts, stats.received) == (True, 2, 1)


async def test_a_child_failing_before_started_fails_start(autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor("s") as sup:
        with pytest.raises(OSError, match="cannot start"):
            await sup.start(ChildSpec("broken", Script("fail-start")))
        assert sup.statistics().children == ()


async def test_a_restarted_child_failing_before_started_counts_as_a_crash(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script("crash", "fail-start", "serve")
    async with open_supervisor("s", backoff=STEADY) as sup:
        await sup.start(ChildSpec("flaky", script))
        await script.wait_for_starts(3)
        assert sup.statistics().restarts == 2


async def test_shutdown_stops_children_in_reverse_order_after_draining(
    autojump_clock: trio.abc.Clock,
) -> None:
    order: list[str] = []
    drained: list[str] = []

    def child(name: str) -> ChildSpec[object]:
        async def run(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            async for message in inbox:
                await trio.sleep(1)  # in-flight work finishes within the grace period
                drained.append(str(message))
            order.append(name)

        return ChildSpec(name, run)

    async with open_supervisor("s") as sup:
        refs = [await sup.start(child(n)) for n in ("a", "b", "c")]
        for ref in refs:
            ref.send_nowait(f"work for {ref.name}")
        await sup.shutdown(grace=10)
        assert order == ["c", "b", "a"]
        assert sorted(drained) == ["work for a", "work for b", "work for c"]

    order.clear()
    async with open_supervisor("s") as sup:
        for name in ("a", "b", "c"):
            await sup.start(child(name))
        await sup.shutdown(grace=10, first=["a"])  # the workers before those who carry
        assert order == ["a", "c", "b"]


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
        assert trio.current_time() - started == pytest.approx(3)
        assert cancelled.is_set()


async def test_no_restart_happens_once_shutdown_began(autojump_clock: trio.abc.Clock) -> None:
    crasher = Script("crash")
    ended = trio.Event()

    async def slow_to_stop(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for _ in inbox:
            pass
        await trio.sleep(20)  # still draining when the crasher's backoff ends
        ended.set()

    backoff = Backoff(initial=10.0, factor=1.0, maximum=10.0, jitter=0.0)
    async with open_supervisor("s", backoff=backoff) as sup:
        await sup.start(ChildSpec("crasher", crasher))
        await sup.start(ChildSpec("slow", slow_to_stop))
        await sup.shutdown(grace=60)
        assert ended.is_set()
        assert len(crasher.starts) == 1
        assert sup.statistics().restarts == 0


async def test_leaving_the_block_cancels_children_in_reverse_start_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    stopped: list[tuple[str, float]] = []
    async with open_supervisor("s") as sup:
        for name in ("a", "b", "c"):
            await sup.start(lingering(name, stopped))
        left = trio.current_time()
    assert [name for name, _ in stopped] == ["c", "b", "a"]
    assert [t - left for _, t in stopped] == [1.0, 2.0, 3.0]  # one after the other


async def test_an_exception_from_the_block_propagates_unwrapped(
    autojump_clock: trio.abc.Clock,
) -> None:
    with pytest.raises(KeyError):
        async with open_supervisor("s") as sup:
            await sup.start(ChildSpec("bystander", Script()))
            raise KeyError("body failed")


async def test_supervisor_statistics(autojump_clock: trio.abc.Clock) -> None:
    flaky = Script("crash", "serve")
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec("one", Script("return"), restart=Restart.TEMPORARY))
        await sup.start(ChildSpec("two", flaky))
        await flaky.wait_for_starts(2)
        stats = sup.statistics()
    assert (stats.name, stats.children, stats.running, stats.restarts) == (
        "root",
        ("one", "two"),
        1,
        1,
    )


async def test_a_child_that_does_not_escalate_is_restarted_for_as_long_as_it_fails(
    autojump_clock: trio.abc.Clock,
) -> None:
    flaky = Script(*["crash"] * 50)
    sibling = Script()
    async with open_supervisor("s", intensity=2, period=60.0, backoff=STEADY) as sup:
        await sup.start(ChildSpec("sibling", sibling))
        await sup.start(ChildSpec("flaky", flaky, restart=Restart.TRANSIENT, escalates=False))
        await flaky.wait_for_starts(51)  # far past the intensity: no escalation
        assert len(sibling.starts) == 1  # and the sibling never noticed
        assert sup.statistics().running == 2
        await sup.shutdown(1)


async def test_a_child_backoff_of_its_own_resets_after_a_healthy_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    own = Backoff(initial=1.0, factor=2.0, maximum=100.0, jitter=0.0, reset_after=50.0)
    script = Script("crash", "crash", "crash", "late-crash", "crash", "serve")
    async with open_supervisor("s", intensity=100, period=1000.0) as sup:
        await sup.start(ChildSpec("c", script, backoff=own, escalates=False))
        await script.wait_for_starts(6)
        await sup.shutdown(1)
    # 1, 2, 4 s; then a run of 100 s (healthy) and a fresh streak: 1 s after it, then 2 s
    assert script.gaps() == pytest.approx([1, 2, 4, 101, 2])


async def test_an_expected_crash_is_one_log_line(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script("crash", "serve")
    async with open_supervisor("s", backoff=STEADY) as sup:
        await sup.start(ChildSpec("c", script, expected=(RuntimeError,)))
        await script.wait_for_starts(2)
        await sup.shutdown(1)
    assert "actor c failed: crash" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_reserved_reference_queues_until_its_actor_starts(
    autojump_clock: trio.abc.Clock,
) -> None:
    from ganglion_actors import reserve

    seen: list[object] = []

    async def echo(inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for message in inbox:
            seen.append(message)

    ref = reserve("late")
    await ref.send("sent before the start")
    async with open_supervisor("s") as sup:
        started = await sup.start(ChildSpec("late", echo, ref=ref))
        assert started is ref
        await ref.send("after")
        with trio.fail_after(5):
            while len(seen) < 2:
                await trio.sleep(0.01)
        await sup.shutdown(1)
    assert seen == ["sent before the start", "after"]
