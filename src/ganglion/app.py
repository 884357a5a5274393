"""The supervision tree, and nothing else.

    ganglion run
    └── root nursery
        ├── signal watcher      first SIGTERM/SIGINT: drain; second: cancel at once
        └── root supervisor     children started in this order, stopped in reverse:
            ├── threads         registry of ThreadActors (one per conversation)
            ├── reminders       reminder actor
            ├── heartbeat       heartbeat actor: reviews fanned out to active threads
            ├── titles          names new web conversations (if web.generate_titles)
            ├── mcp:<name> …    one per enabled MCP server
            ├── system          the system threads' log (an interface)
            ├── web             web chat interface (if enabled)
            ├── matrix          Matrix interface (if enabled)
            └── metrics         /metrics without the token (if web.metrics_bind)

`_children` builds that list from what `open_services` made (runtime.py), handing each
child what it needs: the thread registry, the delivery router, the backend, the service
actors' reserved references. How each is run lives beside it (`reminders_child`,
`web_child`, …). Each child is started with `nursery.start` semantics: `run_daemon` reports
readiness only once every child said it is ready, and a child that fails to start fails
start-up. The interfaces and MCP servers are restarted with backoff for as long as they
fail and never escalate; the others count toward the root's restart intensity.
Shutdown, within `shutdown.grace_seconds` in all: the thread registry first (no new
message is taken; turns in flight finish while the interfaces are still there to deliver
their replies live), then the other children in reverse start order; whatever is left at
the deadline is cancelled.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from ganglion.config import Config
from ganglion.errors import GanglionError
from ganglion.heartbeat.actor import HEARTBEAT_THREAD, heartbeat_child
from ganglion.ops.endpoints import metrics_child, ops_routes
from ganglion.ops.loop import timing_steps
from ganglion.ops.status import DaemonView
from ganglion.reminders.actor import reminders_child
from ganglion.runtime import Services, open_services
from ganglion.systemlog import system_log_child
from ganglion.threads.registry import resume_cut_off_turns
from ganglion.titler import titler_child
from ganglion.web.server import WebState, web_child
from ganglion_actors import ChildSpec, open_supervisor, unwrap_group

__all__ = ["ForcedStop", "RunningDaemon", "run_daemon"]

log = logging.getLogger("ganglion")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ForcedStop(GanglionError):
    """A second signal arrived while draining: everything was cancelled at once. Not a
    fault, but the one way `run_daemon` ends without draining, so it is told apart (the
    command line exits with 128 + `signum`)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)

    @property
    def user_message(self) -> str:
        return f"stopped at once by a second signal ({self.signal_name})"


@dataclass(slots=True)
class _SignalWatch:
    """What the signal watcher saw: the second signal that forced the stop, if any."""

    forced_by: int | None = None


@dataclass(frozen=True, slots=True)
class RunningDaemon:
    """What `run_daemon` reports once every child is ready."""

    services: Services
    web: WebState | None  # the web chat's state (where it listens), when it is enabled


async def run_daemon(
    config: Config,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[RunningDaemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run Ganglion until a signal (or `Services.request_stop`) asks it to stop.

    Reports a `RunningDaemon` through `task_status` once every child is ready.
    Error handling: raises `Escalation` when a child's restart intensity was exceeded,
    `ForcedStop` after a second signal, `StartupError` when start-up cannot complete.
    """
    watch = _SignalWatch()
    try:
        async with open_services(config) as services:
            with (
                trio.open_signal_receiver(*SIGNALS) if handle_signals else _no_signals() as signals
            ):
                async with trio.open_nursery() as root:
                    root.start_soon(_watch_signals, signals, services, root.cancel_scope, watch)
                    root.start_soon(_learn_context_windows, services)
                    await _serve_tree(config, services, task_status)
                    root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One failure (an escalation, a child that could not start) is raised as itself,
        # so the command line can tell them apart.
        leaf = unwrap_group(group)
        raise leaf from leaf.__cause__
    if watch.forced_by is not None:
        raise ForcedStop(watch.forced_by)


@contextmanager
def _no_signals() -> Iterator[AsyncIterator[int]]:
    send, receive = trio.open_memory_channel[int](0)
    with send, receive:
        yield receive


async def _serve_tree(
    config: Config, services: Services, task_status: trio.TaskStatus[RunningDaemon]
) -> None:
    view = DaemonView(services)
    web = WebState(extensions=[ops_routes(view)]) if config.web.enabled else None
    children = _children(config, services, web)
    if config.web.metrics_address is not None:
        children.append(metrics_child(*config.web.metrics_address, view))
    with ExitStack() as instruments:
        if config.logging.event_loop_stats:
            view.loop = instruments.enter_context(timing_steps())
        async with open_supervisor("root", intensity=5, period=60.0) as root:
            for spec in children:
                view.actors.append(await root.start(spec))
            resumed = await resume_cut_off_turns(services.threads, services.store.turns)
            if resumed:
                log.info("resuming cut-off turns in %d thread(s)", resumed)
            log.info("ganglion is ready (data in %s)", config.data_dir)
            task_status.started(RunningDaemon(services, web))
            await services.stop_requested.wait()
            log.info("stopping: draining for up to %.1f s", config.shutdown.grace_seconds)
            if web is not None:
                web.draining = True  # /readyz fails from now on, before the web chat stops
            # The conversations drain first, while the interfaces are still there to carry
            # their last replies live; new messages meanwhile are refused (not stored: the
            # sender is told), and the rest stops in reverse start order.
            await root.shutdown(config.shutdown.grace_seconds, first=["threads"])
    log.info("stopped cleanly")


def _children(config: Config, services: Services, web: WebState | None) -> list[ChildSpec[Any]]:
    """The root supervisor's children, in start order (the tree at the top)."""
    deps, threads, backend = services.deps, services.threads, services.backend
    router = deps.router
    children: list[ChildSpec[Any]] = [
        ChildSpec("threads", threads.serve),
        reminders_child(
            services.reminder_store,
            config.reminders,
            deps.timezone,
            threads,
            router,
            missing_turns=services.store.turns.missing_turns,
            ref=deps.reminders,
        ),
        heartbeat_child(
            config.heartbeat,
            config.data_dir,
            threads,
            services.store.activity,
            deps.timezone,
            ref=deps.heartbeat,
            statistics=services.heartbeat,
            paused=partial(deps.meter.paused, "heartbeat", HEARTBEAT_THREAD),
        ),
    ]
    if web is not None and config.web.generate_titles:
        children.append(titler_child(deps, services.store.titles))
    # The MCP SDK and matrix-nio are imported only when they are used: together they are
    # half of the daemon's import time.
    if any(server.enabled for server in config.tools.mcp.servers.values()):
        from ganglion.tools.mcp import mcp_children

        children += mcp_children(config, deps.tools)
    children.append(system_log_child(backend, router))
    if web is not None:
        children.append(
            web_child(
                config,
                web,
                backend,
                services.store.library,
                deps.redactor,
                router,
                files=deps.inbox,
            )
        )
    if config.matrix.enabled:
        from ganglion.matrix.actor import matrix_child

        children.append(
            matrix_child(
                config.matrix,
                config.data_dir,
                backend,
                router,
                statistics=services.matrix,
                files=deps.inbox,
            )
        )
    return children


async def _learn_context_windows(services: Services) -> None:
    """Ask the model servers what context they serve at start-up, beside it (a server
    that is slow or down never delays readiness; the first turn asks again if needed)."""
    async with trio.open_nursery() as nursery:
        for client in services.deps.models.clients():
            nursery.start_soon(client.window)


async def _watch_signals(
    signals: AsyncIterator[int],
    services: Services,
    root_scope: trio.CancelScope,
    watch: _SignalWatch,
) -> None:
    async for signum in signals:
        if not services.stop_requested.is_set():
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            services.request_stop()
        else:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
            watch.forced_by = signum
            root_scope.cancel()
            return
