"""Approvals survive SIGKILL (issue 32): a real `ganglion run` process, killed while a
question is open, after the yes is stored but before the call ran, and while the allowed
call runs. Nothing runs without a yes; nothing runs twice; an open question is asked
again once, the same question."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio

from ganglion.web import frames
from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.web import hello, next_frame, send

pytestmark = pytest.mark.slow

WEB = "web_4b4b4b4b4b4b4b4b"
CAUTIOUS = {"approval": {"default": {"shell": "ask"}, "rules": []}}


def approvals(live: LiveDaemon) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(live.data_dir / "conversation.db", timeout=5) as conn:
        rows = conn.execute("SELECT id, state, outcome FROM approvals ORDER BY created_at")
        return [(str(i), str(s), o) for i, s, o in rows.fetchall()]


def tool_results(fake_llm: FakeLLM) -> list[str]:
    return [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "tool"]


async def asked(live: LiveDaemon, text: str) -> dict[str, object]:
    """Say `text` in the conversation; the question its turn asks."""
    async with live.socket() as ws:
        await hello(ws, WEB)
        await send(ws, text)
        return await next_frame(ws, "approval")


async def restart(live: LiveDaemon) -> None:
    live.kill()
    await live.wait()
    await live.start()


async def test_a_question_open_at_a_kill_is_asked_again_once_and_runs_once(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    log = tmp_path / "ran.log"
    fake_llm.script(calling("shell", command=f"echo ran >> {log}"), Reply("done"))
    async with open_live_daemon(tmp_path, fake_llm.base_url, tools=CAUTIOUS) as live:
        question = await asked(live, "log it")
        await restart(live)
        async with live.socket() as ws:
            await hello(ws, WEB)
            again = await next_frame(ws, "approval")
            assert again["approval_id"] == question["approval_id"]
            assert again["call"] == f"shell: echo ran >> {log}"
            await ws.send_message(frames.approve(str(again["approval_id"]), "allow"))
            assert (await next_frame(ws, "reply"))["text"] == "done"
        assert approvals(live) == [(str(question["approval_id"]), "running", "once")]
    assert log.read_text() == "ran\n"
    assert len(fake_llm.requests) == 2  # the call was asked for once, answered once
    assert tool_results(fake_llm) == ["[exit code 0]"]


async def test_a_yes_stored_before_a_kill_runs_the_call_once_without_asking_again(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    log = tmp_path / "ran.log"
    fake_llm.script(calling("shell", command=f"echo ran >> {log}"), Reply("done"))
    async with open_live_daemon(tmp_path, fake_llm.base_url, tools=CAUTIOUS) as live:
        question = await asked(live, "log it")
        live.kill()
        await live.wait()
        # The owner's yes was stored, and the kill came before the call began.
        with sqlite3.connect(live.data_dir / "conversation.db") as conn:
            conn.execute(
                "UPDATE approvals SET state = 'allowed', outcome = 'once', decided_by = 'owner', "
                "interface = 'web' WHERE id = ?",
                (question["approval_id"],),
            )
        await live.start()
        async with live.socket() as ws:
            await hello(ws, WEB)
            with trio.fail_after(20):
                while True:
                    frame = json.loads(await ws.get_message())
                    assert frame["type"] != "approval"  # answered: never asked again
                    if frame["type"] == "reply" or (
                        frame["type"] == "history"
                        and any(
                            m["role"] == "assistant" and m.get("content") == "done"
                            for m in frame["messages"]
                        )
                    ):
                        break
    assert log.read_text() == "ran\n"
    assert approvals(live)[0][1] == "running"


async def test_a_call_killed_while_it_ran_is_never_run_again(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    log = tmp_path / "ran.log"
    slow = f"echo ran >> {log}; sleep 60"
    fake_llm.script(calling("shell", command=slow), Reply("it ran, the result was lost"))
    async with open_live_daemon(tmp_path, fake_llm.base_url, tools=CAUTIOUS) as live:
        async with live.socket() as ws:
            await hello(ws, WEB)
            await send(ws, "run the slow one")
            question = await next_frame(ws, "approval")
            await ws.send_message(frames.approve(str(question["approval_id"]), "allow"))
            with trio.fail_after(20):
                while not (log.exists() and log.read_text()):
                    await trio.sleep(0.02)
        await restart(live)
        answer = "it ran, the result was lost"
        async with live.socket() as ws:
            history = await hello(ws, WEB)
            # Live, or already in the history when the restarted daemon answered first.
            said = [m.get("content") for m in history if m["role"] == "assistant"]
            if answer not in said:
                reply = await next_frame(ws, "reply")
                assert reply["text"] == answer
    assert log.read_text() == "ran\n"
    assert tool_results(fake_llm)[0].startswith("error: this call was approved and began to run")
