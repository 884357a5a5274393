"""The shell tool: exit codes, output caps, time limits that kill every process the command
started (also those that left its session), resource limits, an environment built from an
allowlist, the daemon's own environment out of reach, and the bubblewrap sandbox (more in
test_sandbox.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from ganglion.config import ShellToolConfig
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.shell import (
    CappedOutput,
    child_environment,
    resource_limits,
    shell_tools,
)
from ganglion.transcript import ToolCall
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply
from tests.support.process import run_ganglion

CTX = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")
SECRET = "sk-test-0123456789abcdefghij"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    return tmp_path


def registry(data_dir: Path, secrets: tuple[str, ...] = (), **options: object) -> ToolRegistry:
    config = ShellToolConfig.model_validate(options)
    return ToolRegistry(shell_tools(config, data_dir, lambda: secrets))


async def shell(tools: ToolRegistry, command: str, **more: object) -> tuple[bool, str]:
    arguments = json.dumps({"command": command, **more})
    with trio.fail_after(60):
        result = await tools.call(ToolCall("c", "shell", arguments), CTX)
    return result.ok, result.content


def gone(pid: int) -> bool:
    """No such process at all: not even a zombie waiting to be reaped."""
    return not Path(f"/proc/{pid}").exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead for our purpose.
    status = Path(f"/proc/{pid}/status").read_text()
    return "State:\tZ" not in status


def test_capped_output_keeps_head_and_tail_and_counts_the_rest() -> None:
    output = CappedOutput(10)
    for piece in [b"abc", b"defgh", b"ijklmnopqrstuvwxyz"]:
        output.feed(piece)
    assert output.total == 26
    assert output.text() == "abcde\n[… 16 bytes of output omitted …]\nvwxyz"
    small = CappedOutput(10)
    small.feed(b"hello")
    assert small.text() == "hello"


def test_the_child_environment_has_no_ganglion_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "GANGLION_WEB_TOKEN": "tok",
        "GANGLION_ANYTHING": "x",
        "OPENAI_API_KEY": SECRET,
        "HEADER": f"Bearer {SECRET}",
        "HOME": "/home/me",
    }
    assert child_environment(environ, [SECRET]) == {"PATH": "/usr/bin", "HOME": "/home/me"}


def test_the_environment_is_an_allowlist() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_TIME": "en_GB.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "SSH_AUTH_SOCK": "/run/user/1000/ssh",
        "PYTHONPATH": "/src",
        "PYTHONSTARTUP": "/x.py",
        "GANGLION_LLM_API_KEY": "key",
    }
    chosen = child_environment(
        environ, [SECRET], pass_env=["PYTHON*", "GANGLION_*"], extra={"EDITOR": "ed"}
    )
    assert chosen == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_TIME": "en_GB.UTF-8",
        "PYTHONPATH": "/src",
        "PYTHONSTARTUP": "/x.py",
        "EDITOR": "ed",
    }


def test_configured_variables_must_be_names() -> None:
    with pytest.raises(ValueError, match="is not a variable name"):
        ShellToolConfig.model_validate({"pass_env": ["A=B"]})
    with pytest.raises(ValueError, match="is not a variable name"):
        ShellToolConfig.model_validate({"env": {"X*": "1"}})


def test_resource_limits_default_to_sane_values_and_none_lifts_one() -> None:
    assert resource_limits(ShellToolConfig()) == {
        "cpu": 600,
        "as": 8 * 1024**3,
        "fsize": 1024**3,
        "nproc": 4096,
    }
    assert "nproc" not in resource_limits(ShellToolConfig(limit_processes=None))


async def test_output_and_exit_code_come_back(data_dir: Path) -> None:
    tools = registry(data_dir)
    assert await shell(tools, "echo hello; echo oops >&2; pwd") == (
        True,
        f"hello\noops\n{data_dir / 'scripts'}\n[exit code 0]",
    )
    ok, text = await shell(tools, "echo failing; exit 3")
    assert (ok, text) == (False, "error: failing\n[exit code 3]")
    ok, text = await shell(tools, "kill -TERM $$")
    assert not ok and text.endswith("[killed by signal SIGTERM]")


async def test_bad_arguments_are_refused(data_dir: Path) -> None:
    tools = registry(data_dir)
    result = await tools.call(ToolCall("c", "shell", json.dumps({"command": ["ls"]})), CTX)
    assert not result.ok and "command" in result.content
    result = await tools.call(ToolCall("c", "shell", "{}"), CTX)
    assert not result.ok and "required argument is missing" in result.content
    assert (await shell(tools, "  "))[1] == "error: the command is empty"
    assert (await shell(tools, "true", timeout_seconds=-1))[1].startswith("error: timeout")


async def test_secrets_are_absent_from_the_childs_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGLION_LLM_API_KEY", SECRET)
    monkeypatch.setenv("MY_COPY_OF_THE_KEY", f"prefix-{SECRET}")
    monkeypatch.setenv("HARMLESS", "visible")
    tools = registry(
        data_dir,
        (SECRET, "web-token-1234"),
        pass_env=["GANGLION_*", "MY_COPY_OF_THE_KEY", "HARMLESS"],
    )
    ok, text = await shell(tools, "env")
    assert ok
    assert SECRET not in text and "web-token-1234" not in text and "GANGLION_" not in text
    assert "HARMLESS=visible" in text


async def test_a_daemon_variable_outside_the_allowlist_is_absent_from_the_command(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY")
    ok, text = await shell(registry(data_dir), "env")
    assert ok
    assert "wJalrXUtnFEMI" not in text and "AWS_" not in text
    names = {line.split("=", 1)[0] for line in text.splitlines()[:-1]}
    allowed = {"PATH", "HOME", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME"}
    assert names <= allowed | {n for n in os.environ if n.startswith("LC_")} | {"PWD"}


async def test_the_reaper_adds_nothing_to_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a C locale, Python sets LC_CTYPE=C.UTF-8 in its own environment at start-up
    (PEP 538); the reaper is a Python program, the command must not inherit that."""
    for name in ("LANG", "LC_ALL", "LC_CTYPE"):
        monkeypatch.delenv(name, raising=False)
    ok, text = await shell(registry(data_dir), "env")
    assert ok and "LC_CTYPE" not in text


async def test_signalling_the_reaper_does_not_stop_the_clean_up(data_dir: Path) -> None:
    command = "\n".join([ESCAPES[0], "while [ ! -s a.pid ]; do sleep 0.01; done", "kill $PPID"])
    ok, text = await shell(registry(data_dir), command + "; kill -HUP $PPID; echo still")
    assert (ok, text) == (True, "still\n[exit code 0]")
    assert gone(int((data_dir / "scripts" / "a.pid").read_text()))


async def test_configured_variables_reach_the_command(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJECT_ROOT", "/srv/project")
    tools = registry(data_dir, pass_env=["PROJECT_*"], env={"EDITOR": "ed"})
    ok, text = await shell(tools, "echo $PROJECT_ROOT $EDITOR")
    assert (ok, text) == (True, "/srv/project ed\n[exit code 0]")


ESCAPES = (
    # setsid forks when it leads its group: its child is orphaned at once
    "setsid -f sh -c 'echo $$ > a.pid; exec sleep 1000'",
    # a new session of its own, left behind when the shell exits
    "setsid sh -c 'echo $$ > b.pid; exec sleep 1000' &",
    # a double fork: orphaned when the subshell exits
    "(sh -c 'echo $$ > c.pid; exec sleep 1000' &)",
    # a new process group, as a job-control shell or a daemon would make
    "perl -e 'setpgrp(0, 0); exec q{sh}, q{-c}, q{echo $$ > d.pid; exec sleep 1000}' &",
    "nohup sh -c 'echo $$ > e.pid; exec sleep 1000' > /dev/null 2>&1 &",
)
WAIT_FOR_ESCAPES = "for f in a b c d e; do while [ ! -s $f.pid ]; do sleep 0.01; done; done"


async def test_processes_that_leave_the_session_are_killed_when_the_command_ends(
    data_dir: Path,
) -> None:
    command = "\n".join([*ESCAPES, WAIT_FOR_ESCAPES, "echo started"])
    ok, text = await shell(registry(data_dir), command)
    assert (ok, text) == (True, "started\n[exit code 0]")
    for name in "abcde":
        pid = int((data_dir / "scripts" / f"{name}.pid").read_text())
        assert gone(pid), name


async def test_processes_that_leave_the_session_are_killed_at_the_time_limit(
    data_dir: Path, mock_clock: trio.testing.MockClock
) -> None:
    command = "\n".join([*ESCAPES, WAIT_FOR_ESCAPES, "touch go; sleep 1000"])
    tools = registry(data_dir, timeout_seconds=5)
    scripts = data_dir / "scripts"
    ok, text = await shell_past_its_limit(tools, command, mock_clock, scripts / "go", 5.5)
    assert not ok and "did not finish within 5 s" in text
    for name in "abcde":
        assert gone(int((scripts / f"{name}.pid").read_text())), name


# A daemon in a process of its own, running one command, to be killed with SIGKILL.
DAEMON_RUNNING_A_COMMAND = """
import json, sys
from pathlib import Path
import trio
from ganglion.transcript import ToolCall
from ganglion.config import ShellToolConfig
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.shell import shell_tools

async def main():
    tools = ToolRegistry(shell_tools(ShellToolConfig(), Path(sys.argv[1]), lambda: ()))
    call = ToolCall("c", "shell", json.dumps({"command": sys.argv[2]}))
    context = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")
    await tools.call(call, context)

trio.run(main)
"""


async def test_a_command_dies_with_a_daemon_killed_outright(data_dir: Path) -> None:
    scripts = data_dir / "scripts"
    command = "\n".join([ESCAPES[0], "echo $$ > sh.pid", "exec sleep 1000"])
    daemon = await trio.lowlevel.open_process(
        [sys.executable, "-c", DAEMON_RUNNING_A_COMMAND, str(data_dir), command]
    )
    written = [scripts / "a.pid", scripts / "sh.pid"]
    try:
        with trio.fail_after(30):
            while not all(path.exists() and path.read_text().endswith("\n") for path in written):
                await trio.sleep(0.01)
    finally:
        daemon.kill()
        with trio.fail_after(10):
            await daemon.wait()
    pids = [int(path.read_text()) for path in written]
    with trio.fail_after(10):  # the reaper sees its lifeline close and kills them
        while not all(gone(pid) for pid in pids):
            await trio.sleep(0.01)


async def test_configured_resource_limits_bind_the_command(data_dir: Path) -> None:
    tools = registry(
        data_dir,
        limit_cpu_seconds=77,
        limit_address_space_bytes=3 * 1024**3,
        limit_file_size_bytes=5 * 1024**2,
        limit_processes=333,
    )
    ok, text = await shell(tools, "ulimit -a")
    assert ok
    limits = dict(line.rsplit(None, 1) for line in text.splitlines()[:-1])
    assert limits["time(seconds)"] == "77"
    assert limits["vmemory(kbytes)"] == str(3 * 1024**2)
    assert limits["file(blocks)"] == str(5 * 1024**2 // 512)
    assert limits["process"] == "333"


async def test_a_file_past_the_size_limit_is_not_written(data_dir: Path) -> None:
    tools = registry(data_dir, limit_file_size_bytes=1024**2)
    ok, text = await shell(tools, "head -c 5000000 /dev/zero > big")
    assert not ok and text.endswith("[exit code 153]")  # the shell reports SIGXFSZ
    assert (data_dir / "scripts" / "big").stat().st_size == 1024**2


def test_the_daemon_process_is_made_non_dumpable() -> None:
    probe = (
        "import ctypes; from ganglion.private import protect_process; "
        "libc = ctypes.CDLL(None); before = libc.prctl(3, 0, 0, 0, 0); "
        "protect_process(); print(before, libc.prctl(3, 0, 0, 0, 0))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == ["1", "0"], done.stderr


# A process of an ordinary user that holds a secret in its environment, reads its own
# /proc/<pid>/environ through a command of the same user, makes itself non-dumpable as
# protect_process does, and tries again.
NON_DUMPABLE_PROBE = """
import ctypes, os, subprocess
def read():
    done = subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True)
    return "readable" if b"SECRET_MARKER=hunter2" in done.stdout else "unreadable"
before = read()
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
print(before, read())
"""
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


@pytest.mark.usefixtures("root")  # switching to another user needs root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system python3 a plain user can run")
def test_a_non_dumpable_daemon_environment_is_closed_to_the_same_non_root_user() -> None:
    assert SYSTEM_PYTHON is not None
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*as_nobody, SYSTEM_PYTHON, "-c", NON_DUMPABLE_PROBE],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SECRET_MARKER": "hunter2"},
        cwd="/",
    )
    assert done.stdout.split() == ["readable", "unreadable"], done.stderr


@pytest.mark.usefixtures("root")  # the limit shown here is root's
def test_as_root_a_command_without_the_sandbox_still_reads_the_daemon_environment() -> None:
    """What non-dumpable does not do: root has CAP_SYS_PTRACE. Only the sandbox (its pid
    namespace) or a daemon that does not run as root keeps root's commands out."""
    done = subprocess.run(
        [sys.executable, "-c", NON_DUMPABLE_PROBE],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SECRET_MARKER": "hunter2"},
    )
    assert done.stdout.split() == ["readable", "readable"], done.stderr


def wait_for_file(path: Path) -> None:
    """Real-time wait (in a worker thread) for a command to show it is running."""
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


async def shell_past_its_limit(
    tools: ToolRegistry,
    command: str,
    clock: trio.testing.MockClock,
    started: Path,
    jump: float,
    **more: object,
) -> tuple[bool, str]:
    """Start `command`, wait until it wrote `started`, then move the clock `jump` seconds."""
    outcome: list[tuple[bool, str]] = []

    async def run() -> None:
        outcome.append(await shell(tools, command, **more))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.to_thread.run_sync(wait_for_file, started)
        clock.jump(jump)
        for _ in range(3000):
            if outcome:
                break
            await trio.to_thread.run_sync(time.sleep, 0.01)
        else:
            clock.jump(1000)  # the command was not killed: let shell()'s fail_after fire
    return outcome[0]


async def test_a_command_that_never_exits_is_killed_with_its_whole_group(
    data_dir: Path, mock_clock: trio.testing.MockClock
) -> None:
    scripts = data_dir / "scripts"
    command = "sleep 1000 & echo $! > bg.pid; echo $$ > sh.pid; echo started; touch go; wait"
    tools = registry(data_dir, timeout_seconds=5)
    ok, text = await shell_past_its_limit(tools, command, mock_clock, scripts / "go", 5.5)
    assert not ok
    assert text.startswith("error: the command did not finish within 5 s; it was killed")
    assert text.endswith("started")
    for name in ("sh.pid", "bg.pid"):
        pid = int((scripts / name).read_text())
        assert not alive(pid), name


async def test_background_processes_do_not_outlive_the_command(data_dir: Path) -> None:
    ok, text = await shell(registry(data_dir), "sleep 1000 & echo $! > bg.pid; echo done")
    assert (ok, text) == (True, "done\n[exit code 0]")
    pid = int((data_dir / "scripts" / "bg.pid").read_text())
    with trio.fail_after(10):
        while alive(pid):
            await trio.sleep(0.01)


async def test_a_command_that_prints_gigabytes_stays_capped(data_dir: Path) -> None:
    tools = registry(data_dir, max_output_bytes=4096)
    command = "echo START; head -c 300000000 /dev/zero | tr '\\0' x; echo; echo END"
    ok, text = await shell(tools, command)
    assert ok
    assert text.startswith("START\nxxx") and text.endswith("xxx\nEND\n[exit code 0]")
    assert "bytes of output omitted" in text
    assert len(text) < 4096 + 200


async def test_the_model_may_ask_for_a_shorter_or_a_capped_longer_time_limit(
    data_dir: Path, mock_clock: trio.testing.MockClock
) -> None:
    tools = registry(data_dir, timeout_seconds=5, max_timeout_seconds=30)
    go = data_dir / "scripts" / "go"
    ok, text = await shell_past_its_limit(
        tools, "touch go; sleep 100", mock_clock, go, 31, timeout_seconds=1000
    )
    assert not ok and "within 30 s" in text
    go.unlink()
    ok, text = await shell_past_its_limit(
        tools, "touch go; sleep 100", mock_clock, go, 2.5, timeout_seconds=2
    )
    assert not ok and "within 2 s" in text


@pytest.mark.usefixtures("bwrap")
async def test_the_bwrap_sandbox_allows_writes_only_to_the_writable_paths(
    data_dir: Path,
) -> None:
    outside = Path("/etc/ganglion-sandbox-probe")  # not writable inside, even for root
    (data_dir / "conversation.db").write_text("private history")
    tools = registry(data_dir, sandbox="bwrap", network=False)
    try:
        ok, text = await shell(tools, f"echo inside > ok.txt && cat ok.txt && touch {outside}")
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    assert not ok and text.startswith("error: inside\n") and "Read-only file system" in text
    assert (data_dir / "scripts" / "ok.txt").read_text() == "inside\n"
    ok, text = await shell(tools, f"cat {data_dir}/conversation.db")
    assert not ok and "private history" not in text
    ok, text = await shell(tools, "grep -c : /proc/net/dev")
    assert text.startswith("1\n")  # only the loopback interface: no network


async def test_a_missing_bwrap_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "web: {port: 0}\n"
        "tools: {shell: {sandbox: bwrap, bwrap_path: /nonexistent/bwrap}}\n"
        f"data_dir: {tmp_path / 'data'}\n"
        "logging: {dir: null}\n"
    )
    done = await run_ganglion("run", "--config", str(config), cwd=tmp_path)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "bubblewrap (/nonexistent/bwrap) is not installed" in stderr
    assert "apt install bubblewrap" in stderr


async def test_the_model_runs_a_command_in_a_turn(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGLION_LLM_API_KEY", SECRET)
    fake_llm.script(
        Reply(tool_calls=(("shell", json.dumps({"command": "echo $((6 * 7)); env"})),)),
        Reply(tool_calls=(("shell", json.dumps({"command": "exit 4"})),)),
        Reply("The answer is 42."),
    )
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"api_key": SECRET})
    async with open_daemon(config) as daemon:
        await daemon.say("web_abababababababab", "what is 6 times 7?")
        assert await daemon.collector.final("web_abababababababab") == ["The answer is 42."]
    first = fake_llm.requests[1]["messages"][-1]["content"]
    assert first.startswith("42\n") and first.endswith("[exit code 0]")
    assert SECRET not in first
    assert fake_llm.requests[2]["messages"][-1]["content"] == "error: [exit code 4]"
    names = {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    assert "shell" in names
