"""The context window against a real llama.cpp server with a small per-slot context
(1,024 tokens) and a configuration that promises far more (8,192, the usual mistake):
the window is learned and logged, a conversation that grows past it keeps answering, a
single oversized message gets a clear answer, and the server's own refusal is read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ganglion.config import EndpointConfig, LLMTimeouts, RetryConfig
from ganglion.llm import LLMClient, LLMContextExceeded
from ganglion.transcript import ChatMessage
from tests.e2e_llm.live_model import open_ganglion, stored_messages, summary, turn_states
from tests.support.llamacpp import LlamaCpp, open_llamacpp

pytestmark = pytest.mark.slow

WEB = "web_dddddddddddddddd"
SLOT = 1024
PARAGRAPH = (
    "I keep a small garden behind the house, with tomatoes along the south wall, beans "
    "climbing the fence, and a row of herbs by the kitchen door that I water each evening. "
)


@pytest.fixture
async def small(server_python: Path, tmp_path: Path) -> AsyncIterator[LlamaCpp]:
    async with open_llamacpp(
        tmp_path / "llamacpp", python=server_python, slot_context=SLOT, parallel=2
    ) as server:
        yield server


async def test_a_conversation_growing_past_the_window_keeps_answering(
    tmp_path: Path, small: LlamaCpp
) -> None:
    llm = {"context_window": 8192, "max_tokens": 24}
    async with open_ganglion(tmp_path, small, llm=llm) as live:
        for index in range(5):
            frames = await live.turn(WEB, f"Note {index}: " + PARAGRAPH * 2)
            assert frames[-1]["type"] == "reply", frames[-1]
        output = live.output()
    assert (
        f"context window for smollm2-135m at {small.base_url}: {SLOT} tokens (llama.cpp" in output
    )
    assert "llm.context_window is 8192 but" in output
    assert "exceeds the available context size" not in output  # never sent to fail
    assert summary(live.data_dir, WEB)  # it compacted on the way
    assert turn_states(live.data_dir, WEB) == ["done"] * 5


async def test_one_oversized_message_gets_a_clear_answer_and_the_next_works(
    tmp_path: Path, small: LlamaCpp
) -> None:
    async with open_ganglion(tmp_path, small, llm={"max_tokens": 24}) as live:
        frames = await live.turn(WEB, "START " + PARAGRAPH * 60 + " END")
        notices = [frame["text"] for frame in frames if frame["type"] == "notice"]
        assert frames[-1]["type"] == "reply", frames[-1]
        after = await live.turn(WEB, "Thanks. And the herbs?")
    assert any("Your message is about" in text and f"{SLOT:,} tokens" in text for text in notices)
    assert after[-1]["type"] == "reply", after[-1]
    stored = stored_messages(live.data_dir, WEB)
    assert stored[0][1] is not None and stored[0][1].endswith(" END")  # kept whole
    assert turn_states(live.data_dir, WEB) == ["done", "done"]


async def test_the_servers_refusal_is_read_with_its_numbers(small: LlamaCpp) -> None:
    endpoint = EndpointConfig(base_url=small.base_url, model="smollm2-135m")
    client = LLMClient(
        [endpoint], timeouts=LLMTimeouts(), retries=RetryConfig(attempts=1), context_window=8192
    )
    async with client:
        with pytest.raises(LLMContextExceeded) as refused:
            await client.complete([ChatMessage("user", PARAGRAPH * 40)], max_tokens=8)
        learned = (await client.window()).limit
    assert refused.value.limit == SLOT
    assert refused.value.prompt_tokens is not None and refused.value.prompt_tokens > SLOT
    assert learned == SLOT
