"""Issue 19, rows 4, 5, 6, 9 and 10 (the shell's environment), through a real `ganglion run`
process: the scripted fake model calls the shell tool over the web chat, as a
prompt-injected model would, with real bubblewrap where the row is about the sandbox.

Each test reads what the model was told (the tool results in the requests the fake model
received) and what is on the host afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.live import LiveDaemon, open_live_daemon
from tests.test_security_files import tool_results, turn

pytestmark = pytest.mark.slow

NEEDS_BWRAP = pytest.mark.usefixtures("bwrap")
SANDBOX = {"shell": {"sandbox": "bwrap"}}
THREAD = "web_aaaaaaaaaaaaaaaa"


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory outside /tmp, as the owner's would be: the sandbox's private /tmp would
    hide anything under /tmp whatever else it does."""
    where = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="ganglion-test-"))
    try:
        yield where
    finally:
        shutil.rmtree(where)


async def run_commands(
    tmp_path: Path, fake_llm: FakeLLM, commands: list[str], **overrides: Any
) -> list[str]:
    """Start a daemon, let the model run `commands` one round each, return the results."""
    fake_llm.script(*(calling("shell", command=c) for c in commands), Reply("Done."))
    async with open_live_daemon(tmp_path, fake_llm.base_url, **overrides) as live:
        assert (await turn(live, THREAD, "go"))["text"] == "Done."
    return tool_results(fake_llm)


@NEEDS_BWRAP
@pytest.mark.usefixtures("root")  # the attack of row 4 needs a daemon run as root
async def test_row_4_root_in_the_sandbox_cannot_remount_the_host_writable(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """As root, the command used to keep nearly every capability: `mount -o remount,bind,rw
    /` then wrote to the host. Now it has none, and no way to get one back."""
    probe = Path(f"/usr/ganglion-row-4-{secrets.token_hex(4)}")
    attack = f"mount -o remount,bind,rw /usr; mount -o remount,bind,rw /; touch {probe}"
    try:
        capabilities, remount, nested = await run_commands(
            tmp_path,
            fake_llm,
            ["grep ^CapEff /proc/self/status", attack, "unshare -Ur mount -t tmpfs x /tmp"],
            tools=SANDBOX,
        )
        assert not probe.exists()
    finally:
        probe.unlink(missing_ok=True)
    assert capabilities == "CapEff:\t0000000000000000\n[exit code 0]"
    assert remount.count("permission denied") == 2
    assert f"touch: cannot touch '{probe}': Read-only file system" in remount
    assert nested.startswith("error: unshare: ")


# Makes the daemon's Trio worker threads retire 50 ms after their last job, not 10 s.
QUICK_THREAD_RETIREMENT = """
import trio._core._thread_cache
trio._core._thread_cache.IDLE_TIMEOUT = 0.05
"""


def trio_worker_threads(pid: int) -> list[str]:
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # the thread exited meanwhile
            continue
    return [name for name in names if name.startswith("Trio thread")]


@NEEDS_BWRAP
async def test_row_5_a_sandboxed_command_outlives_the_worker_thread_that_started_it(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bwrap's --die-with-parent used to watch the worker thread that started it, and Trio
    retires idle worker threads (after 10 s): commands died 10-15 s in. Here the daemon's
    worker threads retire at once, and the command is let finish only when the daemon has
    none left."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(QUICK_THREAD_RETIREMENT)
    monkeypatch.setenv("PYTHONPATH", str(site))
    command = "touch started; while [ ! -e go ]; do sleep 0.01; done; echo survived"
    fake_llm.script(calling("shell", command=command, timeout_seconds=30), Reply("Done."))
    tools = {"shell": {"sandbox": "bwrap", "timeout_seconds": 30}}

    async def release(live: LiveDaemon) -> None:
        scripts = live.data_dir / "scripts"
        with trio.fail_after(60):
            while not (scripts / "started").exists():
                await trio.sleep(0.01)
            while trio_worker_threads(live.pid):
                await trio.sleep(0.01)
        (scripts / "go").touch()

    async with (
        open_live_daemon(tmp_path, fake_llm.base_url, tools=tools) as live,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(release, live)
        assert (await turn(live, THREAD, "go"))["text"] == "Done."
    assert tool_results(fake_llm) == ["survived\n[exit code 0]"]


async def test_row_6_children_that_leave_the_session_do_not_survive_the_call(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Without the sandbox, `setsid` and `setpgid` children used to be re-parented to init
    and outlive the call and its time limit."""
    escape = (
        "setsid -f sh -c 'echo $$ > a.pid; exec sleep 1000'; "
        "perl -e 'setpgrp(0, 0); exec q{sh}, q{-c}, q{echo $$ > b.pid; exec sleep 1000}' & "
        "while [ ! -s a.pid ] || [ ! -s b.pid ]; do sleep 0.01; done; echo escaped"
    )
    fake_llm.script(calling("shell", command=escape), Reply("Done."))
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        assert (await turn(live, THREAD, "go"))["text"] == "Done."
        scripts = live.data_dir / "scripts"
        pids = [int((scripts / name).read_text()) for name in ("a.pid", "b.pid")]
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # killed and reaped
    assert tool_results(fake_llm) == ["escaped\n[exit code 0]"]


async def test_row_6_resource_limits_from_the_config_bind_the_command(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    limits = {"limit_cpu_seconds": 30, "limit_file_size_bytes": 1 << 20, "limit_processes": 200}
    ulimits, big_file = await run_commands(
        tmp_path,
        fake_llm,
        ["ulimit -t; ulimit -f; ulimit -p; ulimit -v", "head -c 3000000 /dev/zero > big"],
        tools={"shell": limits},
    )
    # The address space limit is the default: 8 GiB, in KiB.
    assert ulimits == f"30\n2048\n200\n{8 << 20}\n[exit code 0]"
    assert big_file.endswith("[exit code 153]")  # SIGXFSZ: the file stopped at 1 MiB


@NEEDS_BWRAP
async def test_row_9_config_file_and_logs_next_to_the_data_are_not_visible(
    outside_tmp: Path, fake_llm: FakeLLM
) -> None:
    """The realistic layout: config.yaml (with the API key) and logs/ (with the token)
    next to data/, outside it."""
    root = outside_tmp / "live"
    (result,) = await run_commands(
        outside_tmp,
        fake_llm,
        [f"cat {root}/config.yaml; ls -A {root}/logs; ls -A {root}"],
        tools=SANDBOX,
        llm={"api_key": "sk-row-9-key"},
    )
    assert result == (
        f"cat: {root}/config.yaml: No such file or directory\n"
        f"ls: cannot access '{root}/logs': No such file or directory\n"
        "data\n[exit code 0]"
    )


@NEEDS_BWRAP
async def test_row_9_config_file_and_logs_stay_hidden_in_a_writable_directory(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The owner made the whole directory writable: the config file and the logs are still
    covered (the config file by /dev/null, which a user namespace may not open)."""
    root = tmp_path / "live"
    (result,) = await run_commands(
        tmp_path,
        fake_llm,
        [f"ls -A {root}/logs; cat {root}/config.yaml"],
        tools={"shell": {"sandbox": "bwrap", "writable_paths": [str(root)]}},
        llm={"api_key": "sk-row-9-key"},
    )
    assert result == f"error: cat: {root}/config.yaml: Permission denied\n[exit code 1]"


@NEEDS_BWRAP
@pytest.mark.skipif(not os.access("/run", os.W_OK), reason="cannot create a socket in /run")
async def test_row_9_host_unix_sockets_and_the_runtime_directory_are_out_of_reach(
    tmp_path: Path, outside_tmp: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `docker.sock` or the session bus in /run or $XDG_RUNTIME_DIR would be an escape."""
    runtime = outside_tmp / "xdg-runtime"
    runtime.mkdir()
    (runtime / "bus").write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    path = Path(f"/run/ganglion-row-9-{secrets.token_hex(4)}.sock")
    listener = socket.socket(socket.AF_UNIX)
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{path}'); print('in')"
    try:
        listener.bind(str(path))
        listener.listen()
        dial, listing = await run_commands(
            tmp_path,
            fake_llm,
            [f'python3 -c "{connect}"', f"ls -A $XDG_RUNTIME_DIR {runtime} /run /var/run"],
            tools={"shell": {"sandbox": "bwrap", "network": True}},
        )
    finally:
        listener.close()
        path.unlink(missing_ok=True)
    assert "FileNotFoundError" in dial and "\nin\n" not in dial
    assert listing.count("No such file or directory") == 3  # $XDG_RUNTIME_DIR is not passed
    assert "bus" not in listing


async def test_row_10_secrets_in_the_daemon_environment_do_not_reach_commands(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child environment used to be the daemon's minus known names, keeping
    AWS_SECRET_ACCESS_KEY; and /proc/$PPID/environ was the daemon's (now: the reaper's,
    the same allowlist)."""
    marker = f"aws-{secrets.token_hex(8)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", marker)
    (result,) = await run_commands(
        tmp_path, fake_llm, ["env; tr '\\0' '\\n' < /proc/$PPID/environ"]
    )
    assert result.endswith("[exit code 0]") and result.count("PATH=") == 2
    assert marker not in result and "AWS_SECRET_ACCESS_KEY" not in result


@NEEDS_BWRAP
async def test_row_10_no_process_in_the_sandbox_holds_the_daemon_environment(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the sandbox the daemon is not even there: its pid namespace holds bubblewrap's
    init and the command."""
    marker = f"aws-{secrets.token_hex(8)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", marker)
    (result,) = await run_commands(
        tmp_path,
        fake_llm,
        ["for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done | sort -u"],
        tools=SANDBOX,
    )
    assert result.endswith("[exit code 0]") and "PATH=" in result
    assert marker not in result and "AWS_SECRET_ACCESS_KEY" not in result
