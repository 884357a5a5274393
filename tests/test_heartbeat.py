from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import trio

from ganglion.config import HeartbeatConfig
from ganglion.entries import active_lines
from ganglion.heartbeat import HEARTBEAT_THREAD, serve_heartbeat
from ganglion.messages import HeartbeatReview, TriggerHeartbeat
from ganglion_actors import ChildSpec, open_supervisor


def test_active_goals_skip_comments_and_blank_lines() -> None:
    assert active_lines("# header\n\n- one\n  # note\n- two\n") == "- one\n- two"


async def run_for(
    seconds: float,
    heartbeats: Path,
    config: HeartbeatConfig,
    trigger: bool = False,
    expect: int = 0,
) -> tuple[list[HeartbeatReview], str | None]:
    reviews: list[HeartbeatReview] = []
    answer = None

    async def send_review(review: HeartbeatReview) -> None:
        reviews.append(review)

    async with open_supervisor("test") as sup:
        ref = await sup.start(
            ChildSpec("heartbeat", partial(serve_heartbeat, config, heartbeats, send_review))
        )
        if trigger:
            answer = await ref.ask(lambda reply: TriggerHeartbeat("web_x", reply))
        await trio.sleep(seconds)
        # The file is read in a worker thread, during which the mock clock may jump:
        # wait for the reviews due by now rather than trusting the sleep alone.
        with trio.fail_after(3600):
            while len(reviews) < expect:
                await trio.sleep(0.5)
        await sup.shutdown(1)
    return reviews, answer


async def test_reviews_come_on_the_interval_when_goals_exist(
    tmp_path: Path, idle_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "HEARTBEATS.txt"
    path.write_text("- follow up with Bob\n")
    reviews, _ = await run_for(
        3 * 3600 + 10, path, HeartbeatConfig(interval_seconds=3600), expect=3
    )
    assert [r.thread_id for r in reviews] == [HEARTBEAT_THREAD] * 3
    assert reviews[0].heartbeats == "- follow up with Bob"


async def test_no_goals_means_no_review(tmp_path: Path, idle_clock: trio.abc.Clock) -> None:
    path = tmp_path / "HEARTBEATS.txt"
    path.write_text("# nothing yet\n")
    reviews, _ = await run_for(10 * 3600, path, HeartbeatConfig(interval_seconds=3600))
    assert reviews == []


async def test_a_disabled_timer_still_answers_a_trigger(
    tmp_path: Path, idle_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "HEARTBEATS.txt"
    path.write_text("- something\n")
    config = HeartbeatConfig(enabled=False, interval_seconds=60)
    reviews, answer = await run_for(10 * 3600, path, config, trigger=True)
    assert len(reviews) == 1
    assert answer is not None and answer.startswith("Heartbeat review started")


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
