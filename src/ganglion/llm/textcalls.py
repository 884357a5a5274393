"""Tool calls that a local model wrote as text instead of `tool_calls` (pure, no I/O).

Some models served by Ollama or llama.cpp answer a tool request with JSON in the content:

    {"name": "shell", "arguments": {"command": "ls"}}          also "parameters"
    [{"name": "add", "arguments": {"a": 1}}, ...]              several calls
    {"type": "function", "function": {"name": ..., "arguments": ...}}
    ```json ... ```  or  <tool_call>...</tool_call> (one or more) around any of these

We treat the content as calls only when *all* of it is such JSON and every call names a
tool we offered; an object with other keys (a tool's schema, an answer that happens to be
JSON) or any prose around it leaves the content as ordinary text. Ids are generated as
`call_text_<n>`; arguments are passed on as JSON text, unchecked, like native calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from ganglion.transcript import ToolCall

__all__ = ["extract_text_tool_calls"]

_FENCE = re.compile(r"^```(?:json)?[ \t]*\n?(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_CALL_KEYS = frozenset({"name", "arguments", "parameters", "type", "id"})


def extract_text_tool_calls(content: str, known_tools: Collection[str]) -> tuple[ToolCall, ...]:
    """The tool calls written as the whole of `content`, or () when it is ordinary text."""
    if not known_tools or content.lstrip()[:1] not in ("{", "[", "`", "<"):
        return ()
    calls: list[ToolCall] = []
    for n, item in enumerate(_json_values(content) or ()):
        call = _as_call(item, f"call_text_{n}", known_tools)
        if call is None:
            return ()
        calls.append(call)
    return tuple(calls)


def _json_values(content: str) -> list[Any] | None:
    """The JSON values the content consists of (lists flattened), or None."""
    text = content.strip()
    if fence := _FENCE.match(text):
        text = fence.group(1).strip()
    blobs = _TAG.findall(text)
    if not blobs or _TAG.sub("", text).strip():
        blobs = [text]
    values: list[Any] = []
    for blob in blobs:
        try:
            value = json.loads(blob)
        except json.JSONDecodeError:
            return None
        values.extend(value if isinstance(value, list) else [value])
    return values


def _as_call(item: Any, call_id: str, known_tools: Collection[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if set(item) <= {"type", "id", "function"} and isinstance(item.get("function"), dict):
        item = item["function"]  # the OpenAI wire shape, written out as text
    name = item.get("name")
    if not set(item) <= _CALL_KEYS or not isinstance(name, str) or name not in known_tools:
        return None
    arguments = item.get("arguments", item.get("parameters"))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        return ToolCall(call_id, name, arguments)
    if isinstance(arguments, dict):
        return ToolCall(call_id, name, json.dumps(arguments))
    return None
