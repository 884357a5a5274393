from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio.testing

from tests.support.fakellm import FakeLLM, open_fake_llm
from tests.support.parts import require_bwrap, require_root


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


@pytest.fixture
def bwrap() -> None:
    """Bubblewrap that `check_sandbox()` accepts: a skip outside CI when it is missing, a
    failure under CI, and always a failure when it is there but refused."""
    require_bwrap()


@pytest.fixture
def root() -> None:
    """Root: a skip outside CI, a failure under CI."""
    require_root("it shows what holds for a daemon run as root")
