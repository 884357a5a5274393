"""Supervisors with Erlang/OTP semantics, on a Trio nursery.

An actor is an async function `run(inbox, *, task_status)` that calls
`task_status.started()` once it is really ready. A supervisor starts children in order
with `nursery.start` semantics (a child that fails before `started()` fails `start()`),
restarts them by their `Restart` type after a jittered exponential backoff, and gives up
(`Escalation`, raised out of `open_supervisor` to its parent) when more than `intensity`
restarts happen within `period` seconds. `shutdown(grace)` stops children in reverse
start order: each mailbox is closed (intake stops, queued work is drained), and whatever
has not ended when the shared deadline passes is cancelled.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ganglion_actors._errors import Escalation
from ganglion_actors._mailbox import (
    ActorRef,
    Inbox,
    Mailbox,
    reset_actor_name,
    set_actor_name,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "ActorFn",
    "Backoff",
    "ChildSpec",
    "Restart",
    "RestartWindow",
    "Supervisor",
    "SupervisorStatistics",
    "open_supervisor",
    "unwrap_group",
]

log = logging.getLogger("ganglion_actors")

M = TypeVar("M")

ActorFn = Callable[..., Awaitable[None]]


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted, even after a normal return
    TRANSIENT = "transient"  # restarted only after a crash
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with +/- `jitter` (a fraction) around each delay."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.factor**attempt)
        return max(0.0, base * (1 + self.jitter * rng.uniform(-1.0, 1.0)))


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[M]):
    name: str
    run: ActorFn
    restart: Restart = Restart.PERMANENT
    mailbox_size: int = 64


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    children: tuple[str, ...]
    running: int
    restarts: int


class RestartWindow:
    """Counts restarts within a sliding period (`trio.current_time()`)."""

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self._times: deque[float] = deque()

    def exceeded_after_one_more(self) -> bool:
        now = trio.current_time()
        self._times.append(now)
        while self._times and self._times[0] < now - self.period:
            self._times.popleft()
        return len(self._times) > self.intensity

    def recent(self) -> bool:
        """Was there a restart within the period (keeps backoff growing in a storm)?"""
        return bool(self._times) and self._times[-1] >= trio.current_time() - self.period


def unwrap_group(exc: BaseException) -> BaseException:
    """A lone exception inside (nested) exception groups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@dataclass(eq=False)
class _Child:
    spec: ChildSpec[Any]
    mailbox: Mailbox[Any]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    started: bool = False


class Supervisor:
    """Starts, restarts and stops children. Made by `open_supervisor`."""

    def __init__(
        self,
        name: str,
        nursery: trio.Nursery,
        *,
        intensity: int,
        period: float,
        backoff: Backoff,
        rng: random.Random,
    ) -> None:
        self.name = name
        self._nursery = nursery
        self._window = RestartWindow(intensity, period)
        self._backoff = backoff
        self._rng = rng
        self._children: list[_Child] = []
        self._stopping = False
        self._restarts = 0

    async def start(self, spec: ChildSpec[M]) -> ActorRef[M]:
        """Start `spec` and return its reference once it reported ready.

        Error handling: an exception the child raises before `task_status.started()`
        is raised here.
        """
        if self._stopping:
            raise RuntimeError(f"supervisor {self.name!r} is shutting down")
        mailbox: Mailbox[M] = Mailbox(spec.name, spec.mailbox_size)
        child = _Child(spec, mailbox)
        self._children.append(child)
        try:
            await self._nursery.start(self._supervise, child)
        except BaseException:
            self._children.remove(child)
            raise
        return mailbox.ref

    async def shutdown(self, grace: float) -> None:
        """Stop every child in reverse start order within `grace` seconds in total."""
        self._stopping = True
        deadline = trio.current_time() + grace
        for child in reversed(self._children):
            child.mailbox.close()
            if not child.mailbox.running:
                child.scope.cancel()  # waiting out a backoff: nothing to drain
            with trio.move_on_at(deadline):
                await child.done.wait()
            if not child.done.is_set():
                log.warning("%s did not stop within the grace period: cancelling", child.spec.name)
                child.scope.cancel()
                await child.done.wait()

    def cancel_all(self) -> None:
        self._stopping = True
        for child in reversed(self._children):
            child.scope.cancel()

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            children=tuple(c.spec.name for c in self._children),
            running=sum(1 for c in self._children if c.mailbox.running),
            restarts=self._restarts,
        )

    async def _supervise(
        self, child: _Child, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        token = set_actor_name(child.spec.name)
        attempt = 0
        try:
            with child.scope:
                while True:
                    crash = await self._run_once(child, task_status)
                    if not self._should_restart(child, crash):
                        break
                    attempt = attempt + 1 if self._window.recent() else 0
                    if self._window.exceeded_after_one_more():
                        raise Escalation(
                            self.name, child.spec.name, self._window.intensity, self._window.period
                        ) from crash
                    await trio.sleep(self._backoff.delay(attempt, self._rng))
                    child.mailbox.restarts += 1
                    self._restarts += 1
        finally:
            left = child.mailbox.fail_remaining()
            if left:
                log.warning("%s stopped with %d message(s) undelivered", child.spec.name, left)
            child.done.set()
            reset_actor_name(token)

    async def _run_once(
        self, child: _Child, task_status: trio.TaskStatus[None]
    ) -> BaseException | None:
        """Run one incarnation; return its crash (None after a normal return)."""
        inbox: Inbox[Any] = Inbox(child.mailbox)
        child.mailbox.running = True
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(child.spec.run, inbox)
                if not child.started:
                    child.started = True
                    task_status.started()
        except Exception as exc:
            crash = unwrap_group(exc)
            if not child.started:
                raise crash from crash.__cause__  # a failed first start fails start()
            log.error("%s crashed", child.spec.name, exc_info=crash)
            return crash
        finally:
            child.mailbox.running = False
            inbox.finish()
        return None

    def _should_restart(self, child: _Child, crash: BaseException | None) -> bool:
        if self._stopping or child.mailbox.closed:
            return False
        match child.spec.restart:
            case Restart.PERMANENT:
                return True
            case Restart.TRANSIENT:
                return crash is not None
            case Restart.TEMPORARY:
                return False


@asynccontextmanager
async def open_supervisor(
    name: str,
    *,
    intensity: int = 3,
    period: float = 5.0,
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> AsyncIterator[Supervisor]:
    """A supervisor whose children live as long as the `async with` block.

    Leaving the block cancels the children that are still running (call `shutdown`
    first for a graceful stop). Error handling: raises `Escalation` when the restart
    intensity was exceeded; a lone exception from the block or a child is raised as
    itself, not wrapped in an exception group.
    """
    try:
        async with trio.open_nursery() as nursery:
            supervisor = Supervisor(
                name,
                nursery,
                intensity=intensity,
                period=period,
                backoff=backoff,
                rng=rng or random.Random(),
            )
            try:
                yield supervisor
            finally:
                supervisor.cancel_all()
    except BaseExceptionGroup as group:
        leaf = unwrap_group(group)
        raise leaf from leaf.__cause__
