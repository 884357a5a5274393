"""Supervisors with Erlang/OTP semantics, on a Trio nursery.

An actor is an async function `run(inbox, *, task_status=trio.TASK_STATUS_IGNORED)` that
calls `task_status.started()` once it is really ready and returns when its inbox ends. A
supervisor starts its children in order with `nursery.start` semantics (a child that fails
before `started()` fails `Supervisor.start`) and restarts them by their `Restart` type
after a jittered exponential backoff. Each child's mailbox belongs to the supervisor, so it
survives restarts: references stay valid and queued messages reach the next incarnation.

Restart intensity: more than `intensity` restarts (all children together) within `period`
seconds means restarting does not help. The supervisor then gives up: it cancels the other
children one by one in reverse start order and raises `Escalation` out of
`open_supervisor`, to be handled by its parent.

Stopping: `shutdown(grace)` closes the children's mailboxes in reverse start order and
waits for each to drain and end, all within one deadline; what is still running at the
deadline is cancelled. Leaving the `async with` block without `shutdown` cancels the
children, again one by one in reverse start order.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ganglion_actors._backoff import DEFAULT_BACKOFF, Backoff, RestartWindow, restart_loop
from ganglion_actors._errors import Escalation
from ganglion_actors._mailbox import ActorRef, Inbox, Mailbox, reset_actor_name, set_actor_name

__all__ = [
    "ActorFn",
    "ChildSpec",
    "Restart",
    "Supervisor",
    "SupervisorStatistics",
    "open_supervisor",
    "run_incarnation",
    "unwrap_group",
]

log = logging.getLogger("ganglion_actors")

M = TypeVar("M")

ActorFn = Callable[..., Awaitable[None]]
"""`async def run(inbox: Inbox[M], *, task_status=trio.TASK_STATUS_IGNORED) -> None`."""


class Restart(enum.Enum):
    """When a supervisor restarts a child that ended (OTP restart types)."""

    PERMANENT = "permanent"  # always, even after a normal return
    TRANSIENT = "transient"  # only after a crash (an exception)
    TEMPORARY = "temporary"  # never


@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[M]):
    """How to run one child: its name (also its log name), its actor function, its restart
    type and the capacity of its mailbox (or `ref`, a `reserve`d reference whose
    mailbox it takes over).

    `backoff` replaces the supervisor's own for this child. A child with
    `escalates=False` is restarted (per its restart type) for as long as it fails and its
    restarts never count toward the supervisor's intensity: for children whose failures
    come from outside (a network service, a homeserver, a server process) and must never
    stop their siblings. A crash of one of the `expected` exception types is logged as
    one warning line, without a traceback.
    """

    name: str
    run: ActorFn
    restart: Restart = Restart.PERMANENT
    mailbox_size: int = 64
    backoff: Backoff | None = None
    escalates: bool = True
    expected: tuple[type[BaseException], ...] = ()
    ref: ActorRef[M] | None = None  # a `reserve`d reference to start the child on


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    children: tuple[str, ...]
    running: int
    restarts: int


def unwrap_group(exc: BaseException) -> BaseException:
    """The lone exception inside (nested) exception groups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def run_incarnation(run: ActorFn, inbox: Inbox[Any], on_started: Callable[[], None]) -> None:
    """Run one incarnation of an actor: start it with `nursery.start` semantics, call
    `on_started()` once it is ready, and return when it has ended.

    Error handling: what the actor raises comes out wrapped in an exception group
    (`unwrap_group` gets it back); before readiness it is the exception itself.
    """
    async with trio.open_nursery() as nursery:
        await nursery.start(run, inbox)
        on_started()


@dataclass(eq=False)
class _Child:
    spec: ChildSpec[Any]
    mailbox: Mailbox[Any]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    started: bool = False


class Supervisor:
    """Starts, restarts and stops children. Made by `open_supervisor`, which owns the
    nursery the children run in."""

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
        """Start `spec` and return its reference once the child called
        `task_status.started()`.

        Error handling: an exception the child raises before `started()` is raised here
        and the child is forgotten. `RuntimeError` once the supervisor is stopping.
        """
        if self._stopping:
            raise RuntimeError(f"supervisor {self.name!r} is stopping")
        mailbox: Mailbox[M] = (
            spec.ref._mailbox if spec.ref is not None else Mailbox(spec.name, spec.mailbox_size)
        )
        child = _Child(spec, mailbox)
        self._children.append(child)
        try:
            await self._nursery.start(self._supervise, child)
        except BaseException:
            self._children.remove(child)
            raise
        return mailbox.ref

    async def shutdown(self, grace: float, *, first: Sequence[str] = ()) -> None:
        """Stop every child, in reverse start order, within `grace` seconds in total.

        The children named in `first` are stopped before the others, in that order (the
        workers whose results the others must still carry, say). Each child's mailbox is
        closed (later sends raise `ActorStopped`) and the child drains what is queued and
        returns; a child still running at the shared deadline is cancelled. No restarts
        happen once shutdown began. Returns when all ended.
        """
        self._stopping = True
        deadline = trio.current_time() + grace
        named = [c for name in first for c in self._children if c.spec.name == name]
        rest = [c for c in reversed(self._children) if c not in named]
        for child in [*named, *rest]:
            child.mailbox.close()
            if not child.mailbox.running:
                child.scope.cancel()  # waiting out a backoff: nothing to drain
            with trio.move_on_at(deadline):
                await child.done.wait()
            if not child.done.is_set():
                log.warning("%s did not stop within the grace period: cancelling", child.spec.name)
                child.scope.cancel()
                await child.done.wait()

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            children=tuple(c.spec.name for c in self._children),
            running=sum(1 for c in self._children if c.mailbox.running),
            restarts=self._restarts,
        )

    async def _cancel_children(self, *, sparing: _Child | None = None) -> None:
        """Cancel the children one by one, in reverse start order."""
        self._stopping = True
        for child in reversed(self._children):
            if child is not sparing:
                child.scope.cancel()
                await child.done.wait()

    async def _supervise(
        self, child: _Child, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        token = set_actor_name(child.spec.name)
        window = self._window

        async def too_many(crash: BaseException | None) -> bool:
            if child.spec.escalates and window.exceeded_after_one_more():
                # Shielded so the escalation cannot be lost to a concurrent stop.
                with trio.CancelScope(shield=True):
                    await self._cancel_children(sparing=child)
                raise Escalation(
                    self.name, child.spec.name, window.intensity, window.period
                ) from crash
            return False

        def restarted() -> None:
            child.mailbox.restarts += 1
            self._restarts += 1

        try:
            with child.scope:
                await restart_loop(
                    child.spec.name,
                    lambda: self._run_once(child, task_status),
                    backoff=child.spec.backoff or self._backoff,
                    period=window.period,
                    rng=self._rng,
                    restarts=lambda crash: self._should_restart(child, crash),
                    too_many=too_many,
                    stopped=lambda: self._stopping or child.mailbox.closed,
                    restarted=restarted,
                )
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

        def on_started() -> None:
            if not child.started:
                child.started = True
                task_status.started()

        inbox: Inbox[Any] = Inbox(child.mailbox)
        child.mailbox.running = True
        try:
            await run_incarnation(child.spec.run, inbox, on_started)
        except Exception as exc:
            crash = unwrap_group(exc)
            if not child.started:
                raise crash from crash.__cause__  # a failed first start fails start()
            if isinstance(crash, child.spec.expected):
                log.warning("actor %s failed: %s", child.spec.name, crash)
            else:
                log.error("actor %s crashed", child.spec.name, exc_info=crash)
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

    Resource handling: the supervisor owns a nursery. Leaving the block cancels the
    children still running, one by one in reverse start order (call `shutdown` first
    for a graceful stop); the block is left only when all of them have ended.

    Error handling: a crashed child is logged (`log.error` with its traceback and the
    actor's name) and restarted per its `Restart` type after `backoff.delay(n)`, `n`
    being its consecutive restarts (reset once an incarnation ran longer than
    `period`). More than `intensity` restarts within `period` seconds raise
    `Escalation` (its `__cause__` is the last crash). A lone exception from the block or
    from a child is raised as itself, not wrapped in an exception group; several
    concurrent ones come as an exception group.
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
                # Shielded so an outer cancellation still stops them in order; every
                # child's own scope is cancelled first, so each wait is short.
                with trio.CancelScope(shield=True):
                    await supervisor._cancel_children()
    except BaseExceptionGroup as group:
        leaf = unwrap_group(group)
        raise leaf from leaf.__cause__
