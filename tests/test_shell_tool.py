"""The shell tool: exit codes, output caps, time limits that kill the whole process group,
an environment without Ganglion's secrets, and the bubblewrap sandbox."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from ganglion.chat import ToolCall
from ganglion.config import ShellToolConfig
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.shell import CappedOutput, child_environment, shell_tools
from tests.daemon import daemon_config, open_daemon
from tests.fakellm import FakeLLM, Reply
from tests.process import run_ganglion

CTX = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")
SECRET = "sk-test-0123456789abcdefghij"
HAS_BWRAP = shutil.which("bwrap") is not None


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


@pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed (nox installs it)")
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
        "web: {enabled: false}\n"
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
