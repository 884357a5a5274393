"""The event loop's step timer: what `ganglion status`, `/metrics` and the benchmark read."""

from __future__ import annotations

import time

import trio

from ganglion.ops.loop import STEP_BUCKETS_MS, percentile_ms, timing_steps


def test_the_percentile_is_the_upper_bound_of_its_bucket() -> None:
    counts = [0] * len(STEP_BUCKETS_MS)
    assert percentile_ms(counts, 0.99) is None
    counts[0] = 98  # <= 0.05 ms
    counts[STEP_BUCKETS_MS.index(20)] = 2
    assert percentile_ms(counts, 0.5) == 0.05
    assert percentile_ms(counts, 0.99) == 20
    counts[-1] = 100  # beyond the last finite bound
    assert percentile_ms(counts, 0.99) == STEP_BUCKETS_MS[-2]


async def test_a_step_that_blocks_the_loop_is_caught() -> None:
    with timing_steps() as steps:
        await trio.lowlevel.checkpoint()  # the step that added it is not timed
        assert steps.max_ms == 0
        time.sleep(0.03)  # noqa: ASYNC251 - the blocking call under test
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
    await trio.lowlevel.checkpoint()
    counted = steps.steps  # removed at the end of the block: nothing more is counted
    await trio.lowlevel.checkpoint()
    assert steps.steps == counted
    assert steps.max_ms >= 30
    assert sum(steps.counts[STEP_BUCKETS_MS.index(30) :]) >= 1
    snapshot = steps.snapshot()
    assert snapshot["steps"] == sum(steps.counts) >= 2
    assert steps.max_ms < 10_000  # a real step, not the time since the clock's epoch
    assert snapshot["p99_ms"] is not None
