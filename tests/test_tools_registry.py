from __future__ import annotations

import json

import trio

from ganglion.tools import ToolContext, ToolRegistry, tool
from ganglion.transcript import ToolCall

CONTEXT = ToolContext(thread_id="web_00000000", turn_id="t1", interface="web")


@tool
async def add(ctx: ToolContext, a: int, b: int = 0) -> str:
    """Add two numbers."""
    return str(a + b)


@tool(timeout=1.0)
async def stall(ctx: ToolContext) -> str:
    """Never returns."""
    await trio.sleep_forever()
    raise AssertionError


@tool
async def explode(ctx: ToolContext) -> str:
    """Raises."""
    raise RuntimeError("kaboom")


REGISTRY = ToolRegistry([add, stall, explode])


def test_schema_is_generated_from_the_signature() -> None:
    schema = add.schema()["function"]
    assert schema["name"] == "add"
    assert schema["description"] == "Add two numbers."
    parameters = schema["parameters"]
    assert parameters["required"] == ["a"]
    assert parameters["properties"]["a"]["type"] == "integer"
    assert parameters["additionalProperties"] is False


async def test_valid_call_runs_the_tool() -> None:
    result = await REGISTRY.call(ToolCall("c1", "add", json.dumps({"a": 2, "b": 3})), CONTEXT)
    assert (result.ok, result.content, result.call_id) == (True, "5", "c1")


async def test_invalid_json_is_reported_to_the_model() -> None:
    result = await REGISTRY.call(ToolCall("c1", "add", '{"a": 2'), CONTEXT)
    assert not result.ok
    assert result.content.startswith("error: the arguments are not valid JSON")


async def test_wrong_type_and_missing_argument_are_reported() -> None:
    result = await REGISTRY.call(ToolCall("c1", "add", '{"a": "two"}'), CONTEXT)
    assert not result.ok and "a: " in result.content
    result = await REGISTRY.call(ToolCall("c1", "add", "{}"), CONTEXT)
    assert result.content == "error: invalid arguments: a: required argument is missing"


async def test_unknown_tool_lists_the_available_ones() -> None:
    result = await REGISTRY.call(ToolCall("c1", "nope", "{}"), CONTEXT)
    assert not result.ok
    assert "unknown tool 'nope'" in result.content and "add" in result.content


async def test_a_tool_that_hangs_times_out(autojump_clock: trio.abc.Clock) -> None:
    result = await REGISTRY.call(ToolCall("c1", "stall", "{}"), CONTEXT)
    assert not result.ok and "did not finish within 1 s" in result.content


async def test_a_tool_that_raises_is_a_failed_result() -> None:
    result = await REGISTRY.call(ToolCall("c1", "explode", "{}"), CONTEXT)
    assert not result.ok and "RuntimeError: kaboom" in result.content


def test_schemas_are_built_once_and_follow_registrations() -> None:
    registry = ToolRegistry([add])
    first = registry.schemas()
    assert registry.schemas() is first  # cached between requests
    registry.register(explode)
    assert [s["function"]["name"] for s in registry.schemas()] == ["add", "explode"]
    registry.unregister("add")
    assert [s["function"]["name"] for s in registry.schemas()] == ["explode"]


def test_compact_schemas_keep_only_what_a_call_needs() -> None:
    from ganglion.tools import tool

    @tool(core=True)
    async def greet(ctx: ToolContext, name: str, times: int | None = None) -> str:
        """Greet someone (politely). Say hello to `name`: as often as `times` says."""
        return "hi"

    @tool(brief="Wave.")
    async def wave(ctx: ToolContext) -> str:
        """Wave at everyone in the room, for a long time."""
        return "waved"

    registry = ToolRegistry([greet, wave])
    full, compact = registry.schemas(), registry.schemas(compact=True)
    assert "title" not in json.dumps(full)  # the field titles only repeat the names
    assert full[0]["function"]["description"].startswith("Greet someone (politely).")
    greet_compact = compact[0]["function"]
    assert greet_compact["description"] == "Greet someone."
    assert greet_compact["parameters"] == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "times": {"type": "integer"}},
        "required": ["name"],
    }
    assert compact[1]["function"]["description"] == "Wave."
    assert registry.core_names == {"greet"}
    assert [s["function"]["name"] for s in registry.schemas(only=frozenset({"wave"}))] == ["wave"]
