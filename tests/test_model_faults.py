"""The model fault matrix, end to end: each fault of the model server through a real turn
of the whole daemon. For each, the person sees a clear message (or the answer, where the
fault can be recovered from), the conversation answers its next message, another
conversation answering at the same time is not disturbed, and no actor restarts."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from ganglion.llm.completion import CUT_NOTE, MAX_ANSWER_CHARS
from ganglion.messages import FinalReply
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import (
    FakeLLM,
    Hang,
    HTTPError,
    MalformedSSE,
    Reply,
    Step,
    TextToolCall,
    Truncated,
    open_fake_llm,
)

A = "web_aaaaaaaaaaaaaaaa"
B = "web_bbbbbbbbbbbbbbbb"
TIMEOUTS = {"first_token": 5, "idle": 5, "total": 120}
OVERFLOW = json.dumps(
    {
        "error": {
            "message": "request (9000 tokens) exceeds the available context size "
            "(4096 tokens), try increasing it"
        }
    }
)


@dataclass(frozen=True)
class Case:
    steps: tuple[Step, ...]
    expect: str  # the start of the answer, or "FAILED: " and a part of the message
    attempts: int = 1
    tool_error: str | None = None  # what the model was told a failed tool call did
    extra: dict[str, Any] = field(default_factory=dict)


CASES = {
    "server error 500": Case((HTTPError(500),), "FAILED: The model server at http://127.0.0.1:"),
    "429 with Retry-After": Case(
        (HTTPError(429, retry_after=3), Reply("after the wait")), "after the wait", attempts=2
    ),
    "hang before the first byte": Case((Hang(),), "FAILED: The model at http://127.0.0.1:"),
    "stall mid-stream": Case(
        (Reply("some words then silence", chunk_size=5, stall_after=1),),
        "FAILED: The answer from the model server at http://127.0.0.1:",
    ),
    "truncated stream": Case(
        (Truncated(),), "FAILED: The answer from the model server at http://127.0.0.1:"
    ),
    "malformed SSE": Case(
        (MalformedSSE(),), "FAILED: The answer from the model server at http://127.0.0.1:"
    ),
    "invalid tool-call JSON": Case(
        (Reply(tool_calls=(("list_dir", '{"path": '),)), Reply("recovered")),
        "recovered",
        tool_error="error",
    ),
    "unknown tool": Case(
        (Reply(tool_calls=(("launch_rockets", "{}"),)), Reply("recovered")),
        "recovered",
        tool_error="unknown tool",
    ),
    "tool call written as text": Case(
        (TextToolCall("list_dir", {"path": "."}), Reply("listed")), "listed"
    ),
    "reply larger than any limit": Case(
        (Reply("y" * (MAX_ANSWER_CHARS + 50_000), chunk_size=100_000),), "yyyy"
    ),
    "context length exceeded": Case((HTTPError(400, OVERFLOW), Reply("fits now")), "fits now"),
}


def _last_user(body: dict[str, Any]) -> str:
    last = body["messages"][-1]
    return str(last["content"]) if last["role"] == "user" else ""


def _responder(steps: deque[Step], body: dict[str, Any]) -> Step:
    if _last_user(body) == "hello from B":
        return Reply("B is fine")
    return steps.popleft() if steps else Reply("fine again")


@pytest.mark.parametrize("name", list(CASES))
async def test_a_model_fault_is_told_clearly_and_disturbs_nothing_else(
    tmp_path: Path, name: str, idle_clock: trio.abc.Clock
) -> None:
    case = CASES[name]
    steps: deque[Step] = deque(case.steps)
    async with open_fake_llm(responder=partial(_responder, steps)) as fake:
        llm = {"timeouts": TIMEOUTS, "retries": {"attempts": case.attempts, "max_backoff": 5}}
        config = daemon_config(tmp_path, fake.base_url, llm=llm)
        async with open_daemon(config) as daemon:
            await daemon.say(A, "please do the thing")
            await daemon.say(B, "hello from B")
            [first] = await daemon.collector.final(A)
            assert await daemon.collector.final(B) == ["B is fine"]
            await daemon.say(A, "and again?")
            second = (await daemon.collector.final(A, 2))[1]
            restarts = daemon.services.threads.statistics().restarts
    assert first.startswith(case.expect), first
    assert second == "fine again"
    assert restarts == 0
    if case.tool_error is not None:
        results = [m for body in fake.requests for m in body["messages"] if m["role"] == "tool"]
        assert results and case.tool_error in results[0]["content"].lower()
    if name == "reply larger than any limit":
        [reply] = [e for e in daemon.collector.of(A, FinalReply)][:1]
        assert isinstance(reply, FinalReply) and reply.text.endswith(CUT_NOTE)
        assert len(reply.text) <= MAX_ANSWER_CHARS + len(CUT_NOTE)


async def test_connection_refused_is_told_and_the_server_coming_back_is_used(
    tmp_path: Path, idle_clock: trio.abc.Clock
) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeLLM(lambda body: Reply("back again"))
    config = daemon_config(tmp_path, f"http://127.0.0.1:{port}/v1")
    async with open_daemon(config) as daemon:
        await daemon.say(A, "anyone there?")
        [refused] = await daemon.collector.final(A)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_tcp, fake.handle, port, host="127.0.0.1"))
            await daemon.say(A, "and now?")
            answers = await daemon.collector.final(A, 2)
            nursery.cancel_scope.cancel()
    assert refused == (
        f"FAILED: Cannot reach the model server at http://127.0.0.1:{port}/v1: "
        "connection refused. Is the server running?"
    )
    assert answers[1] == "back again"
