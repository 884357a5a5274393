"""Run the real daemon in-process for tests, with a sink that records what it delivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import trio

from ganglion.app import RunningDaemon, run_daemon
from ganglion.config import Config, ToolKind
from ganglion.messages import (
    FinalReply,
    GetThreadInfo,
    Notice,
    Outbound,
    ThreadInfo,
    TurnFailed,
    UserMessage,
)
from ganglion.runtime import Services
from ganglion.web.server import WebState


class Collector:
    """A delivery sink that records every event and lets tests wait for one."""

    def __init__(self) -> None:
        self.events: list[Outbound] = []
        self._changed = trio.Event()
        self.fail_on: Callable[[Outbound], bool] = lambda event: False

    async def send(self, event: Outbound, /) -> None:
        if self.fail_on(event):
            self.fail_on = lambda event: False
            raise RuntimeError("injected delivery failure")
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[Outbound], bool], count: int = 1
    ) -> list[Outbound]:
        with trio.fail_after(30):
            while len(found := [e for e in self.events if predicate(e)]) < count:
                await self._changed.wait()
        return found

    def of(self, thread_id: str, kind: type[Any] | None = None) -> list[Outbound]:
        return [
            e
            for e in self.events
            if e.thread_id == thread_id and (kind is None or isinstance(e, kind))
        ]

    async def final(self, thread_id: str, count: int = 1) -> list[str]:
        def finished(e: Outbound) -> bool:
            return e.thread_id == thread_id and isinstance(e, FinalReply | TurnFailed)

        events = await self.wait_for(finished, count)
        return [e.text if isinstance(e, FinalReply) else f"FAILED: {e.message}" for e in events]  # type: ignore[union-attr]

    async def notice(self, thread_id: str, count: int = 1) -> str:
        events = await self.wait_for(
            lambda e: e.thread_id == thread_id and isinstance(e, Notice), count
        )
        return events[-1].text  # type: ignore[union-attr]


@dataclass
class Daemon:
    services: Services
    collector: Collector
    web: WebState | None  # the web chat's state, when it is enabled

    async def say(self, thread_id: str, text: str, message_id: str | None = None) -> None:
        await self.services.threads.send(
            thread_id, UserMessage(thread_id, "web", text, message_id=message_id)
        )

    async def info(self, thread_id: str) -> ThreadInfo:
        with trio.fail_after(10):
            return await self.services.threads.ask(
                thread_id, lambda reply: GetThreadInfo(thread_id, reply)
            )


def merge_settings(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, sections merged key by key at every depth."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


# The tests of what the tools do run them without asking (`tools.approval`); the tests of
# the approvals set their own policy over this one.
TRUSTING: Final[dict[str, Any]] = {
    "approval": {"default": dict.fromkeys(get_args(ToolKind), "allow")},
}


def daemon_config(data_dir: Path, llm_url: str, **overrides: Any) -> Config:
    raw: dict[str, Any] = {
        "tools": TRUSTING,
        "data_dir": str(data_dir),
        "timezone": "Europe/Paris",
        "llm": {"base_url": llm_url, "model": "fake", "retries": {"attempts": 1}},
        "web": {"enabled": False},
        "heartbeat": {"enabled": False},
        "logging": {"dir": None},
        "shutdown": {"grace_seconds": 5},
    }
    return Config.model_validate(merge_settings(raw, overrides))


@asynccontextmanager
async def open_daemon(config: Config) -> AsyncIterator[Daemon]:
    """The whole daemon (minus signals), stopped gracefully at the end of the block."""
    collector = Collector()
    async with trio.open_nursery() as nursery:
        running: RunningDaemon = await nursery.start(_run, config)
        services = running.services
        services.router.register("test", lambda thread_id: True, collector)
        yield Daemon(services, collector, running.web)
        services.request_stop()


async def _run(config: Config, *, task_status: trio.TaskStatus[RunningDaemon]) -> None:
    await run_daemon(config, handle_signals=False, task_status=task_status)
