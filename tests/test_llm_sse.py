"""The pure parts of the model client: the SSE parser and tool calls written as text."""

from __future__ import annotations

import json

import pytest

from ganglion.llm import extract_text_tool_calls
from ganglion.llm.sse import SSEParser, is_done
from ganglion.transcript import ToolCall


def parse(*chunks: bytes) -> list[str]:
    parser = SSEParser()
    events = [data for chunk in chunks for data in parser.feed(chunk)]
    return events + parser.close()


# --- SSE ----------------------------------------------------------------------------


def test_sse_events_end_at_blank_lines() -> None:
    assert parse(b"data: a\n\ndata: b\n\n") == ["a", "b"]


def test_sse_an_event_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == ["a"]


def test_sse_multi_line_data_is_joined_with_newlines() -> None:
    assert parse(b"data: one\ndata: two\n\n") == ["one\ntwo"]


def test_sse_comments_are_ignored() -> None:
    assert parse(b": keep-alive\n\n: ping\ndata: x\n\n") == ["x"]


def test_sse_other_fields_are_ignored() -> None:
    assert parse(b"event: message\nid: 3\nretry: 10\ndata: x\n\n") == ["x"]


def test_sse_only_one_leading_space_is_dropped() -> None:
    assert parse(b"data:x\n\ndata:  y\n\n") == ["x", " y"]


def test_sse_crlf_line_endings() -> None:
    assert parse(b"data: a\r\n\r\ndata: b\r\n\r\n") == ["a", "b"]


def test_sse_lone_cr_line_endings() -> None:
    assert parse(b"data: a\r\rdata: b\r\r") == ["a", "b"]


def test_sse_a_crlf_split_across_chunks_is_one_line_ending() -> None:
    assert parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == ["a", "b"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_sse_events_split_across_network_chunks_at_any_byte(size: int) -> None:
    body = 'data: {"content": "héllo ☃"}\r\n\r\n: ping\r\ndata: [DONE]\r\n\r\n'.encode()
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert parse(*chunks) == ['{"content": "héllo ☃"}', "[DONE]"]


def test_sse_a_last_event_without_its_blank_line_is_still_returned() -> None:
    assert parse(b"data: a\n\ndata: b") == ["a", "b"]


def test_sse_a_leading_byte_order_mark_is_dropped() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\n") == ["a"]


def test_sse_done_marker() -> None:
    assert is_done("[DONE]") and is_done(" [DONE] ")
    assert not is_done('{"choices": []}')


# --- tool calls written as text -----------------------------------------------------

KNOWN = {"shell", "add"}


def test_text_call_object_with_arguments() -> None:
    content = '{"name": "shell", "arguments": {"command": "ls"}}'
    assert extract_text_tool_calls(content, KNOWN) == (
        ToolCall("call_text_0", "shell", json.dumps({"command": "ls"})),
    )


def test_text_call_with_parameters_instead_of_arguments() -> None:
    content = '{"name": "add", "parameters": {"a": 1, "b": 2}}'
    assert extract_text_tool_calls(content, KNOWN)[0].arguments == '{"a": 1, "b": 2}'


def test_text_call_in_a_json_fence() -> None:
    content = '```json\n{"name": "add", "arguments": {"a": 1}}\n```'
    assert extract_text_tool_calls(content, KNOWN)[0].name == "add"


def test_text_call_in_a_plain_fence() -> None:
    content = '```\n{"name": "add", "arguments": {"a": 1}}\n```'
    assert extract_text_tool_calls(content, KNOWN)[0].name == "add"


def test_text_calls_in_tool_call_tags() -> None:
    content = (
        '<tool_call>\n{"name": "add", "arguments": {}}\n</tool_call>\n'
        '<tool_call>{"name": "shell", "arguments": {"command": "pwd"}}</tool_call>'
    )
    calls = extract_text_tool_calls(content, KNOWN)
    assert [(c.id, c.name) for c in calls] == [("call_text_0", "add"), ("call_text_1", "shell")]


def test_text_calls_as_a_json_list() -> None:
    content = '[{"name": "add", "arguments": {"a": 1}}, {"name": "shell", "arguments": {}}]'
    assert [c.name for c in extract_text_tool_calls(content, KNOWN)] == ["add", "shell"]


def test_text_call_with_arguments_already_as_a_string_keeps_them() -> None:
    content = '{"name": "shell", "arguments": "{\\"command\\": \\"ls\\"}"}'
    assert extract_text_tool_calls(content, KNOWN)[0].arguments == '{"command": "ls"}'


def test_text_call_without_arguments_gets_an_empty_object() -> None:
    assert extract_text_tool_calls('{"name": "shell"}', KNOWN)[0].arguments == "{}"


def test_text_call_surrounded_by_whitespace() -> None:
    assert len(extract_text_tool_calls('\n  {"name": "add", "arguments": {}}  \n', KNOWN)) == 1


def test_ordinary_text_is_not_a_call() -> None:
    assert extract_text_tool_calls("Sure, here you go.", KNOWN) == ()


def test_an_unknown_tool_name_is_not_a_call() -> None:
    assert extract_text_tool_calls('{"name": "rm_rf", "arguments": {}}', KNOWN) == ()


def test_a_list_with_one_unknown_tool_is_not_a_call() -> None:
    content = '[{"name": "add", "arguments": {}}, {"name": "rm_rf", "arguments": {}}]'
    assert extract_text_tool_calls(content, KNOWN) == ()


def test_json_that_is_not_a_call_is_text() -> None:
    assert extract_text_tool_calls('{"answer": 42}', KNOWN) == ()
    assert extract_text_tool_calls('{"name": "add", "value": 3}', KNOWN) == ()
    assert extract_text_tool_calls("[1, 2, 3]", KNOWN) == ()


def test_a_call_with_prose_around_it_is_text() -> None:
    assert extract_text_tool_calls('I will call {"name": "add", "arguments": {}}', KNOWN) == ()
    assert extract_text_tool_calls('{"name": "add", "arguments": {}} and then', KNOWN) == ()


def test_broken_json_is_text() -> None:
    assert extract_text_tool_calls('{"name": "add", "arguments": {', KNOWN) == ()


def test_no_known_tools_means_no_calls() -> None:
    assert extract_text_tool_calls('{"name": "add", "arguments": {}}', ()) == ()


def test_a_long_event_in_many_small_chunks_comes_out_whole() -> None:
    payload = "x" * 2_000_000
    body = f"data: {payload}\r\n\r\ndata: [DONE]\r\n\r\n".encode()
    parser = SSEParser()
    events = [e for i in range(0, len(body), 997) for e in parser.feed(body[i : i + 997])]
    assert events == [payload, "[DONE]"]
