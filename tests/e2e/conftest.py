"""Matrix end to end: one real Synapse for the whole session, real nio clients per test.

Run with `uv run nox -s e2e` (it installs Synapse in its own virtualenv and names its
python in `GANGLION_SYNAPSE_PYTHON`). Nothing here skips: no Synapse is a failure.

pytest-trio gives each test a trio run of its own, so the session's server is a plain
subprocess started and stopped by synchronous fixture code (`trio.run` around the
server's async methods; see tests/support/synapse.py). The people (`owner`,
`stranger`) are async fixtures: fresh accounts and clients in each test's own run.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio

from tests.support.matrix_human import MatrixHuman, open_human
from tests.support.synapse import Synapse, prepare_synapse, synapse_python

PASSWORD = "correct horse battery staple"


class Timings:
    """Durations measured during the session, printed (never asserted) at its end."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def record(self, what: str, seconds: float) -> None:
        self.samples.setdefault(what, []).append(seconds)

    @contextmanager
    def measure(self, what: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.record(what, time.perf_counter() - started)

    def lines(self) -> list[str]:
        lines = []
        for what, samples in self.samples.items():
            ms = sorted(s * 1000 for s in samples)
            if len(ms) == 1:
                lines.append(f"{what}: {ms[0]:.0f} ms")
            else:
                lines.append(
                    f"{what}: first {samples[0] * 1000:.0f} ms, median "
                    f"{statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms over {len(ms)}"
                )
        return lines


TIMINGS = pytest.StashKey[Timings]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TIMINGS] = Timings()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash[TIMINGS].lines()
    if lines:
        terminalreporter.section("Synapse and Matrix timings (measured, not asserted)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> Timings:
    return pytestconfig.stash[TIMINGS]


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory, timings: Timings) -> Iterator[Synapse]:
    """The session's homeserver; a test may restart it, and must leave it running."""
    with timings.measure("Synapse configuration generated"):
        server = trio.run(prepare_synapse, synapse_python(), tmp_path_factory.mktemp("synapse"))
    with timings.measure("Synapse start (new database)"):
        trio.run(server.start)
    try:
        yield server
    finally:
        with timings.measure("Synapse stop (SIGTERM)"):
            trio.run(server.stop)


@asynccontextmanager
async def open_person(
    synapse: Synapse, role: str, device_id: str, store_dir: Path
) -> AsyncIterator[MatrixHuman]:
    """A new account named after `role`, logged in on `device_id`."""
    account = await synapse.register(f"{role}-{secrets.token_hex(4)}", PASSWORD)
    async with open_human(
        synapse.base_url, account.user_id, PASSWORD, device_id=device_id, store_dir=store_dir
    ) as human:
        yield human


@pytest.fixture
async def owner(synapse: Synapse, tmp_path: Path) -> AsyncIterator[MatrixHuman]:
    async with open_person(synapse, "owner", "OWNERPHONE", tmp_path / "owner") as human:
        yield human


@pytest.fixture
async def stranger(synapse: Synapse, tmp_path: Path) -> AsyncIterator[MatrixHuman]:
    async with open_person(synapse, "stranger", "STRANGERPC", tmp_path / "stranger") as human:
        yield human
