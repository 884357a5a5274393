"""The heartbeat: reviews fanned out to the active conversations, quiet, cheap and on
schedule. Against the whole daemon and the fake model, which counts every call."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

from ganglion.beats import ActiveHours, is_silent, next_beat
from ganglion.config import Config
from ganglion.entries import active_lines
from ganglion.messages import FinalReply, TriggerHeartbeat
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, HTTPError, Reply, Step, open_fake_llm

A = "web_a1a1a1a1a1a1a1a1"
B = "web_b2b2b2b2b2b2b2b2"
ROOM = "!kitchen:example.org"
PARIS = ZoneInfo("Europe/Paris")


def _review(body: dict[str, Any]) -> bool:
    return "Heartbeat review" in str(body["messages"][-1]["content"])


def _global(body: dict[str, Any]) -> bool:
    return "system:heartbeat" in str(body["messages"][0]["content"])


def answering(
    thread: Callable[[dict[str, Any]], Step] = lambda body: Reply("HEARTBEAT_OK"),
    overall: Callable[[dict[str, Any]], Step] = lambda body: Reply("HEARTBEAT_OK"),
) -> Callable[[dict[str, Any]], Step]:
    """Turns answer "ok"; a conversation's review and the global one as given."""

    def respond(body: dict[str, Any]) -> Step:
        if not _review(body):
            return Reply("ok")
        return overall(body) if _global(body) else thread(body)

    return respond


@asynccontextmanager
async def heartbeat_daemon(
    tmp_path: Path, responder: Callable[[dict[str, Any]], Step], **heartbeat: Any
) -> AsyncIterator[tuple[Daemon, FakeLLM]]:
    async with open_fake_llm(responder=responder) as fake:
        settings = {"enabled": False, **heartbeat}
        config = daemon_config(tmp_path, fake.base_url, heartbeat=settings)
        async with open_daemon(config) as daemon:
            yield daemon, fake


async def beat(daemon: Daemon) -> str:
    """One beat now; returns its line once its reviews are in."""
    with trio.fail_after(60):
        summary: str = await daemon.services.deps.heartbeat.ask(
            lambda reply: TriggerHeartbeat("test", reply)
        )
    return summary


async def chat(daemon: Daemon, *threads: str) -> None:
    for index, thread in enumerate(threads):
        await daemon.say(thread, f"hello {index}")
        await daemon.collector.final(thread)


def reviews(fake: FakeLLM) -> list[dict[str, Any]]:
    return [body for body in fake.requests if _review(body)]


def finals(daemon: Daemon, thread: str) -> list[str]:
    return [e.text for e in daemon.collector.of(thread, FinalReply)]  # type: ignore[union-attr]


# --- pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "HEARTBEAT_OK",
        " HEARTBEAT_OK \n",
        "`HEARTBEAT_OK`",
        "**HEARTBEAT_OK**",
        "__HEARTBEAT_OK__",
        '"HEARTBEAT_OK"',
        "“HEARTBEAT_OK”",
        "HEARTBEAT_OK.",
        "> HEARTBEAT_OK",
        "All quiet today: HEARTBEAT_OK",
        "HEARTBEAT_OK\n\nEverything is on track; the backup ran and Bob answered.",
        "",
    ],
)
def test_the_silent_answer_is_recognised_however_it_is_wrapped(text: str) -> None:
    assert is_silent(text)


@pytest.mark.parametrize(
    "text",
    [
        "You wanted to call Anna before Friday; it is Thursday evening.",
        "The backup did not run last night. Check the disk: it was 98 % full yesterday, "
        "which is why I would not say HEARTBEAT_OK this time.",
    ],
)
def test_a_real_message_is_not_taken_for_silence(text: str) -> None:
    assert not is_silent(text)


def test_beats_keep_to_their_schedule() -> None:
    assert next_beat(due=100.0, interval=60.0, now=130.0) == 160.0  # not 130 + 60
    assert next_beat(due=100.0, interval=60.0, now=400.0) == 460.0  # missed: same grid


def test_active_hours() -> None:
    day = ActiveHours.parse("08:00-22:00")
    assert day.contains(datetime(2026, 1, 1, 8, 0).time())
    assert not day.contains(datetime(2026, 1, 1, 22, 0).time())
    night = ActiveHours.parse("22:00-06:30")
    assert night.contains(datetime(2026, 1, 1, 23, 0).time())
    assert night.contains(datetime(2026, 1, 1, 6, 0).time())
    assert not night.contains(datetime(2026, 1, 1, 12, 0).time())
    for bad in ("8-22", "25:00-26:00", "08:60-09:00"):
        with pytest.raises(ValueError, match=r"HH:MM|time of day"):
            ActiveHours.parse(bad)


def test_bad_heartbeat_settings_are_config_errors_with_their_path() -> None:
    with pytest.raises(ValueError, match=r"heartbeat\.active_hours"):
        Config.model_validate({"heartbeat": {"active_hours": "after lunch"}})
    with pytest.raises(ValueError, match=r"heartbeat\.deliver_to"):
        Config.model_validate({"heartbeat": {"deliver_to": "my phone"}})


def test_active_goals_skip_comments_and_blank_lines() -> None:
    assert active_lines("# header\n\n- one\n  # note\n- two\n") == "- one\n- two"


# --- cheap -------------------------------------------------------------------------------


async def test_no_goals_and_no_new_activity_means_no_model_call(tmp_path: Path) -> None:
    async with heartbeat_daemon(tmp_path, answering()) as (daemon, fake):
        await chat(daemon, A, B)
        first = await beat(daemon)
        calls = len(fake.requests)
        second = await beat(daemon)
        third = await beat(daemon)
    assert len(reviews(fake)) == 2  # the first beat: each had activity, never reviewed
    assert "2 review(s): 2 silent" in first
    assert len(fake.requests) == calls  # then nothing: no goals, nothing new
    assert "0 review(s)" in second and "2 no activity" in second and "0 tokens" in third


async def test_a_review_is_light_whatever_the_history(tmp_path: Path) -> None:
    async with heartbeat_daemon(tmp_path, answering(), recent_turns=2) as (daemon, fake):
        for index in range(30):
            await daemon.say(A, f"message number {index} " + "with some words " * 20)
        await daemon.collector.final(A, 30)
        await beat(daemon)
    [review] = reviews(fake)
    contents = [str(m["content"]) for m in review["messages"]]
    assert len(contents) == 1 + 4 + 1  # system, the last two turns, the instructions
    assert "message number 28" in contents[1] and "message number 29" in contents[3]
    assert "tools" not in review  # a conversation's review is offered no tools


# --- quiet -------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["HEARTBEAT_OK", "*HEARTBEAT_OK*", "Nothing new. HEARTBEAT_OK"])
async def test_a_silent_review_leaves_no_trace(tmp_path: Path, answer: str) -> None:
    thread = answering(thread=lambda body: Reply(answer, chunk_size=3))
    async with heartbeat_daemon(tmp_path, thread) as (daemon, fake):
        await chat(daemon, A)
        before = await daemon.info(A)
        await beat(daemon)
        await daemon.say(A, "and now?")
        await daemon.collector.final(A, 2)
        after = await daemon.info(A)
    assert finals(daemon, A) == ["ok", "ok"]
    assert after.messages == before.messages + 2  # only "and now?" and its answer
    last = fake.requests[-1]["messages"]
    assert all("HEARTBEAT" not in str(m["content"]) for m in last[1:])


# --- where a review speaks ---------------------------------------------------------------


async def test_a_review_with_something_to_say_speaks_in_its_conversation(tmp_path: Path) -> None:
    thread = answering(thread=lambda body: Reply("You said you would call Anna today."))
    async with heartbeat_daemon(tmp_path, thread) as (daemon, _):
        await chat(daemon, A, ROOM)
        summary = await beat(daemon)
        room = await daemon.info(ROOM)
    for conversation in (A, ROOM):  # a web tab and a Matrix room alike
        assert finals(daemon, conversation)[-1] == "You said you would call Anna today."
    assert "2 delivered" in summary
    assert room.messages == 4  # the turn, then the review's marker and what it said


async def test_the_global_review_speaks_where_it_is_told(tmp_path: Path) -> None:
    (tmp_path / "HEARTBEATS.txt").write_text("- make sure the backup runs\n")
    overall = answering(overall=lambda body: Reply("The backup has not run for 3 days."))
    async with heartbeat_daemon(tmp_path, overall, deliver_to=A) as (daemon, fake):
        await chat(daemon, A, B)
        await beat(daemon)
        with trio.fail_after(10):
            while len(finals(daemon, A)) < 2:
                await trio.sleep(0.01)
    assert finals(daemon, A)[-1] == "The backup has not run for 3 days."
    assert finals(daemon, B) == ["ok"]
    assert sum(_global(body) for body in fake.requests) == 1


async def test_without_a_target_the_global_review_speaks_in_the_latest_conversation(
    tmp_path: Path,
) -> None:
    (tmp_path / "HEARTBEATS.txt").write_text("- water the plants\n")
    overall = answering(overall=lambda body: Reply("Water the plants today."))
    async with heartbeat_daemon(tmp_path, overall) as (daemon, _):
        await chat(daemon, A, B)  # B last
        await beat(daemon)
        with trio.fail_after(10):
            while len(finals(daemon, B)) < 2:
                await trio.sleep(0.01)
    assert finals(daemon, B)[-1] == "Water the plants today."
    assert finals(daemon, A) == ["ok"]


# --- never doubled, never stopped --------------------------------------------------------


async def test_a_busy_thread_is_skipped_not_asked_twice(tmp_path: Path) -> None:
    (tmp_path / "HEARTBEATS.txt").write_text("- keep an eye on the build\n")
    gate = trio.Event()
    slow = answering(thread=lambda body: Reply("HEARTBEAT_OK", gate=gate))
    async with heartbeat_daemon(tmp_path, slow) as (daemon, fake):
        await chat(daemon, A)
        await daemon.services.deps.heartbeat.send(TriggerHeartbeat("test"))
        with trio.fail_after(10):
            # The thread's review is held at the gate; the goals' review is answered.
            while len(reviews(fake)) < 2 or fake.in_flight != 1:
                await trio.sleep(0.01)
        second = await beat(daemon)
        gate.set()
        with trio.fail_after(10):
            while fake.in_flight:
                await trio.sleep(0.01)
    assert "skipped: 1 busy" in second
    assert len([body for body in reviews(fake) if not _global(body)]) == 1


async def test_a_failing_model_costs_one_review_and_nothing_else(tmp_path: Path) -> None:
    broken = answering(thread=lambda body: HTTPError(500))
    async with heartbeat_daemon(tmp_path, broken) as (daemon, _):
        await chat(daemon, A)
        summary = await beat(daemon)
        await daemon.say(A, "still there?")
        replies = await daemon.collector.final(A, 2)
        again = await beat(daemon)
    assert "1 failed" in summary
    assert replies == ["ok", "ok"]
    assert "1 failed" in again  # new activity: reviewed again, and the beat goes on


# --- on schedule -------------------------------------------------------------------------


async def test_beats_come_on_the_interval_within_the_active_hours(
    tmp_path: Path, idle_clock: trio.abc.Clock
) -> None:
    now = datetime.now(PARIS)
    hours = f"{now:%H:%M}-{now + timedelta(hours=3):%H:%M}"
    async with heartbeat_daemon(
        tmp_path, answering(), enabled=True, interval_seconds=600, active_hours=hours
    ) as (daemon, fake):
        await chat(daemon, A)
        await trio.sleep(3 * 600 + 5)
        stats = daemon.services.heartbeat
        with trio.fail_after(3600):
            while stats.beats < 3:
                await trio.sleep(1)
    assert stats.beats == 3
    assert stats.reviews["silent"] == 1 and stats.skipped["no activity"] == 2
    assert len(reviews(fake)) == 1


async def test_no_beat_runs_outside_the_active_hours(
    tmp_path: Path, idle_clock: trio.abc.Clock
) -> None:
    later = datetime.now(PARIS) + timedelta(hours=4)
    hours = f"{later:%H:%M}-{later + timedelta(hours=1):%H:%M}"
    (tmp_path / "HEARTBEATS.txt").write_text("- something due\n")
    async with heartbeat_daemon(
        tmp_path, answering(), enabled=True, interval_seconds=600, active_hours=hours
    ) as (daemon, fake):
        await chat(daemon, A)
        await trio.sleep(2 * 600 + 5)
        stats = daemon.services.heartbeat
        with trio.fail_after(3600):
            while stats.beats < 2:
                await trio.sleep(1)
    assert stats.skipped["outside hours"] == 2
    assert reviews(fake) == []


async def test_a_heartbeats_file_planted_as_a_link_is_never_read(tmp_path: Path) -> None:
    from ganglion.heartbeat.actor import _read_goals

    secret = tmp_path / "outside.txt"
    secret.write_text("GANGLION_SECRET=hunter2\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "HEARTBEATS.txt").symlink_to(secret)
    assert _read_goals(data / "HEARTBEATS.txt") == ""
    (data / "HEARTBEATS.txt").unlink()
    os.link(secret, data / "HEARTBEATS.txt")  # a hard link is refused too
    assert _read_goals(data / "HEARTBEATS.txt") == ""
