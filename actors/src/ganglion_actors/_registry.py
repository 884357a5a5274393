"""A registry of dynamic children keyed by id (Ganglion's conversation threads).

A child is spawned on the first message for its key. It is passivated when idle: once its
inbox has waited `idle_timeout` seconds for a message while the actor is not busy
(`Inbox.set_busy`) and its mailbox is empty, the registry removes it. The emptiness check
and the removal happen with no checkpoint in between, so no message can slip into a
mailbox nobody reads. The inbox then ends, the actor returns, and the next message for the
key spawns a fresh incarnation transparently; that incarnation starts only once the
passivated one has returned, so two never run for one key at the same time.

Children are transient: a crash restarts the same key after a jittered backoff with the
same mailbox (queued messages survive, references stay valid). A child that crashes more
than `intensity` times within `period` seconds is *given up*: removed, its queued and
waiting requests failed with `ActorStopped`, logged, counted in `statistics().failed`.
Unlike a supervisor's children it does not escalate: one broken conversation must not take
the whole daemon down. The next message for that key starts afresh.

The registry lives inside its host actor, `serve`, which owns the nursery the children run
in: put `registry.serve` in a `ChildSpec` under a supervisor.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ganglion_actors._backoff import DEFAULT_BACKOFF, Backoff, RestartWindow, restart_loop
from ganglion_actors._errors import ActorStopped
from ganglion_actors._mailbox import (
    ActorRef,
    Inbox,
    Mailbox,
    Reply,
    reset_actor_name,
    set_actor_name,
)
from ganglion_actors._supervisor import ActorFn, run_incarnation, unwrap_group

__all__ = ["Registry", "RegistryStatistics"]

log = logging.getLogger("ganglion_actors")

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    name: str
    live: int
    spawned: int
    passivated: int
    restarts: int
    failed: int
    queued: int


@dataclass(eq=False)
class _Entry(Generic[M]):
    mailbox: Mailbox[M]
    window: RestartWindow
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Registry(Generic[K, M]):
    """Children made by `spawn(key)` on demand, named `f"{name}/{key}"`.

    Error handling: `send`, `send_nowait` and `ask` raise `ActorStopped` while the host
    is not serving (not started yet, stopping or stopped) and when the child was given
    up; `send_nowait` raises `MailboxFull`; `ask` raises as `ActorRef.ask` does. A
    reference from `get` is valid until the child is passivated or given up; after
    that it raises `ActorStopped`, so prefer sending through the registry.
    """

    def __init__(
        self,
        name: str,
        spawn: Callable[[K], ActorFn],
        *,
        idle_timeout: float,
        mailbox_size: int = 64,
        intensity: int = 3,
        period: float = 5.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._spawn = spawn
        self._idle_timeout = idle_timeout
        self._mailbox_size = mailbox_size
        self._intensity = intensity
        self._period = period
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._nursery: trio.Nursery | None = None
        self._context = contextvars.Context()
        self._serving = False
        self._live: dict[K, _Entry[M]] = {}
        self._retiring: dict[K, _Entry[M]] = {}  # passivated, not yet returned
        self._spawned = self._passivated = self._restarts = self._failed = 0

    async def serve(
        self, inbox: Inbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the registry: an actor function for a `ChildSpec`.

        Resource handling: owns the nursery the children run in and is ready once it is
        open. When its own inbox ends (its mailbox was closed: a graceful stop) it stops
        intake of every child, lets each drain what is queued, and returns when all have
        ended. Cancelling the host cancels the children with it.
        """
        if self._serving:
            raise RuntimeError(f"registry {self.name!r} is already being served")
        self._serving = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._context = contextvars.copy_context()
                task_status.started()
                async for _ in inbox:
                    pass  # the host takes no messages of its own; it waits for the close
                self._nursery = None
                for entry in list(self._live.values()):
                    entry.mailbox.close()
        finally:
            self._nursery = None
            self._serving = False

    async def send(self, key: K, message: M) -> None:
        """Send `message` to the child for `key`, spawning it if needed; waits while
        its mailbox is full."""
        await self._ensure(key).mailbox.ref.send(message)

    def send_nowait(self, key: K, message: M) -> None:
        """Like `send` without waiting: `MailboxFull` when the child's mailbox is full."""
        self._ensure(key).mailbox.ref.send_nowait(message)

    async def ask(self, key: K, make: Callable[[Reply[R]], M]) -> R:
        """`ActorRef.ask` to the child for `key`, spawning it if needed."""
        return await self._ensure(key).mailbox.ref.ask(make)

    def get(self, key: K) -> ActorRef[M] | None:
        """The live child's reference, or None if it is not running."""
        entry = self._live.get(key)
        return entry.mailbox.ref if entry is not None else None

    def stop(self, key: K) -> bool:
        """End the child for `key` now, if it runs: its mailbox is closed (what waits in
        it fails with `ActorStopped`) and its work is cancelled. A later message spawns
        a new child. False when none was running."""
        entry = self._live.pop(key, None)
        if entry is None:
            return False
        self._retiring[key] = entry
        entry.mailbox.close()
        entry.scope.cancel()
        return True

    def live_keys(self) -> frozenset[K]:
        return frozenset(self._live)

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            name=self.name,
            live=len(self._live),
            spawned=self._spawned,
            passivated=self._passivated,
            restarts=self._restarts,
            failed=self._failed,
            queued=sum(e.mailbox.depth for e in self._live.values()),
        )

    def _ensure(self, key: K) -> _Entry[M]:
        entry = self._live.get(key)
        if entry is not None:
            return entry
        if self._nursery is None:
            raise ActorStopped(f"{self.name}/{key}", f"the {self.name} registry is not running")
        # The mailbox exists before the child runs, so the message can be queued at once.
        entry = _Entry(
            Mailbox(f"{self.name}/{key}", self._mailbox_size),
            RestartWindow(self._intensity, self._period),
        )
        self._live[key] = entry
        self._spawned += 1
        # A task inherits the context variables of the task that spawned it: a child
        # spawned in the context of the sender would keep the sender's alive (a web
        # request's socket, its app context: most of an idle conversation's memory) for as
        # long as it lives. Children are the host's, so they start from the host's context.
        self._context.run(self._nursery.start_soon, self._supervise, key, entry)
        return entry

    def _passivate(self, key: K, entry: _Entry[M]) -> bool:
        # No checkpoint here: nothing can be queued between the check and the removal.
        if not entry.mailbox.empty or self._live.get(key) is not entry:
            return False
        del self._live[key]
        self._retiring[key] = entry
        entry.mailbox.close()
        self._passivated += 1
        return True

    async def _supervise(self, key: K, entry: _Entry[M]) -> None:
        mailbox = entry.mailbox
        token = set_actor_name(mailbox.name)
        try:
            previous = self._retiring.get(key)
            if previous is not None and previous is not entry:
                await previous.done.wait()
            with entry.scope:
                await self._incarnations(key, entry)
        finally:
            if self._live.get(key) is entry:
                del self._live[key]
            if self._retiring.get(key) is entry:
                del self._retiring[key]
            left = mailbox.fail_remaining()
            if left:
                log.warning("%s stopped with %d message(s) undelivered", mailbox.name, left)
            entry.done.set()
            reset_actor_name(token)

    async def _incarnations(self, key: K, entry: _Entry[M]) -> None:
        """Run the child again after each crash, within its restart intensity."""
        mailbox = entry.mailbox

        async def too_many(crash: BaseException | None) -> bool:
            if not entry.window.exceeded_after_one_more():
                return False
            self._failed += 1
            log.error(
                "actor %s crashed more than %d times within %g s: giving up on it",
                mailbox.name,
                self._intensity,
                self._period,
            )
            return True

        def restarted() -> None:
            mailbox.restarts += 1
            self._restarts += 1

        await restart_loop(
            mailbox.name,
            lambda: self._run_once(key, entry),
            backoff=self._backoff,
            period=self._period,
            rng=self._rng,
            restarts=lambda crash: crash is not None and not mailbox.closed,
            too_many=too_many,
            stopped=lambda: mailbox.closed,
            restarted=restarted,
        )

    async def _run_once(self, key: K, entry: _Entry[M]) -> BaseException | None:
        """Run one incarnation; return its crash (None after a normal return)."""
        inbox: Inbox[M] = Inbox(
            entry.mailbox,
            idle_timeout=self._idle_timeout,
            on_idle=lambda: self._passivate(key, entry),
        )
        entry.mailbox.running = True
        try:
            await run_incarnation(self._spawn(key), inbox, lambda: None)
        except Exception as exc:
            crash = unwrap_group(exc)
            log.error("actor %s crashed", entry.mailbox.name, exc_info=crash)
            return crash
        finally:
            entry.mailbox.running = False
            inbox.finish()
        return None
