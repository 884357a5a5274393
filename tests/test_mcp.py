"""MCP servers from the test suite (tests/support/mcpserver.py), used end to end through turns:
over stdio and streamable HTTP, with error results, a server dying mid-call and being
restarted, a server that cannot start, and no process left behind."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from pydantic import ValidationError

from ganglion.config import Config, MCPConfig, MCPServerConfig
from ganglion.tools import ToolRegistry
from ganglion.tools.mcp import (
    RESTART_BACKOFF,
    ConnectionLost,
    MCPServer,
    mcp_child,
    mcp_tool_name,
)
from ganglion_actors import open_supervisor
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.live import free_port

SERVER = str(Path(__file__).parent / "support" / "mcpserver.py")
ROOM = "web_aaaaaaaaaaaaaaaa"


def stdio_server(starts: Path | None = None, **more: Any) -> dict[str, Any]:
    env = {"MCP_TEST_STARTS": str(starts)} if starts is not None else {}
    return {"command": [sys.executable, SERVER, "stdio"], "env": env, **more}


def mcp_config(tmp_path: Path, fake_llm: FakeLLM, **servers: dict[str, Any]) -> Config:
    return daemon_config(tmp_path, fake_llm.base_url, tools={"mcp": {"servers": servers}})


def last_tool_result(fake_llm: FakeLLM, request: int) -> str:
    message = fake_llm.requests[request]["messages"][-1]
    assert message["role"] == "tool", message
    content: str = message["content"]
    return content


async def wait_for_tools(daemon: Daemon, *names: str) -> None:
    with trio.fail_after(60):
        while not set(names) <= daemon.services.deps.tools.names:
            await trio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_tool_names_are_namespaced_safe_and_unique() -> None:
    assert mcp_tool_name("calc", "add") == "mcp__calc__add"
    assert mcp_tool_name("web", "fetch.url v2") == "mcp__web__fetch_url_v2"
    long = mcp_tool_name("s", "x" * 100)
    assert len(long) == 64
    assert mcp_tool_name("s", "x" * 100, frozenset({long})) == long[:62] + "_2"


def test_the_restart_backoff_grows_to_five_minutes_with_jitter() -> None:
    rng = random.Random(7)
    delays = [RESTART_BACKOFF.delay(attempt, rng) for attempt in range(12)]
    assert 0.8 <= delays[0] <= 1.2
    assert 1.6 <= delays[1] <= 2.4
    assert all(240 <= d <= 360 for d in delays[9:])


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({}, "either command"),
        ({"command": ["x"], "url": "http://127.0.0.1:1/mcp"}, "either command"),
        ({"command": []}, "must name the program"),
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"command": ["x"], "headers": {"A": "b"}}, "headers only apply"),
    ],
)
def test_bad_server_configs_are_refused(server: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        MCPConfig.model_validate({"servers": {"calc": server}})


def test_server_names_must_be_short_identifiers() -> None:
    with pytest.raises(ValidationError, match="lowercase letters"):
        MCPConfig.model_validate({"servers": {"My Server!": {"command": ["x"]}}})


async def test_an_mcp_tool_is_used_end_to_end_through_a_turn(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("mcp__calc__add", a=2, b=40),
        calling("mcp__calc__fail", reason="not today"),
        calling("mcp__calc__add", a="two"),
        Reply("2 + 40 = 42."),
    )
    async with open_daemon(mcp_config(tmp_path, fake_llm, calc=stdio_server())) as daemon:
        await wait_for_tools(daemon, "mcp__calc__add", "mcp__calc__echo")
        await daemon.say(ROOM, "what is 2 + 40?")
        assert await daemon.collector.final(ROOM) == ["2 + 40 = 42."]
    assert last_tool_result(fake_llm, 1) == "42"
    assert last_tool_result(fake_llm, 2) == "error: Error executing tool fail: not today"
    assert last_tool_result(fake_llm, 3).startswith("error: ")
    schemas = {t["function"]["name"]: t["function"] for t in fake_llm.requests[0]["tools"]}
    add = schemas["mcp__calc__add"]
    assert add["description"] == "[MCP server calc] Add two integers."
    assert add["parameters"]["required"] == ["a", "b"]
    assert add["parameters"]["properties"]["a"]["type"] == "integer"
    assert "read_file" in schemas  # the built-in tools are still there


async def test_a_server_dying_mid_call_is_a_tool_error_and_it_is_restarted(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    starts = tmp_path / "starts.txt"
    fake_llm.script(calling("mcp__calc__die"), Reply("The calculator crashed; try again soon."))
    config = mcp_config(tmp_path, fake_llm, calc=stdio_server(starts))
    async with open_daemon(config) as daemon:
        await wait_for_tools(daemon, "mcp__calc__die")
        await daemon.say(ROOM, "crash it")
        assert await daemon.collector.final(ROOM) == ["The calculator crashed; try again soon."]
        result = last_tool_result(fake_llm, 1)
        assert result.startswith("error: the MCP server 'calc' stopped during the call")
        with trio.fail_after(60):
            while len(starts.read_text().split()) < 2:
                await trio.sleep(0.02)
        await wait_for_tools(daemon, "mcp__calc__add")
        fake_llm.script(calling("mcp__calc__add", a=1, b=1), Reply("2"))
        await daemon.say(ROOM, "1 + 1?")
        assert await daemon.collector.final(ROOM, 2) == [
            "The calculator crashed; try again soon.",
            "2",
        ]
    assert last_tool_result(fake_llm, 3) == "2"
    assert not any(alive(int(pid)) for pid in starts.read_text().split())


async def test_a_server_that_cannot_start_never_stops_the_daemon(
    tmp_path: Path, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.script(Reply("Still here."))
    config = mcp_config(tmp_path, fake_llm, broken={"command": ["/nonexistent/mcp-server"]})
    async with open_daemon(config) as daemon:
        await daemon.say(ROOM, "hello")
        assert await daemon.collector.final(ROOM) == ["Still here."]
        with trio.fail_after(30):
            while caplog.text.count("actor mcp:broken failed") < 2:  # tried again
                await trio.sleep(0.02)
    assert "actor mcp:broken failed: cannot start it: No such file or directory" in caplog.text
    assert "Traceback" not in caplog.text  # an expected failure is one line
    names = [t["function"]["name"] for t in fake_llm.requests[0]["tools"]]
    assert names and not any(name.startswith("mcp__") for name in names)


@asynccontextmanager
async def http_server(port: int | None = None) -> AsyncIterator[str]:
    port = port or free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, SERVER, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        with trio.CancelScope(shield=True), trio.fail_after(30):
            await process.wait()


async def test_a_streamable_http_server_gets_its_headers(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(calling("mcp__remote__echo", text="ping"), Reply("It answered."))
    async with http_server() as url:
        server = {"url": url, "headers": {"X-Test-Header": "hello"}}
        async with open_daemon(mcp_config(tmp_path, fake_llm, remote=server)) as daemon:
            await wait_for_tools(daemon, "mcp__remote__echo")
            await daemon.say(ROOM, "echo ping")
            assert await daemon.collector.final(ROOM) == ["It answered."]
    assert last_tool_result(fake_llm, 1) == "ping (header: hello)"


async def test_a_tool_allow_list_limits_what_is_offered(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("ok"))
    config = mcp_config(tmp_path, fake_llm, calc=stdio_server(tools=["add"]))
    async with open_daemon(config) as daemon:
        await wait_for_tools(daemon, "mcp__calc__add")
        await daemon.say(ROOM, "hi")
        assert await daemon.collector.final(ROOM) == ["ok"]
    names = {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    assert "mcp__calc__add" in names and "mcp__calc__die" not in names


async def test_the_tools_command_lists_the_mcp_tools(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_daemon(mcp_config(tmp_path, fake_llm, calc=stdio_server())) as daemon:
        await wait_for_tools(daemon, "mcp__calc__add")
        await daemon.say(ROOM, "/tools")
        listing = await daemon.collector.notice(ROOM)
    assert "- MCP server calc: add, die, echo, fail, grow" in listing
    assert "shell" in listing and "remember" in listing
    assert fake_llm.requests == []  # a command never reaches the model


class FlakyServer(MCPServer):
    """A server whose connections fail at once, except the ones listed in `up_for`,
    which stay up that many seconds first (no I/O: the timing is all the clock's)."""

    def __init__(self, up_for: dict[int, float]) -> None:
        super().__init__("flaky", MCPServerConfig(command=["unused"]), ToolRegistry())
        self.up_for = up_for
        self.tried_at: list[float] = []

    async def run_connection(self, stop: trio.Event) -> None:
        self.tried_at.append(trio.current_time())
        await trio.sleep(self.up_for.get(len(self.tried_at), 0))
        raise ConnectionLost("the server closed the connection")


async def tries(server: FlakyServer, count: int) -> list[float]:
    """The gaps between the starts of the first `count` connection attempts."""
    async with open_supervisor("test", intensity=0, rng=random.Random(1)) as supervisor:
        await supervisor.start(mcp_child(server))
        with trio.fail_after(3600):
            while len(server.tried_at) < count:
                await trio.sleep(0.5)
        await supervisor.shutdown(1)
    return [later - earlier for earlier, later in itertools.pairwise(server.tried_at)]


async def test_a_failing_server_is_retried_ever_more_slowly(autojump_clock: Any) -> None:
    gaps = await tries(FlakyServer({}), 8)
    for gap, expected in zip(gaps, [1, 2, 4, 8, 16, 32, 64], strict=True):
        assert expected * 0.8 <= gap <= expected * 1.2, gaps


async def test_after_a_long_good_connection_retries_start_fast_again(
    autojump_clock: Any,
) -> None:
    gaps = await tries(FlakyServer({4: 600.0}), 6)  # the 4th connection stays up 10 min
    assert 3.2 <= gaps[2] <= 4.8  # 1, 2, 4 s, then 10 min up, then 1 s again
    assert 600 + 0.8 <= gaps[3] <= 600 + 1.2, gaps
    assert 1.6 <= gaps[4] <= 2.4, gaps


async def test_a_changed_tool_list_is_picked_up(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(calling("mcp__calc__grow"), Reply("Grown."))
    async with open_daemon(mcp_config(tmp_path, fake_llm, calc=stdio_server())) as daemon:
        await wait_for_tools(daemon, "mcp__calc__grow")
        assert "mcp__calc__multiply" not in daemon.services.deps.tools.names
        await daemon.say(ROOM, "grow")
        assert await daemon.collector.final(ROOM) == ["Grown."]
        await wait_for_tools(daemon, "mcp__calc__multiply")
        fake_llm.script(calling("mcp__calc__multiply", a=6, b=7), Reply("42"))
        await daemon.say(ROOM, "6 * 7?")
        assert await daemon.collector.final(ROOM, 2) == ["Grown.", "42"]
    assert last_tool_result(fake_llm, 3) == "42"


async def test_an_http_server_that_goes_away_comes_back_when_it_does(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    port = free_port()
    fake_llm.script(calling("mcp__remote__add", a=1, b=2), Reply("The server is gone."))
    server = {"url": f"http://127.0.0.1:{port}/mcp", "ping_interval_seconds": 3600}
    async with open_daemon(mcp_config(tmp_path, fake_llm, remote=server)) as daemon:
        async with http_server(port):
            await wait_for_tools(daemon, "mcp__remote__add")
        await daemon.say(ROOM, "1 + 2?")  # the server has just stopped
        assert await daemon.collector.final(ROOM) == ["The server is gone."]
        result = last_tool_result(fake_llm, 1)
        assert result.startswith("error: the MCP server 'remote' stopped during the call")
        with trio.fail_after(30):
            while "mcp__remote__add" in daemon.services.deps.tools.names:
                await trio.sleep(0.02)
        async with http_server(port):
            await wait_for_tools(daemon, "mcp__remote__add")
            fake_llm.script(calling("mcp__remote__add", a=2, b=2), Reply("4"))
            await daemon.say(ROOM, "2 + 2?")
            assert await daemon.collector.final(ROOM, 2) == ["The server is gone.", "4"]
    assert last_tool_result(fake_llm, 3) == "4"


async def test_a_server_that_never_answers_is_stopped_with_the_daemon(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    pidfile = tmp_path / "mute.pid"
    mute = {"command": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"]}
    config = mcp_config(tmp_path, fake_llm, mute=mute)
    config = config.model_copy(
        update={"shutdown": config.shutdown.model_copy(update={"grace_seconds": 0.5})}
    )
    async with open_daemon(config):
        with trio.fail_after(30):
            while not pidfile.exists() or not pidfile.read_text().strip():
                await trio.sleep(0.02)
    pid = int(pidfile.read_text())
    with trio.fail_after(10):
        while alive(pid):
            await trio.sleep(0.02)
