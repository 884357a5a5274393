"""How long the event loop's steps take: the daemon's promise that it never blocks.

`LoopSteps` is a trio instrument the daemon installs for its whole run. Each task step
(one resumption of a task, up to its next checkpoint) is timed and counted in a
histogram of `STEP_BUCKETS_MS`; the longest step is kept too. A step that takes long
delays every conversation at once, so this is what `ganglion status` shows, `/metrics`
exports, and the benchmark reads (the difference of two readings gives one run's share).

It costs two clock reads and a bisection per step, about a millisecond of CPU per turn
(15% of one, measured): the daemon installs it only with `logging.event_loop_stats`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

import trio

__all__ = ["STEP_BUCKETS_MS", "LoopSteps", "percentile_ms", "timing_steps"]

# Upper bounds of the histogram's buckets, in milliseconds (the last one is open-ended).
STEP_BUCKETS_MS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    250,
    500,
    1000,
    float("inf"),
)


class LoopSteps(trio.abc.Instrument):
    """Counts and times every task step of the run it is added to."""

    def __init__(self) -> None:
        self.counts = [0] * len(STEP_BUCKETS_MS)
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.max_task = ""  # the name of the task that took the longest step
        self._started: float | None = None  # None: added in the middle of a step

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:
            return
        took = (perf_counter() - self._started) * 1000
        self.counts[bisect_left(STEP_BUCKETS_MS, took)] += 1
        self.total_ms += took
        if took > self.max_ms:
            self.max_ms = took
            self.max_task = task.name

    @property
    def steps(self) -> int:
        return sum(self.counts)

    def snapshot(self) -> dict[str, object]:
        """Plain JSON: the status endpoint's `loop` section."""
        return {
            "steps": self.steps,
            "total_ms": round(self.total_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "max_task": self.max_task,
            "p99_ms": percentile_ms(self.counts, 0.99),
            "buckets_ms": [bound if bound != float("inf") else None for bound in STEP_BUCKETS_MS],
            "counts": list(self.counts),
        }


@contextmanager
def timing_steps() -> Iterator[LoopSteps]:
    """A `LoopSteps` timing the current run's steps for the duration of the block."""
    steps = LoopSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)


def percentile_ms(counts: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the `q` quantile of `counts` (None when
    nothing was counted; the last finite bound when it falls in the open bucket)."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip(STEP_BUCKETS_MS, counts, strict=True):
        seen += count
        if seen >= rank:
            return bound if bound != float("inf") else STEP_BUCKETS_MS[-2]
    return STEP_BUCKETS_MS[-2]
