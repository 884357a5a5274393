"""Token estimates without a tokenizer.

No tokenizer can be downloaded on the machines Ganglion runs on, and models differ anyway,
so this is a deliberately conservative estimate: one token per 3 bytes of UTF-8, plus a
fixed overhead per message and per tool call for the role, ids and framing.

Why bytes and why 3: real BPE tokenizers average 3.5-4.5 bytes per token on English prose
and code, so 3 over-counts by 15-50 %. Text in scripts that take several bytes per
character (Cyrillic, CJK, emoji) also takes more tokens per character, and counting bytes
follows that where counting characters would badly under-count. Over-estimating only makes
compaction start a little early; under-estimating could overflow the context window.

The estimate is additive and deterministic, and a message never costs less than the bytes
of the transcript `ganglion.compaction.render_for_summary` makes of it (with its separator)
divided by `BYTES_PER_TOKEN`: the overheads below cover the transcript's prefixes. That is
what lets the compaction planner promise that a chunk within its budget renders without
truncation; `tests/test_compaction.py` checks it over random messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ganglion.transcript import ChatMessage

__all__ = [
    "BYTES_PER_TOKEN",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "TOOL_CALL_OVERHEAD",
    "estimate_message_tokens",
    "estimate_request_tokens",
    "estimate_schema_tokens",
    "estimate_tokens",
]

BYTES_PER_TOKEN = 3
# Chat templates spend about 4 tokens per message on role markers; 8 leaves room for
# models with heavier templates and for the transcript prefix ("assistant: ").
MESSAGE_OVERHEAD = 8
# A tool call is sent as a JSON object with an id, a type and a function name; 10 tokens
# also covers the transcript's "\nassistant called tool …()" framing.
TOOL_CALL_OVERHEAD = 10
# An image part: vision models take a fixed number of tokens per tile; a picture scaled
# to 1,568 px (`ganglion.images`) costs about 1,600 in the hosted ones, less locally.
IMAGE_TOKENS = 1600


def estimate_tokens(text: str) -> int:
    """At least as many tokens as `text` is likely to take: ceil(UTF-8 bytes / 3)."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def estimate_message_tokens(message: ChatMessage) -> int:
    """The estimated cost of `message` in a prompt: its content (with the note on its
    attachments), its images, each tool call (id, name and arguments), a tool result's
    name and call id, plus the fixed overheads."""
    total = MESSAGE_OVERHEAD + estimate_tokens(message.text_for_model() or "")
    total += IMAGE_TOKENS * len(message.images)
    total += estimate_tokens(message.name or "") + estimate_tokens(message.tool_call_id or "")
    for call in message.tool_calls:
        total += TOOL_CALL_OVERHEAD + estimate_tokens(call.id)
        total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    return total


def estimate_schema_tokens(tools: Sequence[Mapping[str, Any]] | None) -> int:
    """The estimated cost of offering `tools` (OpenAI function schemas) in a request: the
    bytes of their JSON list, as `json.dumps` writes it, by the rule of `estimate_tokens`.
    Each schema's size is remembered by the schema object (the tool registry hands out
    the same ones, never changed: `ToolRegistry.schemas`), so a request does not encode
    its schemas again to be measured."""
    if not tools:
        return 0
    size = 2 + 2 * (len(tools) - 1)  # the brackets, and ", " between items
    for schema in tools:
        known = _SCHEMA_BYTES.get(id(schema))
        if known is None or known[0] is not schema:
            if len(_SCHEMA_BYTES) >= _SCHEMA_CACHE:
                _SCHEMA_BYTES.clear()
            known = (schema, len(json.dumps(schema).encode("utf-8")))
            _SCHEMA_BYTES[id(schema)] = known
        size += known[1]
    return -(-size // BYTES_PER_TOKEN)


# A schema's JSON size by the schema's id (the schema kept, so the id stays its own).
_SCHEMA_BYTES: dict[int, tuple[Mapping[str, Any], int]] = {}
_SCHEMA_CACHE = 4096


def estimate_request_tokens(
    messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
) -> int:
    """The estimated prompt size of a request: its messages and its tool schemas."""
    return sum(estimate_message_tokens(m) for m in messages) + estimate_schema_tokens(tools)
