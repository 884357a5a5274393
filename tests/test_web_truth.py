"""The web chat tells the truth about every message (issue 13 item 3): each send is
answered once, by `accepted` or by an error naming it, and everything the owner saw comes
back with the history, in order."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import trio

from ganglion.messages import Notice, ReminderDue
from ganglion.web import frames
from tests.support.fakellm import FakeLLM, HTTPError, Reply, calling
from tests.support.web import hello, next_frame, open_web_daemon, send, web_config

TAB = "web_c3c3c3c3c3c3c3c3"


async def test_a_reused_send_id_answers_with_its_turns_state(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "once", "m1")
        assert (await next_frame(tab, "accepted"))["duplicate"] is False
        await next_frame(tab, "reply")
        await send(tab, "once", "m1")
        again = await next_frame(tab, "accepted", "turn_started")
        assert again == {
            "type": "accepted",
            "id": "m1",
            "turn_id": f"{TAB}/m1",
            "state": "done",
            "duplicate": True,
        }
    assert len(fake_llm.requests) == 1


async def test_an_oversize_send_is_refused_by_its_id_and_not_stored(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(tmp_path, fake_llm.base_url, web={"max_message_bytes": 1024})
    async with open_web_daemon(config) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "x" * 2000, "big1")
        error = await next_frame(tab, "error", "accepted")
        assert (error["type"], error["code"], error["id"]) == ("error", "too_large", "big1")
        assert await web.services.store.library.history_page(TAB) == ()


async def test_a_burst_past_the_rate_limit_answers_every_send(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(
        tmp_path, fake_llm.base_url, web={"frame_burst": 5, "max_frames_per_second": 0.001}
    )
    async with open_web_daemon(config) as web, web.socket() as tab:
        await hello(tab, TAB)  # the hello takes one of the five
        for n in range(12):
            await send(tab, f"message {n}", f"m{n}")
        answers: dict[str, str] = {}
        with trio.fail_after(20):
            while len(answers) < 12:
                frame = json.loads(await tab.get_message())
                if frame["type"] == "accepted":
                    answers[frame["id"]] = "accepted"
                elif frame["type"] == "error":
                    assert frame["code"] == "rate_limited"
                    answers[frame["id"]] = "refused"
        assert [answers[f"m{n}"] for n in range(12)] == ["accepted"] * 4 + ["refused"] * 8


async def test_commands_notices_and_failures_come_back_in_order(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("first answer"), HTTPError(400, "no such model"))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            await send(tab, "first", "m1")
            await next_frame(tab, "reply")
            await send(tab, "/help", "c1")
            accepted = await next_frame(tab, "accepted")
            assert (accepted["id"], accepted["turn_id"]) == ("c1", None)
            await next_frame(tab, "notice")
            await send(tab, "second", "m2")
            failed = await next_frame(tab, "failed")
            await web.services.router.deliver(Notice(TAB, "A reminder was missed."))
            await next_frame(tab, "notice")
        async with web.socket() as tab:
            history = await hello(tab, TAB)
    shown = [(m["role"], m.get("kind"), (m["content"] or "")[:12]) for m in history]
    assert shown == [
        ("user", None, "first"),
        ("assistant", None, "first answer"),
        ("user", "command", "/help"),
        ("system", "notice", shown[3][2]),
        ("user", None, "second"),
        ("system", "failed", failed["message"][:12]),
        ("system", "notice", "A reminder w"),
    ]
    assert history[3]["content"].startswith("Commands")
    # What the owner is shown never reaches the model.
    assert [m["content"] for m in fake_llm.requests[-1]["messages"][1:]] == [
        "first",
        "first answer",
        "second",
    ]


async def test_a_reused_command_id_is_not_run_twice(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "/help", "c1")
        await next_frame(tab, "notice")
        await send(tab, "/help", "c1")
        again = await next_frame(tab, "accepted", "notice")
        assert again == {
            "type": "accepted",
            "id": "c1",
            "turn_id": None,
            "state": "done",
            "duplicate": True,
        }
        history = await web.services.store.library.history_page(TAB)
    assert [m.kind for m in history] == ["command", "notice"]


async def test_a_reminder_shows_its_text_never_the_instructions(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Time to stretch!"))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            due = ReminderDue(TAB, "r1", "2026-01-01T09:00", "stretch")
            with trio.fail_after(10):
                await web.services.threads.ask(
                    TAB, lambda accepted: replace(due, accepted=accepted)
                )
            started = await next_frame(tab, "turn_started")
            assert (started["source"], started["label"]) == ("reminder", "stretch")
            await next_frame(tab, "reply")
        async with web.socket() as tab:
            history = await hello(tab, TAB)
    assert [(m["role"], m.get("source"), m.get("label"), m["content"]) for m in history] == [
        ("user", "reminder", "stretch", None),
        ("assistant", None, None, "Time to stretch!"),
    ]


async def test_a_turn_waiting_for_its_turn_comes_back_queued(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("slow", gate=gate))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            await send(tab, "slow one", "m1")
            await next_frame(tab, "turn_started")
            await send(tab, "waiting one", "m2")
            await next_frame(tab, "accepted")
        async with web.socket() as tab:
            history = await hello(tab, TAB)
        gate.set()
    assert [(m["content"], m.get("queued", False), m["turn_id"]) for m in history] == [
        ("slow one", False, f"{TAB}/m1"),
        ("waiting one", True, f"{TAB}/m2"),
    ]


async def test_the_conversation_list_is_asked_renamed_and_searched_over_the_socket(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Lisbon is lovely."))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await tab.send_message(frames.list_threads())  # no hello needed to list
        assert (await next_frame(tab, "threads"))["items"] == []
        await hello(tab, TAB)
        await send(tab, "a trip to Lisbon", "m1")
        await next_frame(tab, "reply")
        await tab.send_message(frames.rename(TAB, "Holidays"))
        listed = await next_frame(tab, "threads")
        assert [(i["thread_id"], i["title"]) for i in listed["items"]] == [(TAB, "Holidays")]
        await tab.send_message(frames.search("lisb"))
        results = await next_frame(tab, "search_results")
        assert [(h["thread_id"], h["title"]) for h in results["hits"]] == [
            (TAB, "Holidays"),
            (TAB, "Holidays"),
        ]
        await tab.send_message(frames.delete("web_0000000000000000"))
        error = await next_frame(tab, "error")
        assert error["code"] == "unknown_thread"


async def test_stop_keeps_the_partial_answer_and_says_so(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("one two three four five six seven", chunk_size=4, chunk_delay=0.5))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            await send(tab, "count slowly", "m1")
            turn_id = (await next_frame(tab, "turn_started"))["turn_id"]
            await next_frame(tab, "delta")
            await tab.send_message(frames.stop(turn_id))
            reply = await next_frame(tab, "reply")
            assert "one" in reply["text"] and "seven" not in reply["text"]
            notice = await next_frame(tab, "notice")
            assert (notice["text"], notice["turn_id"]) == ("Stopped.", turn_id)
            await send(tab, "still there?", "m2")  # the thread goes on
            assert (await next_frame(tab, "reply"))["text"] == "ok"
        async with web.socket() as tab:
            history = await hello(tab, TAB)
    assert [(m["role"], m.get("kind")) for m in history[:3]] == [
        ("user", None),
        ("assistant", None),
        ("system", "notice"),
    ]
    assert history[1]["content"] == reply["text"]


async def test_a_deleted_conversation_cannot_be_opened_again(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "forget me", "m1")
        await next_frame(tab, "reply")
        await tab.send_message(frames.delete(TAB))
        await next_frame(tab, "threads")
        await tab.send_message(frames.hello(TAB))
        error = await next_frame(tab, "error", "welcome")
        assert (error["type"], error["code"]) == ("error", "deleted")


# -- taking back the last turn (regenerate, edit) -------------------------------------------


def model_saw(fake_llm: FakeLLM) -> list[tuple[str, str | None]]:
    """The conversation the model was sent last (without the system prompt)."""
    return [(m["role"], m.get("content")) for m in fake_llm.requests[-1]["messages"][1:]]


async def test_regenerate_answers_the_last_message_again_in_place_of_the_old_answer(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        Reply("first"),
        calling("list_reminders"),
        Reply("a weak answer"),
        Reply("a better answer"),
    )
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            await send(tab, "hello", "m1")
            await next_frame(tab, "reply")
            await send(tab, "any reminders?", "m2")
            await next_frame(tab, "reply")
            await tab.send_message(frames.rewind("m3", f"{TAB}/m2"))
            accepted = await next_frame(tab, "accepted", "error")
            assert accepted == {
                "type": "accepted",
                "id": "m3",
                "turn_id": f"{TAB}/m3",
                "state": "queued",
                "duplicate": False,
            }
            reply = await next_frame(tab, "reply")
            assert (reply["turn_id"], reply["text"]) == (f"{TAB}/m3", "a better answer")
        async with web.socket() as tab:
            history = await hello(tab, TAB)
    # The taken-back answer and its tool call go neither to the model nor to the screen.
    assert model_saw(fake_llm) == [
        ("user", "hello"),
        ("assistant", "first"),
        ("user", "any reminders?"),
    ]
    assert [(m["role"], m["content"], m["turn_id"]) for m in history] == [
        ("user", "hello", f"{TAB}/m1"),
        ("assistant", "first", f"{TAB}/m1"),
        ("user", "any reminders?", f"{TAB}/m3"),
        ("assistant", "a better answer", f"{TAB}/m3"),
    ]


async def test_an_edit_answers_the_new_text_and_the_old_one_is_gone(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("what?"), Reply("Bonjour!"))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as tab:
            await hello(tab, TAB)
            await send(tab, "say helo in french", "m1")
            await next_frame(tab, "reply")
            await tab.send_message(frames.rewind("m2", f"{TAB}/m1", "say hello in French"))
            assert (await next_frame(tab, "accepted", "error"))["type"] == "accepted"
            assert (await next_frame(tab, "reply"))["text"] == "Bonjour!"
            await tab.send_message(frames.list_threads())
            listed = await next_frame(tab, "threads")
        async with web.socket() as tab:
            history = await hello(tab, TAB)
    assert model_saw(fake_llm) == [("user", "say hello in French")]
    assert [m["content"] for m in history] == ["say hello in French", "Bonjour!"]
    assert [i["title"] for i in listed["items"]] == ["say hello in French"]


async def test_a_rewind_while_a_turn_runs_is_refused_by_its_id(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    gate = trio.Event()
    fake_llm.script(Reply("first"), Reply("slow", gate=gate))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "one", "m1")
        await next_frame(tab, "reply")
        await send(tab, "two", "m2")
        await next_frame(tab, "turn_started")
        await tab.send_message(frames.rewind("m3", f"{TAB}/m1"))
        error = await next_frame(tab, "error", "accepted")
        assert (error["type"], error["code"], error["id"]) == ("error", "busy", "m3")
        assert "Wait for the answer" in error["message"]
        gate.set()
        assert (await next_frame(tab, "reply"))["text"] == "slow"
        history = await web.services.store.library.history_page(TAB)
    assert [m.message.content for m in history] == ["one", "first", "two", "slow"]


async def test_a_rewind_with_nothing_to_take_back_is_refused_clearly(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await tab.send_message(frames.rewind("m1", f"{TAB}/m0"))
        error = await next_frame(tab, "error", "accepted")
        assert (error["code"], error["id"]) == ("nothing_to_rewind", "m1")
        await send(tab, "hi", "m2")
        await next_frame(tab, "reply")
        await tab.send_message(frames.rewind("m3", f"{TAB}/m0"))  # not the last turn
        error = await next_frame(tab, "error", "accepted")
        assert (error["code"], error["id"]) == ("not_last", "m3")
        await tab.send_message('{"v": 1, "type": "rewind", "id": "m4", "turn_id": "x", "text": ""}')
        error = await next_frame(tab, "error", "accepted")
        assert (error["code"], error["id"]) == ("bad_frame", "m4")
    assert len(fake_llm.requests) == 1


async def test_a_rewind_sent_again_is_not_taken_twice(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as tab:
        await hello(tab, TAB)
        await send(tab, "hi", "m1")
        await next_frame(tab, "reply")
        await tab.send_message(frames.rewind("m2", f"{TAB}/m1"))
        await next_frame(tab, "reply")
        await tab.send_message(frames.rewind("m2", f"{TAB}/m1"))
        again = await next_frame(tab, "accepted", "error")
        assert (again["duplicate"], again["state"]) == (True, "done")
    assert len(fake_llm.requests) == 2
