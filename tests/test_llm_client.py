"""The model client against the scripted fake server: real HTTP on loopback.

Timed tests use `idle_clock` (a MockClock that jumps only when the run is idle), so
backoffs and time limits take no real time and elapsed virtual time is exact.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from pydantic import SecretStr

import ganglion.llm
from ganglion.config import EndpointConfig, LLMConfig, LLMTimeouts, RetryConfig
from ganglion.llm import (
    LLMClient,
    LLMError,
    LLMRequestRejected,
    LLMStreamError,
    LLMTimeout,
    LLMUnavailable,
    extract_text_tool_calls,
)
from ganglion.transcript import ChatMessage, ToolCall, Usage
from tests.support.fakellm import (
    FakeLLM,
    Hang,
    HTTPError,
    MalformedSSE,
    Reply,
    TextToolCall,
    Truncated,
    open_fake_llm,
)

HELLO = [ChatMessage("user", "hello")]
TIMEOUTS = LLMTimeouts(connect=5, first_token=30, idle=10, total=120)
RETRIES = RetryConfig(attempts=3, initial_backoff=1.0, max_backoff=20.0)
SHELL_TOOL = {"type": "function", "function": {"name": "shell", "parameters": {}}}


def client_for(*fakes: FakeLLM, **endpoint: Any) -> LLMClient:
    endpoints = [
        EndpointConfig(base_url=fake.base_url, model=f"m{i}", **endpoint)
        for i, fake in enumerate(fakes)
    ]
    return LLMClient(endpoints, timeouts=TIMEOUTS, retries=RETRIES)


class Collector:
    """An `on_text` callback that records the pieces and when they arrived."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.times: list[float] = []

    async def __call__(self, text: str) -> None:
        self.pieces.append(text)
        self.times.append(trio.current_time())


# --- streaming and the request ------------------------------------------------------


async def test_text_deltas_reach_on_text_in_order(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("Hello there, friend!", chunk_size=3))
    seen = Collector()
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, on_text=seen)
    assert seen.pieces == ["Hel", "lo ", "the", "re,", " fr", "ien", "d!"]
    assert completion.content == "Hello there, friend!"
    assert completion.finish_reason == "stop"


async def test_text_is_passed_on_as_it_arrives_not_at_the_end(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("aaaabbbbcccc", chunk_size=4, chunk_delay=2.0))
    seen = Collector()
    async with client_for(fake_llm) as client:
        await client.complete(HELLO, on_text=seen)
    gaps = [later - earlier for earlier, later in zip(seen.times, seen.times[1:], strict=False)]
    assert gaps == [pytest.approx(2.0), pytest.approx(2.0)]


async def test_the_request_streams_with_usage_and_names_the_endpoint_model(
    fake_llm: FakeLLM,
) -> None:
    async with client_for(fake_llm) as client:
        await client.complete(HELLO)
    assert fake_llm.requests == [
        {
            "model": "m0",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ]


async def test_tools_temperature_and_max_tokens_are_sent_when_given(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm) as client:
        await client.complete(HELLO, tools=[SHELL_TOOL], temperature=0.2, max_tokens=64)
    request = fake_llm.requests[0]
    assert request["tools"] == [SHELL_TOOL]
    assert (request["temperature"], request["max_tokens"]) == (0.2, 64)


async def test_an_empty_tool_list_is_left_out_of_the_request(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm) as client:
        await client.complete(HELLO, tools=[])
    assert "tools" not in fake_llm.requests[0]


async def test_history_with_tool_calls_is_sent_in_wire_form(fake_llm: FakeLLM) -> None:
    call = ToolCall("call_1", "shell", '{"command": "ls"}')
    history = [
        *HELLO,
        ChatMessage("assistant", None, tool_calls=(call,)),
        ChatMessage("tool", "a.txt", tool_call_id="call_1", name="shell"),
    ]
    async with client_for(fake_llm) as client:
        await client.complete(history)
    assert fake_llm.requests[0]["messages"] == [m.to_api() for m in history]


# --- what comes back ----------------------------------------------------------------


async def test_tool_call_deltas_are_assembled_across_chunks(fake_llm: FakeLLM) -> None:
    arguments = json.dumps({"command": "ls -la /tmp", "timeout": 5})
    fake_llm.script(Reply(tool_calls=(("shell", arguments), ("add", '{"a": 1, "b": 2}'))))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, tools=[SHELL_TOOL])
    assert completion.tool_calls == (
        ToolCall("call_0", "shell", arguments),
        ToolCall("call_1", "add", '{"a": 1, "b": 2}'),
    )
    assert completion.finish_reason == "tool_calls"
    assert completion.content == ""


async def test_invalid_json_in_tool_arguments_is_returned_as_received(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(tool_calls=(("shell", '{"command": "ls'),)))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, tools=[SHELL_TOOL])
    assert completion.tool_calls[0].arguments == '{"command": "ls'


async def test_usage_comes_from_the_usage_chunk(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a", usage=(100, 7)))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert completion.usage == Usage(100, 7)


async def test_no_usage_chunk_means_zero_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a", usage=None))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert completion.usage == Usage()


async def test_statistics_add_up_requests_and_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a", usage=(100, 7)), Reply("b", usage=(50, 3)))
    async with client_for(fake_llm) as client:
        await client.complete(HELLO)
        await client.complete(HELLO)
        stats = client.statistics()
    assert (stats.requests, stats.retries, stats.failures, stats.fallbacks_used) == (2, 0, 0, 0)
    assert stats.usage == Usage(150, 10)


async def test_the_completion_names_the_model_and_endpoint(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert (completion.model, completion.endpoint) == ("m0", fake_llm.base_url)


async def test_a_finish_reason_without_done_is_a_complete_answer(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("fine", send_done=False))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert (completion.content, completion.finish_reason) == ("fine", "stop")


async def test_a_connection_broken_after_the_finish_reason_still_answers(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.script(Reply("whole", send_done=False, ending="drop"))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert completion.content == "whole"


async def test_a_server_lingering_after_the_answer_is_not_waited_for(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("whole", ending="linger"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        completion = await client.complete(HELLO)
        waited = trio.current_time() - started
    assert completion.content == "whole"
    assert waited < TIMEOUTS.idle


async def test_a_server_that_ignores_stream_true_is_understood(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("all at once", ignore_stream=True, usage=(3, 4)))
    seen = Collector()
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, on_text=seen)
    assert seen.pieces == ["all at once"]
    assert (completion.content, completion.usage) == ("all at once", Usage(3, 4))


async def test_a_text_tool_call_comes_back_as_content_for_the_turn_to_read(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.script(TextToolCall("shell", {"command": "ls"}))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, tools=[SHELL_TOOL])
    assert completion.tool_calls == ()
    assert extract_text_tool_calls(completion.content, {"shell"}) == (
        ToolCall("call_text_0", "shell", '{"command": "ls"}'),
    )


# --- headers ------------------------------------------------------------------------


async def test_the_api_key_is_sent_as_a_bearer_token(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm, api_key=SecretStr("sk-test")) as client:
        await client.complete(HELLO)
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-test"


async def test_no_authorization_header_without_an_api_key(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm) as client:
        await client.complete(HELLO)
    assert "authorization" not in fake_llm.headers[0]


async def test_extra_endpoint_headers_are_sent(fake_llm: FakeLLM) -> None:
    async with client_for(fake_llm, headers={"X-Team": "me"}) as client:
        await client.complete(HELLO)
    assert fake_llm.headers[0]["x-team"] == "me"


# --- retries ------------------------------------------------------------------------


async def test_a_500_is_retried_then_succeeds(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(HTTPError(500), Reply("recovered"))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
        assert client.statistics().retries == 1
    assert completion.content == "recovered"


async def test_backoff_doubles_between_attempts_within_the_jitter(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(HTTPError(502), HTTPError(502), Reply("third time"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        await client.complete(HELLO)
        waited = trio.current_time() - started
    assert 0.8 * (1 + 2) <= waited <= 1.2 * (1 + 2)


async def test_429_retry_after_is_honoured(fake_llm: FakeLLM, idle_clock: trio.abc.Clock) -> None:
    fake_llm.script(HTTPError(429, retry_after=7), Reply("finally"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        completion = await client.complete(HELLO)
        waited = trio.current_time() - started
    assert completion.content == "finally"
    assert waited == pytest.approx(7)


async def test_retry_after_is_capped_at_max_backoff(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(HTTPError(429, retry_after=3600), Reply("finally"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        await client.complete(HELLO)
        waited = trio.current_time() - started
    assert waited == pytest.approx(RETRIES.max_backoff)


async def test_a_400_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(400, body='{"error": {"message": "bad request"}}'), Reply("no"))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert len(fake_llm.requests) == 1
    assert (caught.value.status, caught.value.detail) == (400, "bad request")


async def test_a_rejection_shows_the_status_but_not_the_server_text(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(422, body="Traceback (most recent call last): secret"))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert "422" in caught.value.user_message
    assert "Traceback" not in caught.value.user_message
    assert "Traceback" in str(caught.value)  # the log keeps it


async def test_a_long_server_message_is_truncated(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(400, body="x" * 10_000))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert len(str(caught.value)) < 400


async def test_persistent_5xx_becomes_unavailable_after_all_attempts(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(503)
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
        stats = client.statistics()
    assert len(fake_llm.requests) == RETRIES.attempts
    assert (stats.requests, stats.retries, stats.failures) == (3, 2, 1)
    assert caught.value.status == 503


async def test_persistent_429_says_rate_limited(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(429, retry_after=1)
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
    assert "rate-limiting" in caught.value.user_message


async def test_a_connection_refused_is_unavailable(idle_clock: trio.abc.Clock) -> None:
    async with open_fake_llm() as fake:
        closed_url = fake.base_url  # nothing listens there once the block is left
    endpoint = EndpointConfig(base_url=closed_url, model="m")
    async with LLMClient([endpoint], timeouts=TIMEOUTS, retries=RETRIES) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
        assert client.statistics().requests == RETRIES.attempts
    assert caught.value.user_message == (
        f"Cannot reach the model server at {closed_url}: connection refused. Is the server running?"
    )


# --- time limits --------------------------------------------------------------------


async def test_a_hang_hits_the_first_token_limit_and_is_retried(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Hang(), Reply("after the hang"))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        completion = await client.complete(HELLO)
        waited = trio.current_time() - started
    assert completion.content == "after the hang"
    assert TIMEOUTS.first_token + 0.8 <= waited <= TIMEOUTS.first_token + 1.2


async def test_hanging_every_time_raises_llm_timeout(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Hang()
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMTimeout):
            await client.complete(HELLO)
    assert len(fake_llm.requests) == RETRIES.attempts


async def test_a_slow_start_is_retried_and_then_times_out(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Reply("late", latency=TIMEOUTS.first_token * 2)
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMTimeout):
            await client.complete(HELLO)
    assert len(fake_llm.requests) == RETRIES.attempts


async def test_a_stall_after_text_hits_the_idle_limit_without_retry(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("slow words here", chunk_size=5, stall_after=1))
    async with client_for(fake_llm) as client:
        started = trio.current_time()
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO)
        assert trio.current_time() - started == pytest.approx(TIMEOUTS.idle)
    assert len(fake_llm.requests) == 1


async def test_slow_chunks_within_the_idle_limit_are_fine(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("abcdefgh", chunk_size=2, chunk_delay=TIMEOUTS.idle - 1))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO)
    assert completion.content == "abcdefgh"


async def test_a_stream_that_never_ends_hits_the_total_limit(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    timeouts = LLMTimeouts(first_token=30, idle=10, total=25)
    fake_llm.script(Reply("x" * 40, chunk_size=4, chunk_delay=9))  # 90 s in all
    endpoint = EndpointConfig(base_url=fake_llm.base_url)
    async with LLMClient([endpoint], timeouts=timeouts, retries=RETRIES) as client:
        started = trio.current_time()
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO, on_text=Collector())
        assert trio.current_time() - started == pytest.approx(timeouts.total)


async def test_the_time_on_text_takes_is_not_server_silence(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    async def slow_reader(text: str) -> None:
        await trio.sleep(TIMEOUTS.idle * 2)

    fake_llm.script(Reply("abcdefgh", chunk_size=4))
    async with client_for(fake_llm) as client:
        completion = await client.complete(HELLO, on_text=slow_reader)
    assert completion.content == "abcdefgh"


async def test_cancelling_complete_propagates_and_is_not_a_failure(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Hang())
    async with client_for(fake_llm) as client:
        with trio.move_on_after(5) as scope:
            await client.complete(HELLO)
        assert scope.cancelled_caught
        assert client.statistics().failures == 0


# --- broken streams -----------------------------------------------------------------


async def test_a_truncated_stream_is_a_stream_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Truncated("this answer is cut", after_chunks=2))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO)


async def test_a_failure_after_streamed_text_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(Truncated("this answer is cut", after_chunks=2), Reply("a second answer"))
    seen = Collector()
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMStreamError):
            await client.complete(HELLO, on_text=seen)
        assert client.statistics().retries == 0
    assert seen.pieces == ["this", " ans"]
    assert len(fake_llm.requests) == 1


async def test_malformed_sse_is_a_stream_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(MalformedSSE())
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMStreamError) as caught:
            await client.complete(HELLO)
    assert "oops" not in caught.value.user_message


# --- fallbacks ----------------------------------------------------------------------


async def test_the_fallback_endpoint_answers_when_the_primary_is_exhausted(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(502)
    async with open_fake_llm() as backup:
        backup.script(Reply("from the backup"))
        async with client_for(fake_llm, backup) as client:
            completion = await client.complete(HELLO)
            stats = client.statistics()
        assert backup.requests[0]["model"] == "m1"
    assert (completion.content, completion.endpoint) == ("from the backup", backup.base_url)
    assert len(fake_llm.requests) == RETRIES.attempts
    assert (stats.fallbacks_used, stats.failures) == (1, 0)


async def test_fallbacks_are_tried_in_order(fake_llm: FakeLLM, idle_clock: trio.abc.Clock) -> None:
    fake_llm.responder = lambda body: HTTPError(500)
    async with open_fake_llm() as second, open_fake_llm() as third:
        second.responder = lambda body: Hang()
        third.script(Reply("third"))
        async with client_for(fake_llm, second, third) as client:
            completion = await client.complete(HELLO)
            assert client.statistics().fallbacks_used == 2
        assert len(second.requests) == RETRIES.attempts
    assert completion.content == "third"


async def test_a_401_moves_on_to_the_fallback_without_retrying(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(401, body='{"error": "bad key"}'))
    async with open_fake_llm() as backup, client_for(fake_llm, backup) as client:
        completion = await client.complete(HELLO)
    assert completion.content == "ok"
    assert len(fake_llm.requests) == 1


async def test_a_400_does_not_fall_back(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(400))
    async with open_fake_llm() as backup:
        async with client_for(fake_llm, backup) as client:
            with pytest.raises(LLMRequestRejected):
                await client.complete(HELLO)
        assert backup.requests == []


async def test_tokens_then_failure_do_not_fall_back(fake_llm: FakeLLM) -> None:
    fake_llm.script(Truncated("partial words", after_chunks=1))
    async with open_fake_llm() as backup:
        async with client_for(fake_llm, backup) as client:
            with pytest.raises(LLMStreamError):
                await client.complete(HELLO, on_text=Collector())
        assert backup.requests == []


async def test_every_endpoint_failing_raises_the_last_error(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Hang()
    async with open_fake_llm() as backup:
        backup.responder = lambda body: HTTPError(503)
        async with client_for(fake_llm, backup) as client:
            with pytest.raises(LLMUnavailable):
                await client.complete(HELLO)
            assert client.statistics().failures == 1


async def test_from_config_puts_the_fallbacks_after_the_primary(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(500)
    async with open_fake_llm() as backup:
        config = LLMConfig(
            base_url=fake_llm.base_url,
            model="main",
            fallbacks=[EndpointConfig(base_url=backup.base_url, model="spare")],
            retries=RetryConfig(attempts=1),
        )
        async with LLMClient.from_config(config) as client:
            completion = await client.complete(HELLO)
        assert backup.requests[0]["model"] == "spare"
    assert completion.endpoint == backup.base_url


# --- concurrency and the package ----------------------------------------------------


async def test_one_client_serves_concurrent_completions(fake_llm: FakeLLM) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("one", gate=gate), Reply("two", gate=gate))
    results: list[str] = []
    async with client_for(fake_llm) as client:

        async def ask() -> None:
            results.append((await client.complete(HELLO)).content)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            nursery.start_soon(ask)
            await fake_llm.wait_for_requests(2)
            assert fake_llm.in_flight == 2
            gate.set()
    assert sorted(results) == ["one", "two"]


def test_every_error_has_a_short_user_message() -> None:
    errors: list[LLMError] = [
        LLMUnavailable("http://x: HTTP 503: <html>", status=503),
        LLMRequestRejected(400, "raw body"),
        LLMTimeout("http://x: no first token"),
        LLMStreamError("malformed JSON: '{'"),
    ]
    for error in errors:
        assert 0 < len(error.user_message) < 120
        assert "http://x" not in error.user_message and "raw body" not in error.user_message


def test_the_package_exports_what_all_lists() -> None:
    names = set(ganglion.llm.__all__)
    assert {
        "Completion",
        "LLMClient",
        "LLMError",
        "LLMRequestRejected",
        "LLMStatistics",
        "LLMStreamError",
        "LLMTimeout",
        "LLMUnavailable",
        "extract_text_tool_calls",
    } <= names
    assert all(hasattr(ganglion.llm, name) for name in names)
    public = {
        name
        for name, value in vars(ganglion.llm).items()
        if not name.startswith("_") and not isinstance(value, type(ganglion))
    }
    assert public - {"annotations"} == names


# --- messages the owner can act on ----------------------------------------------------


async def test_a_wrong_api_key_says_to_check_it_and_never_shows_it(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(401, body='{"error": {"message": "bad key sk-secret-123"}}'))
    endpoint = EndpointConfig(base_url=fake_llm.base_url, model="m", api_key="sk-secret-123")
    async with LLMClient([endpoint], timeouts=TIMEOUTS, retries=RETRIES) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert caught.value.user_message == (
        f"The model server at {fake_llm.base_url} refused the API key (HTTP 401); "
        "check llm.api_key."
    )
    assert caught.value.kind == "auth"


async def test_a_forbidden_answer_says_to_check_the_key(fake_llm: FakeLLM) -> None:
    fake_llm.script(HTTPError(403))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert "(HTTP 403); check llm.api_key" in caught.value.user_message


async def test_an_unknown_model_lists_the_models_the_server_has(fake_llm: FakeLLM) -> None:
    fake_llm.routes["/v1/models"] = {"data": [{"id": "llama3"}, {"id": "qwen2.5"}]}
    fake_llm.script(HTTPError(404, body='{"error": {"message": "model not found"}}'))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert caught.value.user_message == (
        f'The model server at {fake_llm.base_url} has no model "m0" (HTTP 404); '
        "it has: llama3, qwen2.5."
    )
    assert caught.value.kind == "model_not_found"


async def test_a_404_without_a_model_list_points_at_the_base_url(fake_llm: FakeLLM) -> None:
    fake_llm.routes["/v1/models"] = "not a list"
    fake_llm.script(HTTPError(404))
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMRequestRejected) as caught:
            await client.complete(HELLO)
    assert 'answered 404 for model "m0"' in caught.value.user_message
    assert "it usually ends in /v1" in caught.value.user_message


async def test_a_server_error_says_the_server_answered_not_that_it_is_unreachable(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: HTTPError(502, body="<html>bad gateway</html>")
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
        errors = client.statistics().errors
    assert caught.value.user_message == (
        f"The model server at {fake_llm.base_url} answered with an error (HTTP 502); "
        "see the model server's log."
    )
    assert errors == {"server_error": 1}


async def test_a_timeout_names_the_endpoint_and_the_limit(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.responder = lambda body: Hang()
    async with client_for(fake_llm) as client:
        with pytest.raises(LLMTimeout) as caught:
            await client.complete(HELLO)
    assert caught.value.user_message == (
        f"The model at {fake_llm.base_url} took too long to answer "
        "(no first token within 30 s). Please try again."
    )


async def test_credentials_in_the_base_url_are_never_shown(idle_clock: trio.abc.Clock) -> None:
    async with open_fake_llm() as fake:
        closed = fake.base_url
    secret_url = closed.replace("http://", "http://user:hunter2@") + "?key=hunter2"
    endpoint = EndpointConfig(base_url=secret_url, model="m")
    async with LLMClient([endpoint], timeouts=TIMEOUTS, retries=RETRIES) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(HELLO)
    assert "hunter2" not in caught.value.user_message
    assert closed in caught.value.user_message


async def test_statistics_count_answers_latency_and_errors_by_kind(
    fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("one", latency=2.0), HTTPError(400))
    async with client_for(fake_llm) as client:
        await client.complete(HELLO)
        with pytest.raises(LLMRequestRejected):
            await client.complete(HELLO)
        stats = client.statistics()
    assert (stats.answered, stats.failures) == (1, 1)
    assert stats.latency_seconds == pytest.approx(2.0)
    assert stats.errors == {"rejected": 1}
