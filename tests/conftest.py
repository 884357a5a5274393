from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio.testing

from tests.support.fakellm import FakeLLM, open_fake_llm


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with open_fake_llm() as fake:
        yield fake


@pytest.fixture
def idle_clock() -> trio.testing.MockClock:
    """A mock clock for tests that wait on real I/O (loopback sockets, worker threads)
    *and* on long timers: it jumps ahead only after the run has been idle for a moment of
    real time, so I/O in flight is never mistaken for idleness, while backoffs, intervals
    and time-outs take no time."""
    return trio.testing.MockClock(autojump_threshold=0.2)
