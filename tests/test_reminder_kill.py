"""Reminders survive SIGKILL at the worst moment: a real `ganglion run` process is killed
the instant the ledger shows its slots done, restarted, and every reminder turn is
answered exactly once.

The daemon is a real process on the wall clock, which no test can hold: a burst is made
due just before the daemon starts (a slot missed while it was down, well within
`misfire_grace`, fires once at start), so nothing waits for a moment to come; where the
reminder has to come due while the daemon runs, the test checks, rather than assumes,
that what it waited for happened first."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ganglion.reminders.schedule import Schedule
from ganglion.reminders.store import ReminderStore
from tests.support.fakellm import FakeLLM, Reply
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.web import hello, next_frame, send

pytestmark = pytest.mark.slow


async def schedule_at(data_dir: Path, due: datetime, thread_ids: list[str]) -> None:
    """Store one one-shot reminder per thread, all due at `due` (UTC, whole second)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await ReminderStore.open(data_dir / "scheduler.db")
    try:
        spec = due.replace(tzinfo=None).isoformat()
        for n, thread_id in enumerate(thread_ids):
            await store.add(
                f"reminder {n}",
                Schedule("at", spec, "UTC", datetime.now(UTC)),
                thread_id=thread_id,
                system=False,
                next_fire=due,
            )
    finally:
        await store.aclose()


def _kill_when_done(db: Path, count: int, pid: int, cancelled: threading.Event) -> bool:
    """In a worker thread: poll the ledger as fast as SQLite answers and SIGKILL `pid`
    the moment `count` slots are done. False if `cancelled` was set first."""
    while not cancelled.is_set():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                done = conn.execute("SELECT count(*) FROM ledger WHERE state = 'done'").fetchone()
            if done[0] >= count:
                os.kill(pid, signal.SIGKILL)
                return True
        except sqlite3.OperationalError:
            pass  # not created yet, or busy
    return False


async def kill_when_done(live: LiveDaemon, count: int) -> None:
    db = live.data_dir / "scheduler.db"
    cancelled = threading.Event()
    killed = False

    async def watch() -> None:
        nonlocal killed
        killed = await trio.to_thread.run_sync(_kill_when_done, db, count, live.pid, cancelled)

    with trio.move_on_after(60):
        try:
            await watch()
        finally:
            cancelled.set()  # a cancelled wait stops the worker thread too
    assert killed, f"the ledger never showed {count} slots done:\n{live.output()}"
    assert await live.wait() == -signal.SIGKILL


def reminder_turns(data_dir: Path) -> list[tuple[str, str, int]]:
    """(turn id, state, final replies stored) of every reminder turn."""
    with sqlite3.connect(data_dir / "conversation.db") as conn:
        return conn.execute(
            "SELECT t.turn_id, t.state, (SELECT count(*) FROM messages m WHERE m.turn_id = "
            "t.turn_id AND m.role = 'assistant' AND m.tool_calls IS NULL) FROM turns t "
            "WHERE t.source = 'reminder' ORDER BY t.turn_id"
        ).fetchall()


async def all_answered(data_dir: Path, count: int) -> list[tuple[str, str, int]]:
    with trio.fail_after(60):
        while True:
            turns = reminder_turns(data_dir)
            if len(turns) >= count and all(state == "done" for _, state, _ in turns):
                return turns
            await trio.sleep(0.1)


async def passivated(live: LiveDaemon, count: int) -> None:
    """Until the daemon says it has passivated `count` conversations since it started."""
    headers = {"Authorization": f"Bearer {live.token}"}
    async with httpx.AsyncClient(base_url=live.base, headers=headers) as http:
        with trio.fail_after(30):
            while (await http.get("/api/status")).json()["threads"]["passivated"] < count:
                await trio.sleep(0.05)


def web_thread(n: int) -> str:
    return f"web_{n:016x}"


async def test_a_burst_of_40_reminders_survives_a_kill_right_after_the_ledger_marks_them_done(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    threads = [web_thread(n) for n in range(40)]
    held = trio.Event()  # the model answers nothing before the kill
    fake_llm.responder = lambda body: Reply("Reminder handled.", gate=held)
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    async with open_live_daemon(tmp_path, fake_llm.base_url, start=False) as live:
        await schedule_at(live.data_dir, due, threads)
        await live.start()
        await kill_when_done(live, len(threads))
        held.set()
        await live.start()
        turns = await all_answered(live.data_dir, len(threads))
        assert await live.stop() == 0
    assert [turn_id.split("/")[0] for turn_id, _, _ in turns] == threads
    assert [(state, finals) for _, state, finals in turns] == [("done", 1)] * len(threads)
    with sqlite3.connect(live.data_dir / "scheduler.db") as conn:
        states = conn.execute("SELECT state, count(*) FROM ledger GROUP BY state").fetchall()
    assert states == [("done", len(threads))]


async def test_a_reminder_into_a_passivated_conversation_survives_a_kill_each_time(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    thread = web_thread(7)
    held = trio.Event()

    def respond(body: dict[str, Any]) -> Reply:
        # the person's message is answered; the reminder's turn waits for the kill
        if "reminder you scheduled" in body["messages"][-1]["content"]:
            return Reply("Reminder handled.", gate=held)
        return Reply("Hello!")

    fake_llm.responder = respond
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, start=False, threads={"idle_seconds": 0.2}
    ) as live:
        for attempt in range(3):
            held = trio.Event()
            due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
            await schedule_at(live.data_dir, due, [thread])
            await live.start()
            async with live.socket() as ws:
                await hello(ws, thread)
                await send(ws, f"hi {attempt}", message_id=f"hello-{attempt}")
                assert (await next_frame(ws, "reply"))["text"] == "Hello!"
            await passivated(live, 1)
            assert datetime.now(UTC) < due, "the conversation was still live when it came due"
            await kill_when_done(live, attempt + 1)
            held.set()
            await live.start()
            turns = await all_answered(live.data_dir, attempt + 1)
            assert [(state, finals) for _, state, finals in turns] == [("done", 1)] * (attempt + 1)
            assert await live.stop() == 0
