from __future__ import annotations

import json

from ganglion.chat import ToolCall
from ganglion.llm import SSEParser, extract_text_tool_calls


def feed(lines: list[str]) -> list[str]:
    parser = SSEParser()
    events = [e for line in lines if (e := parser.feed_line(line)) is not None]
    last = parser.flush()
    return events + ([last] if last is not None else [])


def test_sse_events_end_at_blank_lines() -> None:
    assert feed(["data: a", "", "data: b", ""]) == ["a", "b"]


def test_sse_multi_line_data_is_joined() -> None:
    assert feed(["data: one", "data: two", ""]) == ["one\ntwo"]


def test_sse_comments_and_other_fields_are_ignored() -> None:
    assert feed([": keep-alive", "event: message", "id: 3", "data: x", ""]) == ["x"]


def test_sse_crlf_and_missing_final_blank_line() -> None:
    assert feed(["data: a\r", "\r", "data:b"]) == ["a", "b"]


KNOWN = {"shell", "add"}


def test_text_tool_call_object() -> None:
    content = '{"name": "shell", "arguments": {"command": "ls"}}'
    assert extract_text_tool_calls(content, KNOWN) == (
        ToolCall("call_text_0", "shell", json.dumps({"command": "ls"})),
    )


def test_text_tool_call_with_parameters_in_a_fence() -> None:
    content = '```json\n{"name": "add", "parameters": {"a": 1}}\n```'
    assert extract_text_tool_calls(content, KNOWN)[0].arguments == '{"a": 1}'


def test_text_tool_calls_in_tags_and_lists() -> None:
    tagged = '<tool_call>{"name": "add", "arguments": {}}</tool_call>\n<tool_call>{"name": "shell", "arguments": {}}</tool_call>'
    assert [c.name for c in extract_text_tool_calls(tagged, KNOWN)] == ["add", "shell"]
    listed = '[{"name": "add", "arguments": {}}]'
    assert len(extract_text_tool_calls(listed, KNOWN)) == 1


def test_ordinary_text_and_unknown_tools_are_not_calls() -> None:
    assert extract_text_tool_calls("Sure, here you go.", KNOWN) == ()
    assert extract_text_tool_calls('{"name": "rm_rf", "arguments": {}}', KNOWN) == ()
    assert extract_text_tool_calls('{"answer": 42}', KNOWN) == ()
    assert extract_text_tool_calls('{"name": "add"} and then some text', KNOWN) == ()
