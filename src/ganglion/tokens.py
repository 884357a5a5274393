"""Token estimates without a tokenizer.

No tokenizer can be downloaded on the machines Ganglion runs on, and models differ anyway,
so this is a deliberately conservative estimate: one token per 3 bytes of UTF-8 (real
BPE tokenizers average 3.5-4.5 bytes per token on English and code; fewer on other
scripts, which also take more bytes per character), plus a fixed overhead per message
for the role and framing. Over-estimating only makes compaction start a little early;
under-estimating could overflow the context window.
"""

from __future__ import annotations

from ganglion.chat import ChatMessage

__all__ = ["MESSAGE_OVERHEAD", "estimate_message_tokens", "estimate_tokens"]

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD = 6


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def estimate_message_tokens(message: ChatMessage) -> int:
    total = MESSAGE_OVERHEAD + estimate_tokens(message.content or "")
    for call in message.tool_calls:
        total += MESSAGE_OVERHEAD + estimate_tokens(call.name) + estimate_tokens(call.arguments)
    return total
