"""The bubblewrap sandbox of the shell tool, as the daemon runs it (here as root, the case
where a sandbox without a user namespace and dropped capabilities does not hold): no
capability and no way back to one, a read-only system, the host's secrets, runtime
sockets, config file, logs and daemon process out of sight, no network unless configured,
escaped children and resource limits handled as without it, and a lifetime tied to the
call rather than to the worker thread that started it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from ganglion.config import ShellToolConfig, load_config
from ganglion.tools import ToolRegistry
from ganglion.tools.shell import SandboxError, bwrap_argv, check_sandbox, shell_tools
from tests.test_shell_tool import gone, registry, shell

# A missing bubblewrap skips (fails under CI); one that check_sandbox() refuses fails.
pytestmark = pytest.mark.usefixtures("bwrap")
ROOT_ONLY = pytest.mark.usefixtures("root")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    return tmp_path


def sandboxed(data_dir: Path, **options: object) -> ToolRegistry:
    return registry(data_dir, (), sandbox="bwrap", **options)


async def test_the_command_runs_in_namespaces_of_its_own(data_dir: Path) -> None:
    kinds = ("user", "pid", "ipc", "net", "mnt")
    command = "; ".join(f"readlink /proc/self/ns/{kind}" for kind in kinds)
    ok, text = await shell(sandboxed(data_dir), command)
    assert ok
    for kind, inside in zip(kinds, text.splitlines(), strict=False):
        assert inside != os.readlink(f"/proc/self/ns/{kind}"), kind


async def test_the_command_runs_in_a_session_of_its_own(data_dir: Path) -> None:
    """No TIOCSTI into a terminal the daemon has: the session is the sandbox's own (the
    daemon's would show as 0, a session outside the pid namespace)."""
    ok, text = await shell(sandboxed(data_dir), "cut -d' ' -f6 /proc/self/stat")
    assert ok and text.split()[0] == "1"


async def test_root_in_the_sandbox_has_no_capability(data_dir: Path) -> None:
    ok, text = await shell(sandboxed(data_dir), "id -u; grep ^Cap /proc/self/status")
    assert ok
    lines = text.splitlines()[:-1]
    assert lines[0] == str(os.geteuid())
    assert len(lines) == 6 and all(line.split()[1] == "0" * 16 for line in lines[1:])


@ROOT_ONLY
async def test_remounting_the_system_read_write_fails(data_dir: Path) -> None:
    probe = Path("/usr/ganglion-sandbox-probe")
    command = (
        "mount -o remount,bind,rw /usr; mount -o remount,bind,rw /; "
        f"mount -t tmpfs none /tmp; touch {probe}"
    )
    try:
        ok, text = await shell(sandboxed(data_dir), command)
        assert not probe.exists()
    finally:
        probe.unlink(missing_ok=True)
    assert not ok
    assert text.count("permission denied") == 3, text
    assert "Read-only file system" in text


async def test_no_user_namespace_gives_capabilities_back(data_dir: Path) -> None:
    ok, text = await shell(sandboxed(data_dir), "unshare -Ur sh -c 'mount -t tmpfs x /tmp'")
    assert not ok and text.startswith("error: unshare: ")


async def test_only_the_writable_paths_home_and_tmp_take_writes(data_dir: Path) -> None:
    home = Path(os.environ["HOME"])
    marker = f"ganglion-probe-{secrets.token_hex(4)}"
    command = (
        f"echo ok > {data_dir}/{marker} && echo ok > ~/{marker} && echo ok > /tmp/{marker}"
        f" && for d in / /etc /usr /usr/local; do touch $d/{marker}; done"
    )
    ok, text = await shell(sandboxed(data_dir), command)
    assert not ok and text.count("Read-only file system") == 4, text
    assert (data_dir / marker).read_text() == "ok\n"
    for outside in (home, Path("/tmp"), Path("/"), Path("/etc"), Path("/usr/local")):
        assert not (outside / marker).exists()


async def test_host_secrets_in_etc_are_not_visible(data_dir: Path) -> None:
    secret_files = [p for p in ("/etc/shadow", "/etc/gshadow", "/etc/ssh") if Path(p).exists()]
    ok, text = await shell(sandboxed(data_dir), f"ls -d /etc/passwd {' '.join(secret_files)}")
    assert not ok
    for path in secret_files:
        assert f"cannot access '{path}': No such file or directory" in text
    assert "/etc/passwd\n" in text


async def test_the_config_file_and_the_logs_are_hidden_inside_a_writable_path(
    tmp_path: Path,
) -> None:
    project = tmp_path / "assistant"
    (project / "data" / "scripts").mkdir(parents=True)
    (project / "logs").mkdir()
    (project / "logs" / "ganglion.log").write_text("?token=web-token-in-the-log\n")
    config_file = project / "config.yaml"
    config_file.write_text(
        "llm: {api_key: sk-key-in-the-config}\n"
        "logging: {dir: logs}\n"
        "tools: {shell: {sandbox: bwrap, writable_paths: ['.']}}\n"
    )
    config, _ = load_config(config_file, environ={})
    tools = ToolRegistry(shell_tools(config.tools.shell, config.data_dir, lambda: ()))
    command = f"ls -A {project}/logs; echo written > {project}/notes.txt; cat {config_file}"
    ok, text = await shell(tools, command)
    # The logs directory is empty, the config file is covered by /dev/null (which a
    # user namespace may not open: Permission denied), the rest of the project is there.
    assert (ok, text) == (False, f"error: cat: {config_file}: Permission denied\n[exit code 1]")
    assert (project / "notes.txt").read_text() == "written\n"


async def test_ganglions_own_files_are_hidden_inside_a_writable_path(tmp_path: Path) -> None:
    """Issue 26, rows 4 and 7: reminders.json, the logs and a custom Matrix store, with
    the whole install directory writable."""
    project = tmp_path / "assistant"
    (project / "data" / "scripts").mkdir(parents=True)
    (project / "data" / "reminders.json").write_text('[{"thread_id": "web_b"}]\n')
    (project / "logs").mkdir()
    (project / "logs" / "ganglion.log").write_text("tool call in web_b\n")
    (project / "store").mkdir()
    (project / "store" / "sync_token").write_text("s1\n")
    config_file = project / "config.yaml"
    config_file.write_text(
        "logging: {dir: logs}\nmatrix: {enabled: false, store_dir: store}\n"
        "tools: {shell: {sandbox: bwrap, writable_paths: ['.']}}\n"
    )
    config, _ = load_config(config_file, environ={})
    tools = ToolRegistry(shell_tools(config.tools.shell, config.data_dir, lambda: ()))
    command = "cat ../reminders.json; ls -A ../../logs ../../store; grep -r web_b ../.. 2>/dev/null | wc -l"
    ok, text = await shell(tools, command)
    assert ok, text
    assert text.splitlines() == [
        "cat: ../reminders.json: Permission denied",
        "../../logs:",
        "",
        "../../store:",
        "0",
        "[exit code 0]",
    ]


async def test_reminders_rewritten_while_a_command_runs_stay_hidden_from_it(
    tmp_path: Path,
) -> None:
    """Issue 26 row 4: a file replaced by rename loses the mount that hides it from a
    sandbox already running; the reminders' mirror is rewritten in place instead."""
    from ganglion.reminders.schedule import Schedule
    from ganglion.reminders.store import ReminderStore

    (tmp_path / "scripts").mkdir()
    store = await ReminderStore.open(tmp_path / "scheduler.db")
    try:
        await store.mirror()  # reminders.json exists before the command starts
        config_file = tmp_path / "config.yaml"
        config_file.write_text(
            f"data_dir: {tmp_path}\ntools: {{shell: {{sandbox: bwrap, writable_paths: ['.']}}}}\n"
        )
        config, _ = load_config(config_file, environ={})
        tools = ToolRegistry(shell_tools(config.tools.shell, config.data_dir, lambda: ()))
        go = tmp_path / "scripts" / "go"
        command = (
            "touch started; while [ ! -e go ]; do sleep 0.02; done; "
            "cat ../reminders.json 2>&1 | head -c 200"
        )
        async with trio.open_nursery() as nursery:
            result: list[tuple[bool, str]] = []

            async def run() -> None:
                result.append(await shell(tools, command))

            nursery.start_soon(run)
            with trio.fail_after(20):
                while not (tmp_path / "scripts" / "started").exists():
                    await trio.sleep(0.02)
            due = datetime.now(UTC) + timedelta(days=1)
            schedule = Schedule("at", due.isoformat(), "UTC", datetime.now(UTC))
            await store.add(
                "the secret text of another conversation",
                schedule,
                thread_id="web_b",
                system=False,
                next_fire=due,
            )
            assert "secret text" in (tmp_path / "reminders.json").read_text()
            go.touch()
        text = result[0][1]
        assert "Permission denied" in text and "secret" not in text, text
    finally:
        await store.aclose()


async def test_tmp_home_and_dev_shm_are_capped_and_dev_is_read_only(data_dir: Path) -> None:
    """Issue 26, row 5: `tmp_bytes` of 8 MiB, shared 4 / 2 / 2 MiB."""
    command = " ; ".join(
        f"head -c 300000000 /dev/zero > {where}/fill 2>/dev/null; wc -c < {where}/fill"
        for where in ("/tmp", "$HOME", "/dev/shm")
    )
    ok, text = await shell(sandboxed(data_dir, tmp_bytes=8 << 20), f"{command}; touch /dev/x")
    assert text.removeprefix("error: ").splitlines()[:3] == [str(n << 20) for n in (4, 2, 2)]
    assert not ok and "cannot touch '/dev/x': Read-only file system" in text


async def test_run_and_the_runtime_directory_are_not_visible(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = data_dir / "run-user"  # inside the writable data directory on purpose
    runtime.mkdir()
    (runtime / "bus").write_text("session bus")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    ok, text = await shell(sandboxed(data_dir), f"ls -A {runtime}; ls /run /var/run")
    assert not ok
    assert "bus" not in text
    assert "'/run': No such file or directory" in text
    assert "'/var/run': No such file or directory" in text


async def test_the_hosts_tmp_is_not_visible(data_dir: Path) -> None:
    probe = Path(f"/tmp/ganglion-probe-{secrets.token_hex(4)}")
    probe.write_text("host")
    try:
        ok, text = await shell(sandboxed(data_dir), f"cat {probe}")
    finally:
        probe.unlink()
    assert (ok, text) == (False, f"error: cat: {probe}: No such file or directory\n[exit code 1]")


CONNECT = (
    "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print('connected')"
)


@pytest.mark.skipif(not os.access("/run", os.W_OK), reason="cannot create a socket in /run")
async def test_a_unix_socket_in_run_cannot_be_reached(data_dir: Path) -> None:
    path = Path(f"/run/ganglion-test-{secrets.token_hex(4)}.sock")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(path))
        listener.listen()
        command = f'python3 -c "{CONNECT}" {path}'
        assert await shell(registry(data_dir), command) == (True, "connected\n[exit code 0]")
        ok, text = await shell(sandboxed(data_dir, network=True), command)
    finally:
        listener.close()
        path.unlink(missing_ok=True)
    assert not ok and "FileNotFoundError" in text


async def test_the_daemon_process_and_its_environment_are_out_of_reach(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"daemon-secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", marker)
    command = "cat /proc/[0-9]*/environ | tr '\\0' '\\n'; echo; for p in /proc/[0-9]*; do cat $p/comm; done"
    ok, text = await shell(sandboxed(data_dir), command)
    assert ok
    assert marker not in text and "AWS_SECRET_ACCESS_KEY" not in text
    # Only the sandbox's own processes: bubblewrap's init, the shell and its children.
    names = text.split("\n\n", 1)[1].splitlines()[:-1]
    assert set(names) <= {"bwrap", "sh", "cat"}, names


async def test_the_network_is_off_unless_configured(data_dir: Path) -> None:
    ok, text = await shell(sandboxed(data_dir), "grep -c : /proc/net/dev")
    assert (ok, text) == (True, "1\n[exit code 0]")  # the loopback interface only
    ok, text = await shell(sandboxed(data_dir, network=True), "grep -c : /proc/net/dev")
    assert ok and int(text.split()[0]) > 1


async def test_children_that_leave_the_session_die_with_the_sandboxed_command(
    data_dir: Path,
) -> None:
    tag = f"{secrets.randbelow(10**6) + 10**6}.5"  # a sleep no other process runs
    command = (
        f"setsid -f sh -c 'touch started; exec sleep {tag}'; "
        f"(setsid sh -c 'exec sleep {tag}' &); "
        "while [ ! -e started ]; do sleep 0.01; done; echo left"
    )
    ok, text = await shell(sandboxed(data_dir), command)
    assert (ok, text) == (True, "left\n[exit code 0]")
    leftovers = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and not gone(int(pid)) and _cmdline(pid) == ["sleep", tag]
    ]
    assert leftovers == []


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


async def test_resource_limits_apply_in_the_sandbox(data_dir: Path) -> None:
    tools = sandboxed(data_dir, limit_cpu_seconds=42, limit_processes=99)
    ok, text = await shell(tools, "ulimit -t; ulimit -p")
    assert (ok, text) == (True, "42\n99\n[exit code 0]")


# Run in a fresh interpreter, whose Trio worker threads all retire 50 ms after their last
# job instead of 10 s: the command waits until no worker thread is left, then finishes.
# With bwrap's --die-with-parent tied to the thread that started it, it would be dead.
OUTLIVE_WORKER_THREADS = """
import json, sys, threading
from pathlib import Path
import trio, trio._core._thread_cache
from ganglion.transcript import ToolCall
from ganglion.config import ShellToolConfig
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.shell import shell_tools

trio._core._thread_cache.IDLE_TIMEOUT = 0.05
data = Path(sys.argv[1])
command = "touch started; while [ ! -e go ]; do sleep 0.01; done; echo survived"

async def main():
    config = ShellToolConfig(sandbox="bwrap", timeout_seconds=30)
    tools = ToolRegistry(shell_tools(config, data, lambda: ()))
    call = ToolCall("c", "shell", json.dumps({"command": command}))
    context = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: release(data / "scripts"))
        result = await tools.call(call, context)
    print(result.content)

def worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith("Trio thread")]

async def release(scripts):
    while not (scripts / "started").exists():
        await trio.sleep(0.01)
    while worker_threads():
        await trio.sleep(0.01)
    (scripts / "go").touch()

trio.run(main)
"""


async def test_a_sandboxed_command_outlives_the_worker_thread_that_started_it(
    data_dir: Path,
) -> None:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", OUTLIVE_WORKER_THREADS, str(data_dir)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.stdout.decode() == "survived\n[exit code 0]\n", done.stderr.decode()


@ROOT_ONLY
def test_the_sandbox_holds_for_an_ordinary_user() -> None:
    """The usual deployment: a daemon that is not root. The same bwrap options work
    without privileges and give the same sandbox."""
    with tempfile.TemporaryDirectory(dir="/tmp") as where:  # reachable by any user
        place = Path(where)
        os.chown(place, 65534, 65534)
        config = ShellToolConfig(sandbox="bwrap", bwrap_path=shutil.which("bwrap") or "bwrap")
        prefix = bwrap_argv(config, cwd=place, writable=[place])
        command = "id -u; grep CapEff /proc/self/status; echo ok > mine; touch /usr/x"
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        done = subprocess.run(
            [*as_nobody, *prefix, "/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            cwd=place,
        )
        assert done.stdout.split() == ["65534", "CapEff:", "0" * 16], done.stderr
        assert done.stderr == "touch: cannot touch '/usr/x': Read-only file system\n"
        assert (place / "mine").read_text() == "ok\n"


@ROOT_ONLY
def test_a_bwrap_that_leaves_root_its_capabilities_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    # Ignores every option and runs the command as it is: as root, with every capability.
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    fake.chmod(0o755)
    with pytest.raises(SandboxError, match="kept capabilities"):
        check_sandbox(ShellToolConfig(sandbox="bwrap", bwrap_path=str(fake)))


def test_start_up_refuses_a_bwrap_that_cannot_build_the_sandbox(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError, match="cannot create its sandbox here: bwrap: No perm"):
        check_sandbox(ShellToolConfig(sandbox="bwrap", bwrap_path=str(fake)))


def test_start_up_refuses_a_bwrap_that_cannot_cap_its_tmpfs(tmp_path: Path) -> None:
    """Issue 26, row 5: without --size the private /tmp would have no cap; no sandbox
    runs without it."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Unknown option --size' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError, match=r"cannot cap the size .*tools.shell.tmp_bytes"):
        check_sandbox(ShellToolConfig(sandbox="bwrap", bwrap_path=str(fake)))
