"""The fake model server itself, spoken to with plain httpx (not our client)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.support.fakellm import FakeLLM, HTTPError, Reply, TextToolCall, Truncated

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


async def post(fake: FakeLLM, body: dict[str, Any]) -> httpx.Response:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http:
            return await http.post(f"{fake.base_url}/chat/completions", json=body)


def events(response: httpx.Response) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


async def test_the_default_answer_is_ok_as_sse(fake_llm: FakeLLM) -> None:
    response = await post(fake_llm, STREAM)
    assert response.headers["content-type"] == "text/event-stream"
    chunks = events(response)
    assert chunks[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert text == "ok"
    assert chunks[-2]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


async def test_tool_call_arguments_are_split_across_chunks(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(tool_calls=(("shell", '{"command": "ls -la"}'),)))
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in events(await post(fake_llm, STREAM))[:-1]
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert deltas[0]["function"]["name"] == "shell" and deltas[0]["id"] == "call_0"
    assert len(deltas) > 2
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"command": "ls -la"}'


async def test_a_non_streaming_request_gets_one_json_body(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("whole"))
    body = (await post(fake_llm, BODY)).json()
    assert body["choices"][0]["message"]["content"] == "whole"
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_requests_and_headers_are_recorded_in_order(fake_llm: FakeLLM) -> None:
    await post(fake_llm, {**BODY, "n": 1})
    await post(fake_llm, {**BODY, "n": 2})
    assert [r["n"] for r in fake_llm.requests] == [1, 2]
    assert fake_llm.headers[0]["content-type"] == "application/json"


async def test_the_script_comes_before_the_responder(fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Reply("from the responder")
    fake_llm.script(Reply("scripted"))
    first = (await post(fake_llm, BODY)).json()
    second = (await post(fake_llm, BODY)).json()
    assert first["choices"][0]["message"]["content"] == "scripted"
    assert second["choices"][0]["message"]["content"] == "from the responder"


async def test_an_http_error_carries_its_status_and_retry_after(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(429, retry_after=3))
    response = await post(fake_llm, STREAM)
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


async def test_a_truncated_stream_breaks_the_http_body(fake_llm: FakeLLM) -> None:
    fake_llm.script(Truncated("abcdefgh", after_chunks=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await post(fake_llm, STREAM)


async def test_a_text_tool_call_is_plain_content(fake_llm: FakeLLM) -> None:
    fake_llm.script(TextToolCall("add", {"a": 1}))
    body = (await post(fake_llm, BODY)).json()
    message = body["choices"][0]["message"]
    assert json.loads(message["content"]) == {"name": "add", "arguments": {"a": 1}}
    assert "tool_calls" not in message


async def test_a_gate_holds_the_answer_until_set(fake_llm: FakeLLM) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("held", gate=gate))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(post, fake_llm, BODY)
        await fake_llm.wait_for_requests(1)
        assert fake_llm.in_flight == 1
        gate.set()
    assert fake_llm.in_flight == 0


async def test_unknown_paths_are_404(fake_llm: FakeLLM) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{fake_llm.base_url}/nothing")
    assert response.status_code == 404
