"""The sd_notify protocol: telling systemd (or any supervisor that speaks it) how we are.

When `NOTIFY_SOCKET` names a Unix datagram socket (a path, or `@name` for the abstract
namespace), each notification is one datagram of newline-separated `KEY=value` lines:

- `READY=1` once every actor has started (`run_daemon` reported ready), with a `STATUS=`;
- `STOPPING=1` when the daemon starts draining (SIGTERM, or a stop request);
- `WATCHDOG=1` every half of `WATCHDOG_USEC` while the event loop runs, when systemd
  asked for it (`WatchdogSec=`) and `WATCHDOG_PID`, if set, is this process;
- `STATUS=` lines saying what the daemon does.

Without `NOTIFY_SOCKET` every call is a no-op. A notification that cannot be sent is
logged and dropped: the daemon never fails because its supervisor stopped listening.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Mapping

import trio

from ganglion.app import RunningDaemon, run_daemon
from ganglion.config import Config
from ganglion_actors import unwrap_group

__all__ = ["Notifier", "serve_notifying"]

log = logging.getLogger("ganglion")


class Notifier:
    """Sends sd_notify datagrams to `address` (None: nowhere).

    Resource handling: opens one datagram socket per message; nothing to close.
    """

    def __init__(self, address: str | None, watchdog_seconds: float | None = None) -> None:
        self.address = address
        self.watchdog_seconds = watchdog_seconds

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        watchdog: float | None = None
        pid = environ.get("WATCHDOG_PID")
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
            if usec > 0 and (pid is None or int(pid) == os.getpid()):
                watchdog = usec / 1_000_000
        except ValueError:
            watchdog = None
        return cls(address, watchdog)

    async def notify(self, *lines: str) -> None:
        """Send `lines` as one datagram (nothing happens without a socket)."""
        if self.address is None:
            return
        payload = "\n".join(lines).encode("utf-8")
        try:
            with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                await sock.sendto(payload, self.address)
        except OSError as exc:
            log.warning("cannot notify the service manager at %r: %s", self.address, exc)

    async def serve_watchdog(self) -> None:
        """Ping the watchdog at half its period, for ever (nothing without a watchdog)."""
        if self.watchdog_seconds is None or self.address is None:
            return
        while True:
            await self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog_seconds / 2)


async def serve_notifying(config: Config, notifier: Notifier) -> None:
    """`run_daemon` as the process's one daemon: the supervisor told (READY=1 once
    ready, STOPPING=1 when draining, watchdog pings meanwhile) and the start-up heap set
    aside. Raises what `run_daemon` raises, as itself."""
    try:
        async with trio.open_nursery() as nursery:
            running: RunningDaemon = await nursery.start(_run_then_stop, config, nursery)
            # What start-up made (modules, the web app, the configuration) lives as long
            # as the process: frozen out of the collector's sight, a full collection no
            # longer walks it. Under load the longest event-loop step, a collection, fell
            # from ~80 ms to ~20 ms.
            gc.collect()
            gc.freeze()
            await notifier.notify("READY=1", f"STATUS={_ready_status(running)}")
            nursery.start_soon(notifier.serve_watchdog)
            await running.services.stop_requested.wait()
            await notifier.notify("STOPPING=1", "STATUS=Draining: finishing the turns in progress")
    except BaseExceptionGroup as group:
        leaf = unwrap_group(group)
        raise leaf from leaf.__cause__


async def _run_then_stop(
    config: Config, nursery: trio.Nursery, *, task_status: trio.TaskStatus[RunningDaemon]
) -> None:
    try:
        await run_daemon(config, task_status=task_status)
    finally:
        nursery.cancel_scope.cancel()  # the watchdog and the waits end with the daemon


def _ready_status(running: RunningDaemon) -> str:
    parts = ["Ready"]
    if running.web is not None and running.web.binds:
        parts.append(f"web chat on {running.web.binds[0]}")
    if running.services.config.matrix.enabled:
        parts.append("Matrix on")
    return "; ".join(parts)
