"""`ganglion run` as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.process import modules_loaded_by, run_ganglion

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web:\n  prot: 8080\n", "config.yaml: web.prot: unknown option"),
        ("web:\n  port: high\n", "config.yaml: web.port: Input should be a valid integer"),
        ("llm: [1, 2\n", "config.yaml: YAML syntax error (line 2"),
        (
            "matrix: {allowed_users: ['@a:b'], device_id: D, access_token: t, user_id: '@b:c'}\n",
            "config.yaml: matrix: matrix.homeserver is required (or set matrix.enabled: false)",
        ),
        ("web: {enabled: false}\n", "no interface is on"),
        (
            "web: {metrics_bind: '0.0.0.0:9464'}\n",
            "config.yaml: web.metrics_bind: 0.0.0.0 is not a loopback address",
        ),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "yaml-syntax",
        "missing-required",
        "no-interface",
        "metrics-off-loopback",
    ],
)
async def test_bad_config_exits_2_with_one_readable_message(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    result = await run_ganglion("run", "--config", "config.yaml", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert expected in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "data").exists(), "nothing may be created from a bad config"


async def test_unreadable_config_exits_2(tmp_path: Path) -> None:
    result = await run_ganglion("run", "--config", "missing.yaml", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "missing.yaml: cannot read the config file" in stderr
    assert "Traceback" not in stderr


def daemon_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "web: {port: 0}\n"
        "llm: {base_url: 'http://127.0.0.1:9/v1'}\n"
        "shutdown: {grace_seconds: 5}\n" + extra,
        encoding="utf-8",
    )
    return path


async def wait_for_line(stream: trio.abc.ReceiveStream, needle: str, seen: bytearray) -> None:
    while needle.encode() not in seen:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"stream ended before {needle!r}:\n{seen.decode()}")
        seen += chunk


async def test_sigterm_stops_the_daemon_cleanly_with_exit_0(tmp_path: Path) -> None:
    config = daemon_config(tmp_path)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ganglion", "run", "--config", str(config)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    seen = bytearray()
    try:
        with trio.fail_after(30):
            await wait_for_line(process.stderr, "ganglion is ready", seen)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_line, process.stderr, "stopped cleanly", seen)
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    log = seen.decode()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the daemon's process group is left running
    assert (tmp_path / "data" / "MEMORIES.txt").is_file()
    logged = (tmp_path / "logs" / "ganglion.log").read_text()
    assert logged.count("ganglion is ready") == 1
    assert logged.endswith("stopped cleanly\n")  # flushed before the quick exit


async def test_a_daemon_without_matrix_or_mcp_servers_never_imports_their_libraries(
    tmp_path: Path,
) -> None:
    # Together they were half of the start-up time, for parts a default set-up never runs.
    config = daemon_config(tmp_path)
    loaded = await modules_loaded_by(
        "import trio\n"
        "from pathlib import Path\n"
        "from ganglion.app import run_daemon\n"
        "from ganglion.config import load_config\n"
        f"config, _ = load_config(Path({str(config)!r}))\n"
        "async def main():\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        running = await nursery.start(lambda task_status: run_daemon(\n"
        "            config, handle_signals=False, task_status=task_status))\n"
        "        running.services.request_stop()\n"
        "trio.run(main)",
        tmp_path,
    )
    assert "ganglion.web.server" in loaded
    assert not loaded & {"nio", "mcp", "ganglion.matrix.actor", "ganglion.tools.mcp"}


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_first_run_on_defaults_says_so_and_creates_the_data_dir(tmp_path: Path) -> None:
    if not port_is_free(8080):
        pytest.skip("127.0.0.1:8080, the documented default, is in use on this machine")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "ganglion", "run"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    seen = bytearray()
    try:
        with trio.fail_after(30):
            await wait_for_line(process.stderr, "ganglion is ready", seen)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    log = seen.decode()
    assert process.returncode == 0, log
    assert "running on the built-in defaults" in log
    assert "127.0.0.1:8080" in log
    for name in ("BASE_PROMPT.txt", "MEMORIES.txt", "HEARTBEATS.txt", "skills", "scripts"):
        assert (tmp_path / "data" / name).exists(), name


async def test_a_busy_web_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(f"web: {{port: {port}}}\nlogging: {{dir: null}}\n")
        result = await run_ganglion("run", "--config", str(config), cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"cannot start: the web chat cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


async def test_ganglion_with_no_command_runs_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("web: {port: not-a-port}\n", encoding="utf-8")
    result = await run_ganglion("--config", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2  # the daemon's own configuration check answered
    assert "web.port" in result.stderr.decode()


async def test_help_lists_every_command(tmp_path: Path) -> None:
    result = await run_ganglion("--help", cwd=tmp_path)
    usage = result.stdout.decode()
    assert result.returncode == 0
    assert all(command in usage for command in ("run", "chat", "reminders"))
