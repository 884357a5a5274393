"""The context window through the whole daemon: learned from the server, never exceeded,
and recovered from when the server refuses a request for its size anyway."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import trio

from ganglion.compaction import SUMMARY_INSTRUCTIONS
from ganglion.tokens import estimate_tokens
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, HTTPError, Reply, Step, offered_tools, open_fake_llm

WEB = "web_eeeeeeeeeeeeeeee"
LLAMACPP_PROPS = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2}


def _is_summary(body: dict[str, Any]) -> bool:
    return body["messages"][0]["content"] == SUMMARY_INSTRUCTIONS


def _answers(*steps: Step) -> Any:
    """A responder: summaries for compaction requests, `steps` in order for the rest,
    then "ok"."""
    planned = deque(steps)

    def respond(body: dict[str, Any]) -> Step:
        if _is_summary(body):
            return Reply("SUMMARY: earlier talk.")
        return planned.popleft() if planned else Reply("ok")

    return respond


def _request_tokens(body: dict[str, Any]) -> int:
    """A generous estimate of a request's size: its JSON at 3 bytes per token."""
    return estimate_tokens(json.dumps(body["messages"]) + json.dumps(body.get("tools") or []))


def _chats(fake: FakeLLM) -> list[dict[str, Any]]:
    return [body for body in fake.requests if not _is_summary(body)]


def _refusal(message: str) -> HTTPError:
    return HTTPError(400, json.dumps({"error": {"code": 400, "message": message}}))


async def test_the_served_window_is_learned_logged_and_never_exceeded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_fake_llm(responder=_answers()) as fake:
        fake.routes["/props"] = LLAMACPP_PROPS
        config = daemon_config(tmp_path, fake.base_url, llm={"context_window": 8192})
        async with open_daemon(config) as daemon:
            for index in range(12):
                await daemon.say(WEB, f"message {index}: " + "words and more words " * 60)
                await daemon.collector.final(WEB, index + 1)
            replies = await daemon.collector.final(WEB, 12)
    assert replies == ["ok"] * 12
    assert "context window for fake" in caplog.text and "2048 tokens" in caplog.text
    assert "llama.cpp /props: context per slot, 2 slot(s)" in caplog.text
    assert "llm.context_window is 8192 but" in caplog.text
    chats = _chats(fake)
    assert max(_request_tokens(body) for body in chats) <= 2048
    assert any(_is_summary(body) for body in fake.requests)  # it compacted on the way
    # A small window gets the compact tool schemas.
    shell = next(t for t in chats[0]["tools"] if t["function"]["name"] == "read_file")
    assert "\n" not in shell["function"]["description"]


REFUSALS = {
    "llama.cpp": "request (5210 tokens) exceeds the available context size (2048 tokens), "
    "try increasing it",
    "vLLM": "This model's maximum context length is 2048 tokens. However, you requested "
    "5710 tokens (5210 in the messages, 500 in the completion). Please reduce the length "
    "of the messages or completion.",
    "OpenAI": "This model's maximum context length is 2048 tokens. However, your messages "
    "resulted in 5210 tokens. Please reduce the length of the messages.",
    "LM Studio": "Trying to keep the first 5210 tokens when context the overflows. However, "
    "the model is loaded with context length of only 2048 tokens, which is not enough.",
    "no numbers": "the request exceeds the available context size, try increasing it",
}


@pytest.mark.parametrize("server", list(REFUSALS))
async def test_a_refusal_for_size_is_learned_from_and_retried_once(
    tmp_path: Path, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    history = [Reply("ok")] * 4
    async with open_fake_llm(responder=_answers(*history, _refusal(REFUSALS[server]))) as fake:
        config = daemon_config(tmp_path, fake.base_url, llm={"context_window": 16384})
        async with open_daemon(config) as daemon:
            for index in range(5):
                await daemon.say(WEB, f"part {index}: " + "a long paragraph " * 250)
                await daemon.collector.final(WEB, index + 1)
            replies = await daemon.collector.final(WEB, 5)
    assert replies == ["ok"] * 5  # the refused turn was answered on the retry
    chats = _chats(fake)
    refused, retried = chats[4], chats[5]
    assert _request_tokens(retried) < _request_tokens(refused)
    if server != "no numbers":
        # In the server's tokens (it counted 5,210 for the refused request), it fits.
        assert _request_tokens(retried) * 5210 / _request_tokens(refused) <= 2048 * 1.05
        assert "2048 tokens (learned from the server's refusal)" in caplog.text


async def test_a_request_still_too_large_fails_clearly_and_the_next_message_works(
    tmp_path: Path,
) -> None:
    refusal = _refusal(REFUSALS["llama.cpp"])
    async with open_fake_llm(responder=_answers(refusal, refusal, Reply("fine"))) as fake:
        config = daemon_config(tmp_path, fake.base_url)
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "hello")
            [failed] = await daemon.collector.final(WEB)
            await daemon.say(WEB, "and now?")
            replies = await daemon.collector.final(WEB, 2)
    assert failed.startswith("FAILED: ")
    assert "does not fit the model's context window" in failed
    assert "2,048 tokens" in failed and "/new" in failed
    assert replies[1] == "fine"


async def test_a_huge_paste_is_cut_the_owner_is_told_and_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    paste = "START of the log\n" + "0123456789 abcdefghij\n" * 3000 + "END of the log"
    async with open_fake_llm(responder=_answers()) as fake:
        fake.routes["/props"] = LLAMACPP_PROPS
        config = daemon_config(tmp_path, fake.base_url)
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, paste)
            notice = await daemon.collector.notice(WEB)
            await daemon.say(WEB, "what did it say?")
            replies = await daemon.collector.final(WEB, 2)
            info = await daemon.info(WEB)
    assert replies == ["ok", "ok"]
    assert "Your message is about" in notice and "2,048 tokens" in notice
    first, second = _chats(fake)
    sent = first["messages"][-1]["content"]
    assert sent.startswith("START of the log") and sent.endswith("END of the log")
    assert "characters cut here" in sent
    assert max(_request_tokens(first), _request_tokens(second)) <= 2048
    # Only what is sent is cut: the store keeps the paste whole (the second turn's room
    # came from summarising it, as the history since the summary shows).
    with sqlite3.connect(tmp_path / "conversation.db") as db:
        [(stored,)] = db.execute("SELECT content FROM messages ORDER BY id LIMIT 1").fetchall()
    assert stored == paste
    assert info.has_summary and info.messages == 2


async def test_a_window_too_small_for_the_instructions_says_so(tmp_path: Path) -> None:
    async with open_fake_llm(responder=_answers()) as fake:
        fake.routes["/props"] = {"default_generation_settings": {"n_ctx": 600}}
        config = daemon_config(tmp_path, fake.base_url)
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "/compact")
            compact = await daemon.collector.notice(WEB)
            await daemon.say(WEB, "hello")
            [failed] = await daemon.collector.final(WEB)
    assert compact.startswith("Nothing to compact: ")
    assert "The system prompt and tools alone take about" in compact and "of the 600" in compact
    assert "the instructions alone take about" in failed and "600 tokens" in failed
    assert fake.requests == []  # nothing was sent to fail


async def test_a_small_window_offers_core_tools_and_the_rest_on_request(tmp_path: Path) -> None:
    asked = Reply(tool_calls=(("more_tools", '{"names": ["cancel_reminder", "nope"]}'),))
    async with open_fake_llm(responder=_answers(asked, Reply("done"))) as fake:
        fake.routes["/props"] = LLAMACPP_PROPS
        config = daemon_config(tmp_path, fake.base_url)
        async with open_daemon(config) as daemon:
            await daemon.say(WEB, "cancel my reminder")
            assert await daemon.collector.final(WEB) == ["done"]
    first, second = (offered_tools(body) for body in _chats(fake))
    assert "more_tools" in first and "shell" in first and "cancel_reminder" not in first
    assert "cancel_reminder" in second
    result = _chats(fake)[1]["messages"][-1]
    assert result["role"] == "tool"
    assert result["content"] == "Offered from now on: cancel_reminder. Unknown: nope."
    assert all(_request_tokens(body) <= 2048 for body in _chats(fake))


async def test_the_window_is_asked_for_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_fake_llm(responder=_answers()) as fake:
        fake.routes["/props"] = LLAMACPP_PROPS
        async with open_daemon(daemon_config(tmp_path, fake.base_url)):
            with trio.fail_after(10):
                while "context window for fake" not in caplog.text:
                    await trio.sleep(0.01)
    assert fake.paths[:2] == ["GET /v1/models", "GET /props"]
    assert fake.requests == []  # no message was sent
