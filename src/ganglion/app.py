"""The supervision tree, and nothing else.

    ganglion run
    └── root nursery
        ├── signal watcher      first SIGTERM/SIGINT: drain; second: cancel at once
        └── root supervisor     children started in this order, stopped in reverse:
            ├── threads         registry of ThreadActors (one per conversation)
            ├── reminders       reminder actor
            ├── heartbeat       heartbeat actor
            ├── web             web chat interface (if enabled)
            └── matrix          Matrix interface (if enabled)

Each child is started with `nursery.start` semantics: `run_daemon` reports readiness only
once every child said it is ready, and a child that fails to start fails start-up.
Shutdown closes the children's mailboxes in reverse order (interfaces stop taking new
messages first, in-flight turns finish last) within `shutdown.grace_seconds`, then cancels
whatever is left.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import trio

from ganglion.config import Config
from ganglion.runtime import Services, open_services
from ganglion_actors import open_supervisor, unwrap_group

__all__ = ["ForcedStop", "run_daemon"]

log = logging.getLogger("ganglion")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ForcedStop(Exception):
    """A second signal arrived while draining: everything was cancelled at once."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


async def run_daemon(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run Ganglion until a signal (or `Services.request_stop`) asks it to stop.

    Reports the running `Services` through `task_status` once every child is ready.
    Error handling: raises `Escalation` when a child's restart intensity was exceeded,
    `ForcedStop` after a second signal, `StartupError` when start-up cannot complete.
    """
    forced: list[int] = []
    try:
        async with open_services(config) as services:
            with (
                trio.open_signal_receiver(*SIGNALS) if handle_signals else _no_signals() as signals
            ):
                async with trio.open_nursery() as root:
                    root.start_soon(_watch_signals, signals, services, root.cancel_scope, forced)
                    await _serve_tree(config, services, task_status)
                    root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One failure (an escalation, a child that could not start) is raised as itself,
        # so the command line can tell them apart.
        leaf = unwrap_group(group)
        raise leaf from leaf.__cause__
    if forced:
        raise ForcedStop(forced[0])


@contextmanager
def _no_signals() -> Iterator[AsyncIterator[int]]:
    send, receive = trio.open_memory_channel[int](0)
    with send, receive:
        yield receive


async def _serve_tree(
    config: Config, services: Services, task_status: trio.TaskStatus[Services]
) -> None:
    async with open_supervisor("root", intensity=5, period=60.0) as root:
        for spec in [*services.service_actors(), *services.tool_servers(), *services.interfaces()]:
            await root.start(spec)
        resumed = await services.resume_cut_off_turns()
        if resumed:
            log.info("resuming cut-off turns in %d thread(s)", resumed)
        log.info("ganglion is ready (data in %s)", config.data_dir)
        task_status.started(services)
        await services.stop_requested.wait()
        log.info("stopping: draining for up to %.1f s", config.shutdown.grace_seconds)
        services.begin_drain()
        await root.shutdown(config.shutdown.grace_seconds)
    log.info("stopped cleanly")


async def _watch_signals(
    signals: AsyncIterator[int],
    services: Services,
    root_scope: trio.CancelScope,
    forced: list[int],
) -> None:
    async for signum in signals:
        if not services.stop_requested.is_set():
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            services.request_stop()
        else:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
            forced.append(signum)
            root_scope.cancel()
            return
