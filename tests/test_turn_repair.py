from __future__ import annotations

from ganglion.threads.repair import INTERRUPTED_RESULT, repair_tool_pairs
from ganglion.transcript import ChatMessage, ToolCall

CALL_A = ToolCall("a", "shell", '{"command": "ls"}')
CALL_B = ToolCall("b", "read", '{"path": "x"}')


def test_complete_history_is_unchanged() -> None:
    history = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", None, tool_calls=(CALL_A,)),
        ChatMessage("tool", "out", tool_call_id="a", name="shell"),
        ChatMessage("assistant", "done"),
    ]
    assert repair_tool_pairs(history) == history


def test_missing_results_are_filled_in_as_interrupted() -> None:
    history = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", None, tool_calls=(CALL_A, CALL_B)),
        ChatMessage("tool", "out", tool_call_id="a", name="shell"),
        ChatMessage("user", "again?"),
    ]
    repaired = repair_tool_pairs(history)
    assert repaired[3] == ChatMessage("tool", INTERRUPTED_RESULT, tool_call_id="b", name="read")
    assert repaired[4] == ChatMessage("user", "again?")


def test_trailing_open_call_is_closed() -> None:
    history = [ChatMessage("assistant", None, tool_calls=(CALL_A,))]
    assert repair_tool_pairs(history)[-1].tool_call_id == "a"


def test_orphan_tool_message_is_dropped() -> None:
    history = [ChatMessage("user", "hi"), ChatMessage("tool", "x", tool_call_id="zzz")]
    assert repair_tool_pairs(history) == [ChatMessage("user", "hi")]
