"""SIGTERM to a real `ganglion run` while turns are in flight: within a long grace they
finish and are delivered live (the conversations drain before the interfaces close);
past a short one they are answered after the restart."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import trio

from ganglion.web import frames
from tests.support.fakellm import Reply, open_fake_llm
from tests.support.live import LiveDaemon, open_live_daemon

TABS = 8


def thread(n: int) -> str:
    return f"web_{n:016x}"


def answer(body: dict[str, Any]) -> Reply:
    text = body["messages"][-1]["content"]
    return Reply(f"answer to {text}", latency=3.0, chunk_delay=0.05)


async def tab(live: LiveDaemon, n: int, started: trio.Event, got: dict[int, list[str]]) -> None:
    """Send one message and collect the replies until the daemon closes the socket."""
    async with live.socket() as ws:
        await ws.send_message(frames.hello(thread(n)))
        while json.loads(await ws.get_message())["type"] != "history":
            pass
        await ws.send_message(frames.send("q", f"question {n}"))
        started.set()
        try:
            while True:
                frame = json.loads(await ws.get_message())
                if frame["type"] == "reply":
                    got.setdefault(n, []).append(frame["text"])
        except Exception:  # the daemon went away: what arrived is what counts
            return


def states(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "conversation.db") as conn:
        return [s for (s,) in conn.execute("SELECT state FROM turns ORDER BY turn_id")]


async def sigterm_with_turns_in_flight(live: LiveDaemon) -> dict[int, list[str]]:
    got: dict[int, list[str]] = {}
    async with trio.open_nursery() as nursery:
        for n in range(TABS):
            started = trio.Event()
            nursery.start_soon(tab, live, n, started, got)
            await started.wait()
        with trio.fail_after(10):
            while len(states(live.data_dir)) < TABS or "running" not in states(live.data_dir):
                await trio.sleep(0.05)
        assert live.process is not None
        live.process.send_signal(signal.SIGTERM)
        assert await live.wait() == 0, live.output()
    return got


async def answers_in_history(live: LiveDaemon) -> dict[int, list[str]]:
    """What each tab finds in its history when it connects again."""
    found: dict[int, list[str]] = {}
    for n in range(TABS):
        async with live.socket() as ws:
            await ws.send_message(frames.hello(thread(n)))
            while (frame := json.loads(await ws.get_message()))["type"] != "history":
                pass
        found[n] = [m["content"] for m in frame["messages"] if m["role"] == "assistant"]
    return found


ANSWERED = {n: [f"answer to question {n}"] for n in range(TABS)}


async def test_sigterm_with_a_long_grace_finishes_the_turns_in_flight(tmp_path: Path) -> None:
    async with (
        open_fake_llm(responder=answer) as fake,
        open_live_daemon(
            tmp_path, fake.base_url, llm={"max_concurrency": TABS}, shutdown={"grace_seconds": 30}
        ) as live,
    ):
        live_replies = await sigterm_with_turns_in_flight(live)
        assert states(live.data_dir) == ["done"] * TABS  # finished before the exit
        await live.start()
        assert await answers_in_history(live) == ANSWERED
        assert await live.stop() == 0
    delivered = sum(map(len, live_replies.values()))
    print(f"\nlong grace: {TABS} turns finished in the drain; {delivered} delivered live")


async def test_sigterm_with_a_long_grace_delivers_the_turns_in_flight_live(
    tmp_path: Path,
) -> None:
    async with (
        open_fake_llm(responder=answer) as fake,
        open_live_daemon(
            tmp_path, fake.base_url, llm={"max_concurrency": TABS}, shutdown={"grace_seconds": 30}
        ) as live,
    ):
        assert await sigterm_with_turns_in_flight(live) == ANSWERED


async def test_sigterm_with_a_short_grace_answers_the_turns_after_the_restart(
    tmp_path: Path,
) -> None:
    async with (
        open_fake_llm(responder=answer) as fake,
        open_live_daemon(
            tmp_path, fake.base_url, llm={"max_concurrency": TABS}, shutdown={"grace_seconds": 0.5}
        ) as live,
    ):
        assert await sigterm_with_turns_in_flight(live) == {}
        assert set(states(live.data_dir)) <= {"queued", "running"}
        await live.start()
        with trio.fail_after(30):
            while set(states(live.data_dir)) & {"queued", "running"}:
                await trio.sleep(0.1)
        assert states(live.data_dir) == ["done"] * TABS  # none given up as failed
        assert await answers_in_history(live) == ANSWERED
        assert await live.stop() == 0
    print(f"\nshort grace: {TABS} turns cut off by SIGTERM, each answered once after the restart")
