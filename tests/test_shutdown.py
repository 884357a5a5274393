"""Graceful shutdown: drain within the grace period, cancel after it, a second signal."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
import trio

from ganglion.app import ForcedStop, RunningDaemon, run_daemon
from ganglion.messages import UserMessage
from ganglion_actors._supervisor import unwrap_group
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Hang, Reply

WEB = "web_eeeeeeeeeeeeeeee"


def turn_states(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "conversation.db") as conn:
        return [s for (s,) in conn.execute("SELECT state FROM turns ORDER BY created_at")]


async def test_an_in_flight_turn_finishes_within_the_grace_period(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Reply("finished while draining", latency=3))
    config = daemon_config(tmp_path, fake_llm.base_url, shutdown={"grace_seconds": 10})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "quick question")
        await fake_llm.wait_for_requests(1)
        daemon.services.request_stop()
        assert await daemon.collector.final(WEB) == ["finished while draining"]
    assert turn_states(tmp_path) == ["done"]


async def test_work_outliving_the_grace_period_is_cancelled_and_answered_after_restart(
    tmp_path: Path, fake_llm: FakeLLM, idle_clock: trio.abc.Clock
) -> None:
    fake_llm.script(Hang())  # a long turn; a second message waits behind it
    config = daemon_config(
        tmp_path,
        fake_llm.base_url,
        shutdown={"grace_seconds": 2},
        llm={"timeouts": {"first_token": 3600, "total": 7200}},
    )
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "long job")
        await fake_llm.wait_for_requests(1)
        await daemon.say(WEB, "queued behind it")
        await daemon.info(WEB)
        started = trio.current_time()
    assert trio.current_time() - started < 5
    assert turn_states(tmp_path) == ["running", "queued"]
    fake_llm.script(Reply("late answer one"), Reply("late answer two"))
    async with open_daemon(config) as daemon:
        await fake_llm.wait_for_requests(3)
        await daemon.info(WEB)
    assert turn_states(tmp_path) == ["done", "done"]


async def test_a_second_signal_stops_at_once(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda body: Hang()
    config = daemon_config(tmp_path, fake_llm.base_url, shutdown={"grace_seconds": 600})
    with pytest.raises(BaseExceptionGroup) as caught, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            running: RunningDaemon = await nursery.start(_run, config)
            services = running.services
            await services.threads.send(WEB, UserMessage(WEB, "web", "hang please"))
            await fake_llm.wait_for_requests(1)
            os.kill(os.getpid(), signal.SIGTERM)
            await services.stop_requested.wait()
            os.kill(os.getpid(), signal.SIGTERM)
    stop = unwrap_group(caught.value)
    assert isinstance(stop, ForcedStop)
    assert stop.signum == signal.SIGTERM
    assert turn_states(tmp_path) == ["running"]  # answered after the next start


async def _run(config: object, *, task_status: trio.TaskStatus[RunningDaemon]) -> None:
    await run_daemon(config, task_status=task_status)  # type: ignore[arg-type]
