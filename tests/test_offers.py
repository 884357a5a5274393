"""Which tools a request offers by the room its window leaves (threads.offers)."""

from __future__ import annotations

from pathlib import Path

from ganglion.config import Config
from ganglion.redact import Redactor
from ganglion.threads.offers import MORE_TOOLS, SMALL_WINDOW, tool_offers, unlock
from ganglion.tools import ToolRegistry
from ganglion.tools.builtin import builtin_tools
from ganglion.transcript import ToolCall
from ganglion_actors import reserve


def _tools(tmp_path: Path) -> ToolRegistry:
    return ToolRegistry(builtin_tools(Config(data_dir=tmp_path), reserve("r"), Redactor()))


def _names(schemas: list[dict[str, object]] | None) -> set[str]:
    return {s["function"]["name"] for s in schemas or []}  # type: ignore[index]


def test_large_windows_try_full_schemas_first_small_ones_never(tmp_path: Path) -> None:
    tools = _tools(tmp_path)
    large = tool_offers(tools, 32768, frozenset())
    assert [o.name for o in large][:2] == ["every tool", "every tool, compact"]
    small = tool_offers(tools, SMALL_WINDOW, frozenset())
    assert small[0].schemas == tools.schemas(compact=True)
    core = small[1]
    assert _names(core.schemas) == tools.core_names | {MORE_TOOLS}
    described = core.schemas[-1]["function"]["description"]  # type: ignore[index]
    assert "cancel_reminder" in described and "shell" not in described
    assert small[-1].schemas is None


def test_asked_for_tools_are_offered_and_come_first_when_room_is_short(tmp_path: Path) -> None:
    tools = _tools(tmp_path)
    offers = tool_offers(tools, 2048, frozenset({"cancel_reminder", "not_a_tool"}))
    assert "cancel_reminder" in _names(offers[1].schemas)
    assert _names(offers[2].schemas) == {"cancel_reminder"}


def test_more_tools_reads_what_the_model_asks_for(tmp_path: Path) -> None:
    tools = _tools(tmp_path)
    found, result = unlock(ToolCall("c", MORE_TOOLS, '{"names": ["forget", "x"]}'), tools)
    assert found == {"forget"} and result == "Offered from now on: forget. Unknown: x."
    found, _ = unlock(ToolCall("c", MORE_TOOLS, '{"names": "forget"}'), tools)
    assert found == {"forget"}
    found, _ = unlock(ToolCall("c", MORE_TOOLS, "not json"), tools)
    assert found == tools.names  # asked for nothing readable: all of them
