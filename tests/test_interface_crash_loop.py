"""An interface that fails on every start never takes the daemon down (issue 16 item 2):
the whole in-process tree, on a mock clock, with an extra interface child that crashes
each time it is started again; conversations and reminders go on, the root never
escalates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

import ganglion.app
from ganglion.backend import interface_child
from ganglion.config import Config
from ganglion.messages import Outbound
from ganglion.reminders.actor import ReminderActor
from ganglion.reminders.schedule import Schedule
from ganglion.reminders.store import ReminderStore
from ganglion.runtime import Services
from ganglion.web.server import WebState
from ganglion_actors import ChildSpec, Inbox
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM

WEB = "web_cccccccccccccccc"
FAILURES = 12  # far past the root's intensity (5 restarts in 60 s)


class BrokenInterface:
    """Starts once, then fails: after it was up, and on every start after that."""

    def __init__(self) -> None:
        self.starts = 0
        self.failed = trio.Event()

    async def serve(
        self,
        inbox: Inbox[Outbound],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.starts += 1
        if self.starts == 1:
            task_status.started()
            await trio.sleep(1)
        if self.starts > FAILURES:
            self.failed.set()
        raise OSError("the homeserver is unreachable")


@pytest.fixture
async def wall(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The reminder actor's calendar follows the mock clock (from the real time now)."""
    origin = datetime.now(UTC).replace(microsecond=0)
    offset = trio.current_time()

    def now() -> datetime:
        return origin + timedelta(seconds=trio.current_time() - offset)

    defaults: dict[str, Any] = ReminderActor.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "wall", now)
    return origin


async def test_an_interface_failing_on_every_start_is_retried_and_never_escalates(
    tmp_path: Path,
    fake_llm: FakeLLM,
    idle_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    wall: datetime,
) -> None:
    broken = BrokenInterface()
    children = ganglion.app._children

    def with_broken(config: Config, services: Services, web: WebState | None) -> list[Any]:
        spec: ChildSpec[Any] = interface_child("broken", broken.serve, services.deps.router)
        return [*children(config, services, web), spec]

    monkeypatch.setattr(ganglion.app, "_children", with_broken)
    store = await ReminderStore.open(tmp_path / "scheduler.db")
    due = wall + timedelta(minutes=5)  # falls due while the interface is still failing
    spec = due.replace(tzinfo=None).isoformat()
    await store.add(
        "stretch", Schedule("at", spec, "UTC", wall), thread_id=WEB, system=False, next_fire=due
    )
    await store.aclose()
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "before", message_id="m1")
        assert await daemon.collector.final(WEB) == ["ok"]
        with trio.fail_after(3600):
            await broken.failed.wait()
        await daemon.say(WEB, "after", message_id="m2")
        finals = await daemon.collector.final(WEB, 3)  # the reminder's turn and "after"
    assert finals == ["ok"] * 3
    assert broken.starts > FAILURES
    assert [r["messages"][-1]["content"] for r in fake_llm.requests][-1] == "after"
    assert any("stretch" in r["messages"][-1]["content"] for r in fake_llm.requests)
