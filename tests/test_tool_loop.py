"""The model -> tools -> model loop, with a trivial tool and the fake model server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ganglion.messages import ToolActivity
from ganglion.tokens import estimate_tokens
from ganglion.tools import ToolContext, tool
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, TextToolCall, offered_tools

WEB = "web_cccccccccccccccc"
calls: list[tuple[int, int, str]] = []


@tool
async def add(ctx: ToolContext, a: int, b: int = 0) -> str:
    """Add two integers."""
    calls.append((a, b, ctx.thread_id))
    return str(a + b)


def tool_results(request: dict[str, object]) -> list[dict[str, object]]:
    return [m for m in request["messages"] if m["role"] == "tool"]  # type: ignore[attr-defined,index]


async def test_a_tool_call_runs_and_its_result_goes_back_to_the_model(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    calls.clear()
    fake_llm.script(Reply(tool_calls=(("add", '{"a": 2, "b": 40}'),)), Reply("The answer is 42."))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        daemon.services.deps.tools.register(add)
        await daemon.say(WEB, "what is 2 + 40?")
        assert await daemon.collector.final(WEB) == ["The answer is 42."]
        activity = [e for e in daemon.collector.of(WEB, ToolActivity)]
    assert calls == [(2, 40, WEB)]
    assert [(a.tool, a.phase, a.ok) for a in activity] == [
        ("add", "start", True),
        ("add", "end", True),
    ]  # type: ignore[attr-defined]
    assert "add" in {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    second = fake_llm.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "add",
        "arguments": '{"a": 2, "b": 40}',
    }
    assert second[-1] == {"role": "tool", "content": "42", "tool_call_id": "call_0", "name": "add"}
    with sqlite3.connect(tmp_path / "conversation.db") as conn:
        rows = conn.execute("SELECT role, meta FROM messages ORDER BY id").fetchall()
    assert [r for r, _ in rows] == ["user", "assistant", "tool", "assistant"]
    audit = json.loads(rows[2][1])
    assert audit["tool"] == "add" and audit["ok"] is True and "duration_ms" in audit


async def test_invalid_json_arguments_are_reported_and_the_model_corrects_itself(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        Reply(tool_calls=(("add", '{"a": 2, "b": '),)),
        Reply(tool_calls=(("add", '{"a": "two"}'),)),
        Reply(tool_calls=(("nope", "{}"),)),
        Reply(tool_calls=(("add", '{"a": 2}'),)),
        Reply("done"),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        daemon.services.deps.tools.register(add)
        await daemon.say(WEB, "add")
        assert await daemon.collector.final(WEB) == ["done"]
    results = [m["content"] for m in tool_results(fake_llm.requests[-1])]
    assert results[0].startswith("error: the arguments are not valid JSON")  # type: ignore[union-attr]
    assert results[1].startswith("error: invalid arguments: a:")  # type: ignore[union-attr]
    assert results[2].startswith("error: unknown tool 'nope'")  # type: ignore[union-attr]
    assert results[3] == "2"


async def test_a_tool_call_written_as_text_is_executed(tmp_path: Path, fake_llm: FakeLLM) -> None:
    calls.clear()
    fake_llm.script(TextToolCall("add", {"a": 1, "b": 1}), Reply("two"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        daemon.services.deps.tools.register(add)
        await daemon.say(WEB, "1+1")
        assert await daemon.collector.final(WEB) == ["two"]
    assert calls == [(1, 1, WEB)]
    assistant = fake_llm.requests[1]["messages"][-2]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["function"]["name"] == "add"


async def test_the_tool_loop_stops_after_max_tool_rounds(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: (
        Reply(tool_calls=(("add", '{"a": 1}'),)) if body.get("tools") else Reply("giving up")
    )
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"max_tool_rounds": 3})
    async with open_daemon(config) as daemon:
        daemon.services.deps.tools.register(add)
        await daemon.say(WEB, "loop forever")
        assert await daemon.collector.final(WEB) == ["giving up"]
    assert len(fake_llm.requests) == 4
    last = fake_llm.requests[-1]
    assert "tools" not in last
    assert "used all the tool calls" in last["messages"][-1]["content"]


async def test_the_tool_schemas_count_towards_the_prompt_size(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    off = {name: {"enabled": False} for name in ("files", "shell", "memory", "reminders")}
    async with open_daemon(daemon_config(tmp_path / "a", fake_llm.base_url, tools=off)) as bare:
        without = (await bare.info(WEB)).estimated_tokens
    async with open_daemon(daemon_config(tmp_path / "b", fake_llm.base_url)) as daemon:
        schemas = daemon.services.deps.tools.schemas()
        with_tools = (await daemon.info(WEB)).estimated_tokens
    assert with_tools - without == estimate_tokens(json.dumps(schemas)) > 1000


@pytest.mark.parametrize(
    ("group", "tool_name"),
    [
        ("files", "read_file"),
        ("shell", "shell"),
        ("memory", "remember"),
        ("reminders", "set_reminder"),
    ],
)
async def test_each_tool_group_can_be_turned_off(
    tmp_path: Path, fake_llm: FakeLLM, group: str, tool_name: str
) -> None:
    fake_llm.script(Reply("ok"), Reply("ok"))
    config = daemon_config(tmp_path, fake_llm.base_url, tools={group: {"enabled": False}})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "hi")
        assert await daemon.collector.final(WEB) == ["ok"]
    offered = offered_tools(fake_llm.requests[0])
    assert tool_name not in offered and len(offered) > 2
