"""Turns cut off mid-stream against a real llama.cpp server: by the daemon's own shutdown
(answered after the restart), and by the server dying (a clear failure, then the next
turn is answered by the restarted server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_llm.live_model import (
    next_of,
    open_ganglion,
    stored_messages,
    turn_states,
    wait_for_answer,
)
from tests.support.llamacpp import LlamaCpp
from tests.support.web import hello, send

pytestmark = pytest.mark.slow

WEB = "web_dddddddddddddddd"
LONG = "Tell me a long story about a dragon."
# At least 1.2 s of generation (SmolLM2-135M makes at most about 130 tokens/s here, and
# this prompt never ends before the cap): the stream is still running well after the
# test cuts it at the first token, or the shutdown grace has passed.
LONG_ANSWER_TOKENS = 160


async def test_a_turn_cut_by_shutdown_mid_stream_is_answered_after_the_restart(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    async with open_ganglion(
        tmp_path, llamacpp, max_tokens=LONG_ANSWER_TOKENS, shutdown={"grace_seconds": 0.2}
    ) as live:
        async with live.socket() as ws:
            await hello(ws, WEB)
            await send(ws, LONG)
            await next_of(ws, "delta")
        assert await live.stop() == 0  # SIGTERM mid-stream; the grace is too short for it
        assert turn_states(live.data_dir, WEB) == ["running"]
        assert stored_messages(live.data_dir, WEB) == [("user", LONG)]
        await live.start()
        answer = await wait_for_answer(live, WEB)
    assert answer["type"] == "reply", answer
    assert answer["text"].strip()
    assert stored_messages(live.data_dir, WEB) == [("user", LONG), ("assistant", answer["text"])]
    assert turn_states(live.data_dir, WEB) == ["done"]


async def test_a_server_killed_mid_stream_fails_the_turn_and_the_next_one_is_answered(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    base_url = llamacpp.base_url
    async with open_ganglion(tmp_path, llamacpp, max_tokens=LONG_ANSWER_TOKENS) as live:
        async with live.socket() as ws:
            await hello(ws, WEB)
            await send(ws, LONG)
            await next_of(ws, "delta")
            await llamacpp.kill()
            failed = await next_of(ws, "reply", "failed")
        assert failed["type"] == "failed", failed
        assert failed["message"] == (
            f"The answer from the model server at {base_url} was cut off or garbled. "
            "Please try again."
        )
        await llamacpp.start()
        assert llamacpp.base_url == base_url
        frames = await live.turn(WEB, "Are you back?")
    assert frames[-1]["type"] == "reply", frames[-1]
    assert turn_states(live.data_dir, WEB) == ["failed", "done"]
    assert [role for role, _ in stored_messages(live.data_dir, WEB)] == [
        "user",
        "user",
        "assistant",
    ]
