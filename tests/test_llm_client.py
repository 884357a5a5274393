"""The model client against the scripted fake server: real HTTP on loopback."""

from __future__ import annotations

import json

import pytest
import trio
from pydantic import SecretStr

from ganglion.chat import ChatMessage, ToolCall, Usage
from ganglion.config import EndpointConfig, LLMTimeouts, RetryConfig
from ganglion.llm import (
    LLMClient,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
)
from tests.fakellm import (
    FakeLLM,
    Hang,
    HTTPError,
    MalformedSSE,
    Reply,
    Truncated,
    open_fake_llm,
)

HELLO = [ChatMessage("user", "hello")]
TIMEOUTS = LLMTimeouts(connect=5, first_token=30, idle=10, total=120)
RETRIES = RetryConfig(attempts=3, initial_backoff=1.0, max_backoff=20.0)


def client_for(*fakes: FakeLLM, **endpoint: object) -> LLMClient:
    endpoints = [
        EndpointConfig(base_url=f.base_url, model=f"m{i}", **endpoint) for i, f in enumerate(fakes)
    ]  # type: ignore[arg-type]
    return LLMClient(endpoints, timeouts=TIMEOUTS, retries=RETRIES)


async def test_text_streams_to_on_text_in_order(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("Hello there, friend!", chunk_size=3))
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, on_text=on_text)
    assert len(pieces) > 3
    assert "".join(pieces) == completion.content == "Hello there, friend!"
    assert completion.finish_reason == "stop"
    request = fake_llm.requests[0]
    assert request["stream"] is True and request["model"] == "m0"
    assert request["messages"] == [{"role": "user", "content": "hello"}]


async def test_tool_call_deltas_are_assembled_across_chunks(fake_llm: FakeLLM) -> None:
    arguments = json.dumps({"command": "ls -la /tmp", "timeout": 5})
    fake_llm.script(Reply(tool_calls=(("shell", arguments), ("add", '{"a": 1}'))))
    async with client_for(fake_llm) as client:
        completion = await client.complete(
            HELLO, tools=[{"type": "function", "function": {"name": "shell"}}]
        )
    assert completion.tool_calls == (
        ToolCall("call_0", "shell", arguments),
        ToolCall("call_1", "add", '{"a": 1}'),
    )
    assert completion.finish_reason == "tool_calls"
    assert fake_llm.requests[0]["tools"][0]["function"]["name"] == "shell"


async def test_usage_is_accounted(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a", usage=(100, 7)), Reply("b", usage=(50, 3)))
    async with client_for(fake_llm) as client:
        first = await client.complete(HELLO)
        await client.complete(HELLO)
        assert first.usage == Usage(100, 7)
        assert client.statistics().usage == Usage(150, 10)


async def test_api_key_and_extra_headers_are_sent(fake_llm: FakeLLM) -> None:
    async with client_for(
        fake_llm, api_key=SecretStr("sk-test"), headers={"X-Team": "me"}
    ) as client:
        await client.complete(HELLO)
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-test"
    assert fake_llm.headers[0]["x-team"] == "me"


async def test_a_500_is_retried_then_succeeds(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(HTTPError(500), Reply("recovered"))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
        assert completion.content == "recovered"
        assert client.statistics().retries == 1


async def test_429_retry_after_is_honoured(fake_llm: FakeLLM, idle_clock: trio.abc.Clock) -> None:
    fake_llm.script(HTTPError(429, retry_after=7), Reply("finally"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        completion = await client.complete(HELLO)
        waited = trio.current_time() - started
    assert completion.content == "finally"
    assert 7 <= waited < 8


async def test_a_400_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(400, body='{"error": "bad request"}'), Reply("never"))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert caught.value.status == 400
    assert len(fake_llm.requests) == 1
    assert "HTTP 400" in caught.value.user_message
    assert "bad request" not in caught.value.user_message


async def test_persistent_5xx_becomes_unavailable_after_the_attempts(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(503)
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMUnavailable):
            await client.complete(HELLO)
    assert len(fake_llm.requests) == RETRIES.attempts


async def test_a_hang_hits_the_first_token_timeout_and_is_retried(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Hang(), Reply("after the hang"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        completion = await client.complete(HELLO)
        assert trio.current_time() - started >= TIMEOUTS.first_token
    assert completion.content == "after the hang"


async def test_hanging_every_time_raises_llm_timeout(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Hang()
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMTimeout):
            await client.complete(HELLO)


async def test_an_idle_gap_after_text_is_a_stream_error_without_retry(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("slow words here", chunk_size=5, stall_after=1))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO)
        assert trio.current_time() - started == pytest.approx(TIMEOUTS.idle, abs=1)
    assert len(fake_llm.requests) == 1


async def test_a_slow_start_is_retried_and_then_times_out(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Reply("late", latency=TIMEOUTS.first_token * 2)
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMTimeout):
            await client.complete(HELLO)
    assert len(fake_llm.requests) == RETRIES.attempts


async def test_a_truncated_stream_is_a_stream_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Truncated("this answer is cut", after_chunks=2))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO)
    assert len(fake_llm.requests) == 1  # text was streamed: no silent retry


async def test_malformed_sse_is_a_stream_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(MalformedSSE())
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO)


async def test_the_fallback_endpoint_is_used_when_the_primary_fails(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(502)
    async with open_fake_llm() as backup:
        backup.script(Reply("from the backup"))
        async with client_for(fake_llm, backup) as client:
            completion = await client.complete(HELLO)
            assert client.statistics().fallbacks_used == 1
    assert completion.content == "from the backup"
    assert backup.requests[0]["model"] == "m1"


async def test_a_connection_refused_is_unavailable(idle_clock: trio.abc.Clock) -> None:
    endpoint = EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m")
    async with LLMClient([endpoint], timeouts=TIMEOUTS, retries=RETRIES) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
    assert "not reachable" in caught.value.user_message


async def test_a_non_streaming_json_answer_is_accepted(fake_llm: FakeLLM) -> None:
    from ganglion.llm.client import _apply_whole, _Assembly

    assembly = _Assembly()
    _apply_whole(
        {"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}], "model": "x"},
        assembly,
    )
    assert assembly.completion("e").content == "whole"
