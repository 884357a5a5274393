"""The process supervisor's view: sd_notify as `ganglion run` sends it, and the exit
codes a unit file relies on (0 clean stop, 2 unusable configuration, 1 crash)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from ganglion.ops.notify import Notifier
from tests.support.process import run_ganglion

START_TIMEOUT = 30


def test_no_notify_socket_means_no_notifier() -> None:
    notifier = Notifier.from_environ({})
    assert (notifier.address, notifier.watchdog_seconds) == (None, None)


def test_an_abstract_socket_and_the_watchdog_period_are_read() -> None:
    notifier = Notifier.from_environ(
        {"NOTIFY_SOCKET": "@ganglion/notify", "WATCHDOG_USEC": "30000000"}
    )
    assert notifier.address == "\0ganglion/notify"
    assert notifier.watchdog_seconds == 30.0


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(environ).watchdog_seconds is None


async def bound_socket(path: Path) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(path))
    return sock


async def test_the_watchdog_is_pinged_at_half_its_period(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    with await bound_socket(tmp_path / "n.sock") as sock:
        notifier = Notifier(str(tmp_path / "n.sock"), watchdog_seconds=4.0)
        times: list[float] = []
        with trio.move_on_after(9):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(notifier.serve_watchdog)
                while True:
                    assert await sock.recv(100) == b"WATCHDOG=1"
                    times.append(trio.current_time())
    assert times == [0, 2, 4, 6, 8]


async def test_a_notification_nobody_listens_to_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "n.sock"))
    with caplog.at_level(logging.WARNING, logger="ganglion.ops.notify"):
        await notifier.notify("READY=1")
    [warning] = caplog.records
    assert "cannot notify the service manager at" in warning.getMessage()
    # Nothing of the failure stays: once the manager listens, it gets the next one.
    with await bound_socket(tmp_path / "n.sock") as sock:
        await notifier.notify("STATUS=serving")
        with trio.fail_after(5):
            assert await sock.recv(100) == b"STATUS=serving"


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "web: {port: 0}\n"
        "llm: {base_url: 'http://127.0.0.1:9/v1'}\n"
        "heartbeat: {enabled: false}\n"
        "shutdown: {grace_seconds: 5}\n"
    )
    return path


@pytest.mark.slow
async def test_run_says_ready_pings_the_watchdog_then_says_stopping(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    sock_path = tmp_path / "notify.sock"
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
    with await bound_socket(sock_path) as sock:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ganglion", "run", "--config", str(config)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        messages: list[str] = []
        try:
            with trio.fail_after(START_TIMEOUT):
                while messages.count("WATCHDOG=1") < 3:
                    messages.append((await sock.recv(4096)).decode())
                process.send_signal(signal.SIGTERM)
                while not messages[-1].startswith("STOPPING=1"):
                    messages.append((await sock.recv(4096)).decode())
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
    ready = messages[0].splitlines()
    assert ready[0] == "READY=1"
    assert ready[1].startswith("STATUS=Ready; web chat on http://127.0.0.1:")
    assert set(messages[1:-1]) == {"WATCHDOG=1"}
    assert messages[-1] == "STOPPING=1\nSTATUS=Draining: finishing the turns in progress"
    assert code == 0


@pytest.mark.slow
async def test_an_unusable_configuration_exits_2(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("web: {port: -1}\n")
    result = await run_ganglion("run", "--config", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2


CRASHING = """
    import sys
    import ganglion.app
    from ganglion.cli import main
    from ganglion_actors import ChildSpec

    async def doomed(inbox, *, task_status):
        task_status.started()
        raise RuntimeError("a bug")

    children = ganglion.app._children
    ganglion.app._children = lambda *a: [*children(*a), ChildSpec("doomed", doomed)]
    sys.exit(main(["run", "--config", "config.yaml"]))
"""


@pytest.mark.slow
async def test_a_failure_that_escalates_to_the_root_exits_1(tmp_path: Path) -> None:
    write_config(tmp_path)
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-c", textwrap.dedent(CRASHING)],
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1, result.stderr.decode()
    assert b"escalated to the root of the supervision tree" in result.stderr
