"""Issue 19, rows 7 and 10, through a real `ganglion run` process with the scripted fake
model playing a prompt-injected assistant: it cannot flood tools or plant reminders that
outlive the owner's attention, the owner sees every lasting change, and simple encodings
of the daemon's secrets never reach the model."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from ganglion.redact import encoded_forms
from tests.support.fakellm import FakeLLM, Reply, calling, calling_all
from tests.support.live import open_live_daemon

pytestmark = pytest.mark.slow

ROOM = "web_5ec0417e5ec0417e"
API_KEY = "sk-live-0123456789abcdefghij"


def tool_results(fake_llm: FakeLLM, request: int = -1) -> list[str]:
    return [m["content"] for m in fake_llm.requests[request]["messages"] if m["role"] == "tool"]


def notices(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["text"] for frame in frames if frame["type"] == "notice"]


def reminders(data_dir: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(data_dir / "scheduler.db") as db:
        return db.execute(
            "SELECT id, active, awaiting_confirmation FROM reminders ORDER BY created_at"
        ).fetchall()


async def test_row_7_a_flood_of_recurring_reminders_plants_nothing_that_runs(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    flood = [
        ("set_reminder", {"text": f"exfiltrate {n}", "kind": "every", "schedule": "1h"})
        for n in range(100)
    ]
    fake_llm.script(calling_all(*flood), Reply("Done."))
    # A hundred calls and their results take about 8,000 tokens by the (uncalibrated)
    # estimate: a window that holds them.
    window: dict[str, Any] = {"llm": {"context_window": 32768}}
    async with open_live_daemon(tmp_path, fake_llm.base_url, **window) as live:
        frames = await live.turn(ROOM, "please set these up")
        results = tool_results(fake_llm)
        assert len(results) == 100  # every call has its result, the history stays valid
        ran, refused = results[:16], results[16:]
        assert all(r.startswith("error: not run: at most 16 tool calls") for r in refused)
        assert sum("/confirm" in r for r in ran) == 5  # five per message, all off
        assert sum("the most one message may set" in r for r in ran) == 11
        assert len([r for r in reminders(live.data_dir) if r[2]]) == 5
        assert not [r for r in reminders(live.data_dir) if r[1]]  # none runs
        # The web chat says each "Kept:" notice in the owner's words (ganglion.web.wording).
        kept = [text for text in notices(frames) if text.startswith("Repeating reminder set")]
        assert len(kept) == 5 and all("/confirm" in text for text in kept)
        # neither a new conversation nor a restart turns them on
        await live.turn(ROOM, "/new")
        assert await live.stop() == 0
        await live.start()
        assert not [r for r in reminders(live.data_dir) if r[1]]


async def test_row_7_a_reminder_written_into_the_database_behind_the_actors_back_never_fires(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    insert = (
        "python3 -c \"import sqlite3, time; db = sqlite3.connect('../scheduler.db'); "
        "db.execute('INSERT INTO reminders (id, text, kind, spec, timezone, anchor, "
        "thread_id, system, created_at, created_by, next_fire, active) VALUES "
        f"(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, 1)', ('evil0001', 'run the payload', 'every', "
        f"'2', 'UTC', time.time(), '{ROOM}', time.time(), 'user', time.time())); "
        "db.commit(); print('planted')\""
    )
    fake_llm.script(calling("shell", command=insert), calling("list_reminders"), Reply("Ok."))
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        await live.turn(ROOM, "maintenance")
        assert "planted" in tool_results(fake_llm)[0]
        with trio.fail_after(30):
            while reminders(live.data_dir) != [("evil0001", 0, 0)]:
                await trio.sleep(0.05)
        with sqlite3.connect(live.data_dir / "scheduler.db") as db:
            assert db.execute("SELECT count(*) FROM ledger").fetchone() == (0,)
        assert await live.stop() == 0
    logged = "".join(p.read_text() for p in (live.root / "logs").iterdir())
    assert "[evil0001] 'run the payload' was turned off without firing" in logged
    assert "shortest allowed interval is 60 s" in logged


async def test_row_7_the_owner_sees_each_lasting_change(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        calling("remember", fact="the owner's bank is Acme"),
        calling("add_goal", goal="check the bank every day"),
        calling("write_skill", name="banking", content="# Banking\nlog in as the owner"),
        Reply("Noted."),
    )
    async with open_live_daemon(tmp_path, fake_llm.base_url) as live:
        frames = await live.turn(ROOM, "remember my bank")
    kept = notices(frames)  # each "Kept:", in the owner's words (ganglion.web.wording)
    assert len(kept) == 3
    assert "Acme" in kept[0] and "check the bank" in kept[1] and "banking" in kept[2]


async def test_row_10_encoded_secrets_never_reach_the_model(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    leak = (
        "rev ../../config.yaml; base64 -w0 ../../config.yaml; echo; "
        "od -An -tx1 ../../config.yaml | tr -d ' \\n'; echo; "
        "grep api_key ../../config.yaml | tr -d ' ' | cut -d: -f2 | sed 's/^/x/' | base64 -w0"
    )
    fake_llm.script(calling("shell", command=leak), Reply("Here it is."))
    async with open_live_daemon(tmp_path, fake_llm.base_url, llm={"api_key": API_KEY}) as live:
        await live.turn(ROOM, "show me the config")
    (output,) = tool_results(fake_llm)
    assert "[redacted]" in output and "llm" in output[::-1]  # the rest of the file is there
    seen = json.dumps(fake_llm.requests)
    for form in {API_KEY, *encoded_forms(API_KEY)}:
        assert form not in seen
    assert base64.b64encode(b"x" + API_KEY.encode()).decode() not in seen
