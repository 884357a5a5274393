"""The one restart loop: the supervisor's children and the registry's follow one rule."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from ganglion_actors import Backoff, ChildSpec, Inbox, Registry, open_supervisor

# A healthy run resets the streak after 10 s, far less than the intensity period.
BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=100.0, jitter=0.0, reset_after=10.0)
PERIOD = 1000.0


class Crashes:
    """An actor body whose incarnations crash after the given runs (seconds), then serve."""

    def __init__(self, *runs: float) -> None:
        self.runs = list(runs)
        self.starts: list[float] = []

    async def __call__(self, inbox: Inbox[object], *, task_status: trio.TaskStatus[None]) -> None:
        self.starts.append(trio.current_time())
        task_status.started()
        if not self.runs:
            async for _ in inbox:
                pass
            return
        await trio.sleep(self.runs.pop(0))
        raise RuntimeError("crash")

    async def wait_for_starts(self, count: int) -> None:
        with trio.fail_after(600):
            while len(self.starts) < count:
                await trio.sleep(0.5)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


@asynccontextmanager
async def supervised(body: Crashes) -> AsyncIterator[None]:
    async with open_supervisor("s", intensity=100, period=PERIOD) as sup:
        await sup.start(ChildSpec("c", body, backoff=BACKOFF, escalates=False))
        yield
        await sup.shutdown(1)


@asynccontextmanager
async def registered(body: Crashes) -> AsyncIterator[None]:
    registry: Registry[str, object] = Registry(
        "r", lambda key: body, idle_timeout=10_000.0, intensity=100, period=PERIOD, backoff=BACKOFF
    )
    async with open_supervisor("root") as sup:
        await sup.start(ChildSpec(registry.name, registry.serve))
        await registry.send("k", "wake")
        yield
        await sup.shutdown(1)


@pytest.mark.parametrize("host", [supervised, registered], ids=["supervisor", "registry"])
async def test_a_run_of_reset_after_seconds_starts_a_fresh_streak(
    autojump_clock: trio.abc.Clock, host: Callable[[Crashes], AbstractAsyncContextManager[None]]
) -> None:
    body = Crashes(0, 0, 20, 0)
    async with host(body):
        await body.wait_for_starts(5)
    # 1 s, 2 s; then a run of 20 s (healthy: over `reset_after`, under the period) and a
    # fresh streak: 1 s after it, then 2 s.
    assert body.gaps() == pytest.approx([1, 2, 21, 2])
