"""Conversations end to end inside the daemon, against the scripted fake model server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from ganglion.messages import FinalReply, RewindTurn, TextDelta, TurnFailed, TurnStarted
from ganglion.store import RewindRefused
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, HTTPError, MalformedSSE, Reply, Truncated

WEB_A = "web_aaaaaaaaaaaaaaaa"
WEB_B = "web_bbbbbbbbbbbbbbbb"


def history(data_dir: Path, thread_id: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(data_dir / "conversation.db") as conn:
        return conn.execute(
            "SELECT role, content FROM messages WHERE thread_id = ? ORDER BY id", (thread_id,)
        ).fetchall()


async def test_a_message_gets_a_streamed_reply_that_is_stored(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Bonjour! How can I help?", chunk_size=4))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "hello")
        assert await daemon.collector.final(WEB_A) == ["Bonjour! How can I help?"]
        events = daemon.collector.of(WEB_A)
        assert isinstance(events[0], TurnStarted)
        deltas = [e.text for e in events if isinstance(e, TextDelta)]
        assert len(deltas) > 3 and "".join(deltas) == "Bonjour! How can I help?"
    assert history(tmp_path, WEB_A) == [
        ("user", "hello"),
        ("assistant", "Bonjour! How can I help?"),
    ]
    system = fake_llm.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "You are Ganglion" in system["content"]
    assert WEB_A in system["content"] and "Europe/Paris" in system["content"]


async def test_messages_sent_during_a_turn_are_answered_in_order(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("first answer", gate=gate), Reply("second answer"), Reply("third answer"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "one")
        await fake_llm.wait_for_requests(1)
        await daemon.say(WEB_A, "two")
        await daemon.say(WEB_A, "three")
        await daemon.info(WEB_A)  # answered by intake after it stored the two messages
        with sqlite3.connect(tmp_path / "conversation.db") as conn:
            queued = conn.execute("SELECT state FROM turns ORDER BY created_at").fetchall()
        assert queued == [("running",), ("queued",), ("queued",)]  # already durable
        gate.set()
        assert await daemon.collector.final(WEB_A, 3) == [
            "first answer",
            "second answer",
            "third answer",
        ]
    assert [c for _, c in history(tmp_path, WEB_A)] == [
        "one",
        "first answer",
        "two",
        "second answer",
        "three",
        "third answer",
    ]
    assert fake_llm.requests[1]["messages"][-1] == {"role": "user", "content": "two"}


async def test_two_threads_with_a_slow_model_run_concurrently(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.responder = lambda body: Reply("slow", gate=gate)
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "a")
        await daemon.say(WEB_B, "b")
        await fake_llm.wait_for_requests(2)
        assert fake_llm.in_flight == 2
        gate.set()
        assert await daemon.collector.final(WEB_A) == ["slow"]
        assert await daemon.collector.final(WEB_B) == ["slow"]


async def test_max_concurrency_bounds_model_calls_across_threads(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.responder = lambda body: Reply("x", gate=gate)
    config = daemon_config(tmp_path, fake_llm.base_url, llm={"max_concurrency": 1})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB_A, "a")
        await daemon.say(WEB_B, "b")
        await fake_llm.wait_for_requests(1)
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert len(fake_llm.requests) == 1
        gate.set()
        await daemon.collector.final(WEB_A)
        await daemon.collector.final(WEB_B)


async def test_a_crash_in_one_thread_leaves_the_other_answering(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda body: Reply("fine")
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        daemon.collector.fail_on = lambda e: e.thread_id == WEB_A and isinstance(e, TextDelta)
        await daemon.say(WEB_A, "this turn will crash")
        (failed,) = await daemon.collector.final(WEB_A)
        assert failed.startswith("FAILED: Something went wrong inside Ganglion")
        await daemon.say(WEB_B, "are you there?")
        assert await daemon.collector.final(WEB_B) == ["fine"]
        # the crashed thread was restarted with its history intact and answers again
        await daemon.say(WEB_A, "again")
        assert (await daemon.collector.final(WEB_A, 2))[1] == "fine"
        assert daemon.services.threads.statistics().restarts == 1
    assert fake_llm.requests[-1]["messages"][1] == {
        "role": "user",
        "content": "this turn will crash",
    }


async def test_a_turn_cut_off_by_a_crash_is_answered_once_after_restart(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    never = trio.Event()
    fake_llm.script(Reply("lost in the crash", gate=never))
    config = daemon_config(tmp_path, fake_llm.base_url)
    with trio.CancelScope() as crash:
        async with open_daemon(config) as daemon:
            await daemon.say(WEB_A, "please answer me")
            await fake_llm.wait_for_requests(1)
            crash.cancel()  # everything stops at once, as with kill -9: no cleanup writes
    gate = trio.Event()
    fake_llm.script(Reply("answered after the restart", gate=gate))
    async with open_daemon(config) as daemon:
        await fake_llm.wait_for_requests(2)
        gate.set()
        assert await daemon.collector.final(WEB_A) == ["answered after the restart"]
    async with open_daemon(config):
        pass  # a second restart finds nothing left to answer
    assert len(fake_llm.requests) == 2
    assert history(tmp_path, WEB_A) == [
        ("user", "please answer me"),
        ("assistant", "answered after the restart"),
    ]


async def test_the_same_message_id_is_never_answered_twice(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "hi", message_id="evt1")
        await daemon.collector.final(WEB_A)
        await daemon.say(WEB_A, "hi", message_id="evt1")
        await daemon.say(WEB_A, "next", message_id="evt2")
        await daemon.collector.final(WEB_A, 2)
    assert len(fake_llm.requests) == 2


async def test_a_server_error_fails_the_turn_clearly_and_the_thread_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(HTTPError(500, body="Traceback (most recent call last): secret internals"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "hello")
        (failed,) = await daemon.collector.final(WEB_A)
        assert failed == (
            f"FAILED: The model server at {fake_llm.base_url} answered with an error "
            "(HTTP 500); see the model server's log."
        )
        await daemon.say(WEB_A, "hello again")
        assert (await daemon.collector.final(WEB_A, 2))[1] == "ok"


async def test_garbage_streams_fail_the_turn_with_a_short_message(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(MalformedSSE(), Truncated("half an ans", after_chunks=2), Reply(""))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        for text in ("one", "two", "three"):
            await daemon.say(WEB_A, text)
        results = await daemon.collector.final(WEB_A, 3)
    garbled = (
        f"FAILED: The answer from the model server at {fake_llm.base_url} was cut off or "
        "garbled. Please try again."
    )
    assert results == [
        garbled,
        garbled,
        "FAILED: The model returned an empty answer. Please try again.",
    ]
    assert all("Traceback" not in r for r in results)


async def test_a_silent_review_is_neither_delivered_nor_kept(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from ganglion.messages import HeartbeatReview

    (tmp_path / "HEARTBEATS.txt").write_text("- water the plants\n")
    fake_llm.script(Reply("**HEARTBEAT_OK**"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.services.threads.send(WEB_A, HeartbeatReview(WEB_A))
        await fake_llm.wait_for_requests(1)
        await daemon.say(WEB_A, "hi")
        await daemon.collector.final(WEB_A)
        assert [e.text for e in daemon.collector.of(WEB_A, FinalReply)] == ["ok"]  # type: ignore[union-attr]
        info = await daemon.info(WEB_A)
    review, turn = fake_llm.requests
    assert "water the plants" in review["messages"][0]["content"]  # the goals, in the prompt
    assert "Heartbeat review" in review["messages"][-1]["content"]
    # No trace: the next turn's prompt holds neither the review nor its answer.
    assert [m["content"] for m in turn["messages"][1:]] == ["hi"]
    assert info.messages == 2
    assert not daemon.collector.of(WEB_A, TurnFailed)


async def test_a_reminder_slot_handed_over_twice_is_answered_once(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from ganglion.messages import ReminderDue

    fake_llm.script(Reply("Time to stretch!"))
    due = ReminderDue(WEB_A, "r1", "2026-11-24T10:00:00Z", "stretch")
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.services.threads.send(WEB_A, due)
        await daemon.services.threads.send(WEB_A, due)  # e.g. resent after a kill
        assert await daemon.collector.final(WEB_A) == ["Time to stretch!"]
        await daemon.info(WEB_A)
    assert len(fake_llm.requests) == 1
    prompt = fake_llm.requests[0]["messages"][-1]["content"]
    assert "not a new request from the user" in prompt and prompt.endswith("stretch")


async def test_a_reminder_is_confirmed_only_once_its_turn_is_on_disk(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from dataclasses import replace

    from ganglion.messages import ReminderDue

    gate = trio.Event()
    fake_llm.script(Reply("busy", gate=gate), Reply("Time to stretch!"))
    due = ReminderDue(WEB_A, "r1", "2026-11-24T10:00:00Z", "stretch")
    turn_id = f"{WEB_A}/reminder/r1/2026-11-24T10:00:00Z"
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "keep the worker busy")
        await fake_llm.wait_for_requests(1)
        store = daemon.services.store
        assert await store.turns.missing_turns([turn_id]) == {turn_id}
        with trio.fail_after(10):
            await daemon.services.threads.ask(WEB_A, lambda ok: replace(due, accepted=ok))
        # confirmed while the worker is still busy with the first turn: queued, durable
        assert await store.turns.missing_turns([turn_id]) == set()
        gate.set()
        await daemon.collector.final(WEB_A, count=2)


async def test_a_message_is_confirmed_once_its_turn_is_on_disk(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from ganglion.messages import UserMessage

    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        store = daemon.services.store
        turn_id = f"{WEB_A}/m1"
        with trio.fail_after(10):
            await daemon.services.threads.ask(
                WEB_A, lambda ok: UserMessage(WEB_A, "web", "hello", message_id="m1", accepted=ok)
            )
        assert await store.turns.missing_turns([turn_id]) == set()
        await daemon.collector.final(WEB_A)


async def rewind(daemon: Daemon, thread_id: str, turn_id: str, message_id: str) -> None:
    """Regenerate `turn_id` as the turn of `message_id`, as the web chat asks it."""
    with trio.fail_after(10):
        await daemon.services.threads.ask(
            thread_id, lambda accepted: RewindTurn(thread_id, turn_id, message_id, None, accepted)
        )


async def test_a_rewind_cut_off_by_a_crash_is_answered_after_restart(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    never = trio.Event()
    fake_llm.script(Reply("the old answer"), Reply("lost in the crash", gate=never))
    config = daemon_config(tmp_path, fake_llm.base_url)
    with trio.CancelScope() as crash:
        async with open_daemon(config) as daemon:
            await daemon.say(WEB_A, "a question", message_id="m1")
            await daemon.collector.final(WEB_A)
            await rewind(daemon, WEB_A, f"{WEB_A}/m1", "m2")
            await fake_llm.wait_for_requests(2)
            crash.cancel()  # as with kill -9, before the new answer is stored
    fake_llm.script(Reply("answered after the restart"))
    async with open_daemon(config) as daemon:
        assert await daemon.collector.final(WEB_A) == ["answered after the restart"]
        page = await daemon.services.store.library.history_page(WEB_A)
    assert len(fake_llm.requests) == 3
    assert fake_llm.requests[-1]["messages"][1:] == [{"role": "user", "content": "a question"}]
    assert [(m.message.content, m.turn_id) for m in page] == [
        ("a question", f"{WEB_A}/m2"),
        ("answered after the restart", f"{WEB_A}/m2"),
    ]
    with sqlite3.connect(tmp_path / "conversation.db") as conn:
        kept = conn.execute("SELECT content, superseded_by FROM messages ORDER BY id").fetchall()
    assert kept == [
        ("a question", f"{WEB_A}/m2"),
        ("the old answer", f"{WEB_A}/m2"),
        ("a question", None),
        ("answered after the restart", None),
    ]


async def test_a_rewind_while_messages_wait_is_refused_and_changes_nothing(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("first"), Reply("second", gate=gate))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB_A, "one", message_id="m1")
        await daemon.collector.final(WEB_A)
        await daemon.say(WEB_A, "two", message_id="m2")
        await fake_llm.wait_for_requests(2)
        with pytest.raises(RewindRefused) as refused:
            await rewind(daemon, WEB_A, f"{WEB_A}/m1", "m3")
        gate.set()
        assert await daemon.collector.final(WEB_A, 2) == ["first", "second"]
    assert refused.value.reason == "busy"
    assert history(tmp_path, WEB_A) == [
        ("user", "one"),
        ("assistant", "first"),
        ("user", "two"),
        ("assistant", "second"),
    ]


async def test_compaction_after_a_rewind_never_sees_the_rows_taken_back(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("a1"), Reply("a weak answer"), Reply("a2"), Reply("the summary"))
    config = daemon_config(tmp_path, fake_llm.base_url, compaction={"keep_recent_messages": 2})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB_A, "q1", message_id="m1")
        await daemon.collector.final(WEB_A)
        await daemon.say(WEB_A, "q2", message_id="m2")
        await daemon.collector.final(WEB_A, 2)
        await rewind(daemon, WEB_A, f"{WEB_A}/m2", "m3")
        await daemon.collector.final(WEB_A, 3)
        await daemon.say(WEB_A, "/compact")
        notice = await daemon.collector.notice(WEB_A)
        await rewind(daemon, WEB_A, f"{WEB_A}/m3", "m4")  # the kept tail may still be rewound
        await daemon.collector.final(WEB_A, 4)
    assert notice == "Compacted: 2 older message(s) summarised, 2 kept verbatim."
    summarised = fake_llm.requests[3]["messages"][-1]["content"]
    assert "q1" in summarised and "a1" in summarised and "weak" not in summarised
    sent = fake_llm.requests[4]["messages"]
    assert "the summary" in sent[1]["content"]
    assert sent[2:] == [{"role": "user", "content": "q2"}]
