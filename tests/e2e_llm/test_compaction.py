"""Compaction through a real llama.cpp server: on `/compact`, and by itself past a small
threshold; the conversation goes on after it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e_llm.live_model import open_ganglion, stored_messages, summary, turn_states
from tests.support.llamacpp import LlamaCpp

pytestmark = pytest.mark.slow

WEB = "web_cccccccccccccccc"
SAYINGS = ("My cat is called Tom.", "My dog is called Rex.", "What are my pets called?")


async def test_compact_summarises_through_the_server_and_the_conversation_goes_on(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    async with open_ganglion(tmp_path, llamacpp, compaction={"keep_recent_messages": 2}) as live:
        for text in SAYINGS[:2]:
            assert (await live.turn(WEB, text))[-1]["type"] == "reply"
        assert summary(live.data_dir, WEB) is None
        notice = (await live.turn(WEB, "/compact"))[-1]
        assert notice["text"] == "Compacted: 2 older message(s) summarised, 2 kept verbatim."
        assert summary(live.data_dir, WEB)
        frames = await live.turn(WEB, SAYINGS[2])
    assert frames[-1]["type"] == "reply", frames[-1]
    assert [role for role, _ in stored_messages(live.data_dir, WEB)] == ["user", "assistant"] * 3
    assert turn_states(live.data_dir, WEB) == ["done"] * 3


async def test_a_small_threshold_compacts_by_itself_after_a_reply(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    compaction = {"threshold_tokens": 256, "keep_recent_messages": 2}
    async with open_ganglion(tmp_path, llamacpp, compaction=compaction) as live:
        assert (await live.turn(WEB, SAYINGS[0]))[-1]["type"] == "reply"
        assert summary(live.data_dir, WEB) is None  # nothing older than the last two yet
        assert (await live.turn(WEB, SAYINGS[1]))[-1]["type"] == "reply"
        with trio.fail_after(60):  # the summary is asked for right after the reply
            while not summary(live.data_dir, WEB):
                await trio.sleep(0.1)
        frames = await live.turn(WEB, SAYINGS[2])
    assert frames[-1]["type"] == "reply", frames[-1]
    assert "compacted 2 message(s) into a summary" in live.output()
    assert turn_states(live.data_dir, WEB) == ["done"] * 3
