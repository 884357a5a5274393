"""Tool calls that a local model wrote as text instead of `tool_calls` (pure).

Some models served by Ollama or llama.cpp answer a tool request with a JSON object in the
content: `{"name": "shell", "arguments": {...}}` (or "parameters"), a list of them, maybe
inside a ``` fence or `<tool_call>` tags. When the *whole* content is such a call to a
tool we offered, we treat it as a real call; anything else stays ordinary text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from ganglion.chat import ToolCall

__all__ = ["extract_text_tool_calls"]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_TAG = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _candidates(content: str) -> list[Any] | None:
    text = content.strip()
    fence = _FENCE.match(text)
    if fence:
        text = fence.group(1)
    tagged = _TAG.findall(text)
    blobs = tagged if tagged and not _TAG.sub("", text).strip() else [text]
    found: list[Any] = []
    for blob in blobs:
        try:
            value = json.loads(blob)
        except json.JSONDecodeError:
            return None
        found.extend(value if isinstance(value, list) else [value])
    return found


def extract_text_tool_calls(content: str, known_tools: Collection[str]) -> tuple[ToolCall, ...]:
    if not content or not known_tools or content.lstrip()[:1] not in ("{", "[", "`", "<"):
        return ()
    candidates = _candidates(content)
    if not candidates:
        return ()
    calls = []
    for n, item in enumerate(candidates):
        if not isinstance(item, dict) or item.get("name") not in known_tools:
            return ()
        arguments = item.get("arguments", item.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(ToolCall(f"call_text_{n}", item["name"], text))
    return tuple(calls)
