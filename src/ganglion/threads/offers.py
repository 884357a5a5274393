"""Which tool schemas a request offers, by the room the context window leaves (pure).

The schemas of every tool can take more than a small local model's whole window
(eighteen built-in tools are about 1,900 tokens in full). So a request offers, in order
of preference, the first of these that fits (`tool_offers`):

1. every tool in full (windows above `SMALL_WINDOW` only);
2. every tool in compact form (one-line descriptions, bare parameter types);
3. the core tools in compact form, plus `more_tools`, with which the model asks for the
   others by name: they are offered from the next round of the same turn on;
4. only the tools the model asked for with `more_tools`;
5. no tools at all.

`more_tools` is answered by the turn itself (`unlock`), never by the tool registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ganglion.tools import ToolRegistry
from ganglion.transcript import ToolCall

__all__ = ["MORE_TOOLS", "SMALL_WINDOW", "Offer", "tool_offers", "unlock"]

# With a window this small or smaller, tools are never offered in full.
SMALL_WINDOW = 4096
MORE_TOOLS = "more_tools"


@dataclass(frozen=True, slots=True)
class Offer:
    """The schemas one request offers (None: no tools), and what to call it in the log."""

    schemas: list[dict[str, Any]] | None
    name: str


def _more_tools_schema(hidden: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": MORE_TOOLS,
            "description": "Ask for more tools (from the next step on): " + ", ".join(hidden),
            "parameters": {
                "type": "object",
                "properties": {"names": {"type": "array", "items": {"type": "string"}}},
                "required": ["names"],
            },
        },
    }


def tool_offers(tools: ToolRegistry, window: int, unlocked: frozenset[str]) -> list[Offer]:
    """The offers to try, best first, for a request to a model with `window` tokens;
    `unlocked` are the tools the model asked for earlier in this turn."""
    offers: list[Offer] = []
    if window > SMALL_WINDOW:
        offers.append(Offer(tools.schemas(), "every tool"))
    offers.append(Offer(tools.schemas(compact=True), "every tool, compact"))
    offered = tools.core_names | (unlocked & tools.names)
    hidden = sorted(tools.names - offered)
    if hidden and offered:
        schemas = [*tools.schemas(compact=True, only=offered), _more_tools_schema(hidden)]
        offers.append(Offer(schemas, f"{len(offered)} core tools and {MORE_TOOLS}"))
    if unlocked & tools.names:
        # What the model just asked for matters more than the core set.
        asked = unlocked & tools.names
        offers.append(Offer(tools.schemas(compact=True, only=asked), "the tools it asked for"))
    offers.append(Offer(None, "no tools"))
    return offers


def unlock(call: ToolCall, tools: ToolRegistry) -> tuple[frozenset[str], str]:
    """The tools a `more_tools` call asks for, and the result to give the model."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        arguments = {}
    names = arguments.get("names") if isinstance(arguments, dict) else None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        names = sorted(tools.names)
    wanted = {name for name in names if isinstance(name, str)}
    found = frozenset(wanted & tools.names)
    unknown = sorted(wanted - found)
    result = f"Offered from now on: {', '.join(sorted(found))}." if found else "No tools added."
    if unknown:
        result += f" Unknown: {', '.join(unknown)}."
    return found, result
