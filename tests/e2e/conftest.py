"""Matrix end to end: one real Synapse for the whole session, real nio clients per test.

Run with `uv run nox -s e2e` (it installs Synapse in its own virtualenv and names its
python in `GANGLION_SYNAPSE_PYTHON`). Nothing here skips: no Synapse is a failure.

pytest-trio gives each test a trio run of its own, so the session's server is a plain
subprocess started and stopped by synchronous fixture code (`trio.run` around the
server's async methods; see tests/support/synapse.py). The people (`owner`,
`stranger` on matrix-nio, `element_owner` on Element's own matrix-js-sdk in Node) are
async fixtures: fresh accounts and clients in each test's own run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from tests.e2e.people import PASSWORD, Timings, open_person
from tests.support.element import ElementOwner, open_element
from tests.support.matrix_human import MatrixHuman
from tests.support.synapse import Synapse, prepare_synapse, synapse_python

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
def synapse_server(tmp_path_factory: pytest.TempPathFactory, timings: Timings) -> Iterator[Synapse]:
    """The session's homeserver, started once (tests ask for `synapse`)."""
    with timings.measure("Synapse configuration generated"):
        server = trio.run(prepare_synapse, synapse_python(), tmp_path_factory.mktemp("synapse"))
    with timings.measure("Synapse start (new database)"):
        trio.run(server.start)
    try:
        yield server
    finally:
        with timings.measure("Synapse stop (SIGTERM)"):
            trio.run(server.stop)


@pytest.fixture
def synapse(synapse_server: Synapse) -> Iterator[Synapse]:
    """The session's homeserver for one test, which may stop, restart or crash it: a
    test that leaves it down has it started again for the next one."""
    yield synapse_server
    if not synapse_server.running:
        trio.run(synapse_server.start)


@pytest.fixture
async def owner(synapse: Synapse, tmp_path: Path) -> AsyncIterator[MatrixHuman]:
    async with open_person(synapse, "owner", "OWNERPHONE", tmp_path / "owner") as human:
        yield human


@pytest.fixture
async def friend(synapse: Synapse, tmp_path: Path) -> AsyncIterator[MatrixHuman]:
    """Another person the tests' bots may allow beside the owner (a group room)."""
    async with open_person(synapse, "friend", "FRIENDPHONE", tmp_path / "friend") as human:
        yield human


@pytest.fixture
async def stranger(synapse: Synapse, tmp_path: Path) -> AsyncIterator[MatrixHuman]:
    async with open_person(synapse, "stranger", "STRANGERPC", tmp_path / "stranger") as human:
        yield human


@pytest.fixture
async def element_owner(
    synapse: Synapse, tmp_path: Path, timings: Timings
) -> AsyncIterator[ElementOwner]:
    """A new account on Element's own client stack (matrix-js-sdk with its Rust crypto,
    in Node; tests/support/element.py), its cross-signing set up as Element sets up a new
    account's: its device is signed by its owner."""
    account = await synapse.register(f"owner-{secrets.token_hex(4)}", PASSWORD)
    started = time.perf_counter()
    async with open_element(
        synapse.base_url,
        account.user_id,
        PASSWORD,
        device_id="ELEMENTWEB",
        log_path=tmp_path / "element-owner.log",
    ) as owner:
        timings.record(
            "Element owner ready (Node, login, first sync)", time.perf_counter() - started
        )
        with timings.measure("Element owner cross-signing bootstrap"):
            await owner.bootstrap_cross_signing()
        yield owner
