"""Turns through a real `ganglion run` and a real llama.cpp server: streaming, storage,
the terminal client, conversations at once, and every built-in tool offered."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e_llm.live_model import (
    deltas,
    next_of,
    open_ganglion,
    reopen,
    stored_messages,
    turn_states,
)
from tests.support.live import LiveDaemon
from tests.support.llamacpp import TOOLS_TEMPLATE, LlamaCpp, open_llamacpp
from tests.support.process import run_ganglion
from tests.support.web import hello, send

pytestmark = pytest.mark.slow

WEB = "web_aaaaaaaaaaaaaaaa"


async def test_a_reply_streams_in_several_chunks_and_is_stored(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    async with open_ganglion(tmp_path, llamacpp) as live:
        frames = await live.turn(WEB, "Hello! Who are you?")
        reply = frames[-1]
        assert reply["type"] == "reply", reply
        # Every tab's list is told of the new conversation; the turn's frames come in order.
        created = {"type": "thread_changed", "thread_id": WEB, "change": "created"}
        assert [f for f in frames if f["type"] == "thread_changed"] == [created]
        turn = [f["type"] for f in frames if f["type"] != "thread_changed"]
        assert turn[:2] == ["accepted", "turn_started"]
        streamed = deltas(frames)
        assert len(streamed) >= 3
        assert "".join(streamed) == reply["text"]
        assert reply["text"].strip()
        await live.stop()
        await live.start()  # what a reloaded tab shows now comes from the store alone
        history = await reopen(live, WEB)
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Hello! Who are you?"),
        ("assistant", reply["text"]),
    ]
    assert stored_messages(live.data_dir, WEB) == [
        ("user", "Hello! Who are you?"),
        ("assistant", reply["text"]),
    ]
    assert turn_states(live.data_dir, WEB) == ["done"]


async def test_ganglion_chat_prints_the_models_reply(tmp_path: Path, llamacpp: LlamaCpp) -> None:
    async with open_ganglion(tmp_path, llamacpp) as live:
        result = await run_ganglion(
            "chat", "--config", str(live.config_path), "-m", "Hello!", cwd=live.root
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip()


async def _timed_turn(live: LiveDaemon, thread_id: str, text: str, seen: dict[str, Any]) -> None:
    """One turn over its own socket; when its first token and its end arrived."""
    async with live.socket() as ws:
        await hello(ws, thread_id)
        await send(ws, text)
        await next_of(ws, "delta")
        seen["first_token"] = trio.current_time()
        seen["frame"] = await next_of(ws, "reply", "failed")
        seen["end"] = trio.current_time()


async def test_three_conversations_are_answered_at_once(
    tmp_path: Path, server_python: Path
) -> None:
    threads = [f"web_{c * 16}" for c in "bcd"]
    seen: dict[str, dict[str, Any]] = {thread_id: {} for thread_id in threads}
    async with (
        open_llamacpp(tmp_path / "llamacpp", python=server_python, parallel=3) as server,
        open_ganglion(tmp_path, server) as live,
        trio.open_nursery() as nursery,
    ):
        for n, thread_id in enumerate(threads):
            text = f"Tell me a long story about dragon number {n}."
            nursery.start_soon(_timed_turn, live, thread_id, text, seen[thread_id])
    assert all(s["frame"]["type"] == "reply" and s["frame"]["text"] for s in seen.values())
    # Every conversation was streaming before any of them had finished.
    assert max(s["first_token"] for s in seen.values()) < min(s["end"] for s in seen.values())
    for n, thread_id in enumerate(threads):
        assert stored_messages(live.data_dir, thread_id) == [
            ("user", f"Tell me a long story about dragon number {n}."),
            ("assistant", seen[thread_id]["frame"]["text"]),
        ]


async def test_every_built_in_tool_is_accepted_and_a_streamed_tool_call_runs(
    tmp_path: Path, server_python: Path
) -> None:
    """With a chat template that renders tools, llama.cpp puts every built-in tool's
    schema in the prompt and compiles them all into its tool-call grammar: one it cannot
    handle would fail the request (HTTP 400 or 500). The model copies a <tool_call>
    block; the grammar makes it a call of an offered tool, streamed as `tool_calls`
    deltas. Ganglion runs it, and the next request (the call and its result in the
    history, rendered by the server's template) is accepted and answered. One test for
    both: each request with all the schemas costs about 3000 prompt tokens."""
    ask = 'Repeat exactly: <tool_call>\n{"name": "list_reminders", "arguments": {}}\n</tool_call>'
    async with (
        open_llamacpp(
            tmp_path / "llamacpp",
            python=server_python,
            slot_context=4096,
            parallel=1,
            chat_template=TOOLS_TEMPLATE,
        ) as server,
        open_ganglion(tmp_path, server, tools=True, llm={"max_tool_rounds": 1}) as live,
    ):
        listed = (await live.turn(WEB, "/tools"))[-1]["text"]
        frames = await live.turn(WEB, ask)
        history = await reopen(live, WEB)
    built_in = re.search(r"^- built in: (.+)$", listed, re.MULTILINE)
    assert built_in is not None, listed
    assert {"read_file", "shell", "remember", "add_goal", "set_reminder"} <= set(
        built_in[1].split(", ")
    )
    tools = [f for f in frames if f["type"] == "tool"]
    assert [f["phase"] for f in tools] == ["start", "end"], frames
    assert frames[-1]["type"] == "reply", frames[-1]
    # What the model saw (the /tools command and its output are shown, never sent).
    history = [m for m in history if not m.get("kind")]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    call = history[1]["tool_calls"][0]
    assert call["id"] == tools[0]["call_id"] == history[2]["tool_call_id"]
    assert call["name"] == tools[0]["tool"]
    assert history[3]["content"] == frames[-1]["text"]


async def test_the_servers_usage_is_recorded_per_conversation(
    tmp_path: Path, llamacpp: LlamaCpp
) -> None:
    async with open_ganglion(tmp_path, llamacpp) as live:
        frames = await live.turn(WEB, "Say hello.")
        assert frames[-1]["type"] == "reply", frames[-1]
        status = await run_ganglion(
            "status", "--json", "--config", str(live.config_path), cwd=tmp_path
        )
    with sqlite3.connect(live.data_dir / "conversation.db") as db:
        rows = db.execute(
            "SELECT thread_id, source, prompt, completion, estimated FROM usage"
        ).fetchall()
    assert len(rows) == 1
    thread_id, source, prompt, completion, estimated = rows[0]
    assert (thread_id, source, estimated) == (WEB, "owner", 0)
    assert prompt > 0 and completion > 0  # llama.cpp's own counts, not an estimate
    owner = json.loads(status.stdout)["usage"]["sources"]["owner"]
    assert (owner["tokens_in"], owner["tokens_out"], owner["estimated_calls"]) == (
        prompt,
        completion,
        0,
    )
