"""Repairing a history whatever cut a turn short (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from ganglion.transcript import ChatMessage, ToolCall

__all__ = ["INTERRUPTED_RESULT", "repair_tool_pairs"]

INTERRUPTED_RESULT = "error: this tool call was interrupted before it returned a result"


def repair_tool_pairs(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Make the history valid for the API whatever cut a turn short.

    Every assistant message with `tool_calls` must be followed by one `tool` message per
    call id: results missing because the daemon was killed mid-tool are filled in as
    interrupted; tool messages whose call is unknown are dropped.
    """
    repaired: list[ChatMessage] = []
    waiting: dict[str, ToolCall] = {}

    def close_open_calls() -> None:
        for call in waiting.values():
            repaired.append(
                ChatMessage("tool", INTERRUPTED_RESULT, tool_call_id=call.id, name=call.name)
            )
        waiting.clear()

    for message in messages:
        if message.role == "tool":
            if message.tool_call_id in waiting:
                del waiting[message.tool_call_id]
                repaired.append(message)
            continue
        close_open_calls()
        repaired.append(message)
        if message.role == "assistant":
            waiting = {call.id: call for call in message.tool_calls}
    close_open_calls()
    return repaired
