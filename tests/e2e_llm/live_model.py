"""A real `ganglion run` pointed at a real llama.cpp server, and what tests read back.

    async with open_ganglion(tmp_path, server) as live:    # a LiveDaemon
        frames = await live.turn(WEB, "Hello!")            # over the web chat
        history = await reopen(live, WEB)                  # what a reloaded tab shows

Answers are capped at `max_tokens` (48 by default: about half a second of generation)
at temperature 0; the built-in tools are off unless `tools=True` (the model's own chat
template ignores them anyway, and Ganglion counts their schemas in its prompt estimate).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.support.live import TURN_TIMEOUT, LiveDaemon, open_live_daemon
from tests.support.llamacpp import LlamaCpp

__all__ = [
    "NO_TOOLS",
    "deltas",
    "next_of",
    "open_ganglion",
    "reopen",
    "stored_messages",
    "summary",
    "turn_states",
    "wait_for_answer",
]

NO_TOOLS: dict[str, Any] = {
    "files": {"enabled": False},
    "shell": {"enabled": False},
    "memory": {"enabled": False},
    "reminders": {"enabled": False},
}


@asynccontextmanager
async def open_ganglion(
    tmp_path: Path,
    server: LlamaCpp,
    *,
    max_tokens: int = 48,
    tools: bool = False,
    start: bool = True,
    **overrides: Any,
) -> AsyncIterator[LiveDaemon]:
    """`ganglion run` with `llm` pointed at `server` (its context window is the server's
    per-request context), plus `overrides` deep-merged into its config."""
    llm = {
        "model": "smollm2-135m",
        "temperature": 0,
        "max_tokens": max_tokens,
        "context_window": server.slot_context,
        **overrides.pop("llm", {}),
    }
    if not tools:
        overrides["tools"] = {**NO_TOOLS, **overrides.get("tools", {})}
    async with open_live_daemon(
        tmp_path, server.base_url, start=start, llm=llm, **overrides
    ) as live:
        yield live


def deltas(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["text"] for frame in frames if frame["type"] == "delta"]


async def next_of(ws: WebSocketConnection, *types: str) -> dict[str, Any]:
    """The next frame of one of `types`, within a model turn's time (a cold prompt on a
    busy machine takes seconds before the first token)."""
    with trio.fail_after(TURN_TIMEOUT):
        while (frame := json.loads(await ws.get_message()))["type"] not in types:
            pass
    result: dict[str, Any] = frame
    return result


async def reopen(live: LiveDaemon, thread_id: str) -> list[dict[str, Any]]:
    """The conversation's history as a tab that opens it gets it (from the store)."""
    async with live.socket() as ws:
        await ws.send_message(json.dumps({"v": 1, "type": "hello", "thread_id": thread_id}))
        with trio.fail_after(TURN_TIMEOUT):
            while (frame := json.loads(await ws.get_message()))["type"] != "history":
                pass
    messages: list[dict[str, Any]] = frame["messages"]
    return messages


async def wait_for_answer(live: LiveDaemon, thread_id: str) -> dict[str, Any]:
    """The last assistant message of the conversation, waiting for it if the turn is
    still running: from the history if it was answered before the tab opened, else the
    `reply` (or `failed`) frame that ends the turn."""
    async with live.socket() as ws:
        await ws.send_message(json.dumps({"v": 1, "type": "hello", "thread_id": thread_id}))
        with trio.fail_after(TURN_TIMEOUT):
            while True:
                frame: dict[str, Any] = json.loads(await ws.get_message())
                if frame["type"] == "history":
                    answered = [m for m in frame["messages"] if m["role"] == "assistant"]
                    if answered and frame["messages"][-1]["role"] == "assistant":
                        return {"type": "reply", "text": answered[-1]["content"]}
                elif frame["type"] in ("reply", "failed"):
                    return frame


def _query(data_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{data_dir / 'conversation.db'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


def stored_messages(data_dir: Path, thread_id: str) -> list[tuple[str, str | None]]:
    """(role, content) of every stored message of the thread the model sees (not the
    commands, notices and failures shown beside them), oldest first."""
    rows = _query(
        data_dir,
        "SELECT role, content FROM messages WHERE thread_id = ? AND kind IS NULL ORDER BY id",
        thread_id,
    )
    return [(role, content) for role, content in rows]


def turn_states(data_dir: Path, thread_id: str) -> list[str]:
    rows = _query(
        data_dir, "SELECT state FROM turns WHERE thread_id = ? ORDER BY created_at", thread_id
    )
    return [state for (state,) in rows]


def summary(data_dir: Path, thread_id: str) -> str | None:
    rows = _query(data_dir, "SELECT summary FROM threads WHERE thread_id = ?", thread_id)
    return rows[0][0] if rows else None
