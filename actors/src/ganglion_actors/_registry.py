"""A registry of dynamic children keyed by id (Ganglion's conversation threads).

A child is spawned on the first message for its key and passivated when idle: once its
inbox has seen no message for `idle_timeout` seconds while the actor is not busy and its
mailbox is empty, the registry removes it — the emptiness check and the removal happen
with no checkpoint in between, so no message can slip into a mailbox nobody reads. The
next message for that key spawns a fresh incarnation transparently.

Children are transient: a crash restarts the same key after a jittered backoff with the
same mailbox (queued messages survive, references stay valid). A child that crashes more
than `intensity` times within `period` seconds is *given up*: removed, its queued asks
failed with `ActorStopped`, logged, counted. Unlike a supervisor's children it does not
escalate: one broken conversation must not take the whole daemon down.

The registry lives inside its host actor (`serve`), which owns the nursery the children
run in; put `registry.serve` in a `ChildSpec` under a supervisor.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ganglion_actors._errors import ActorStopped
from ganglion_actors._mailbox import (
    ActorRef,
    Inbox,
    Mailbox,
    Reply,
    reset_actor_name,
    set_actor_name,
)
from ganglion_actors._supervisor import DEFAULT_BACKOFF, ActorFn, Backoff, RestartWindow

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


class Registry(Generic[K, M]):
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
        self._live: dict[K, _Entry[M]] = {}
        self._spawned = self._passivated = self._restarts = self._failed = 0

    async def serve(
        self, inbox: Inbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the registry until its inbox ends, then drain every child and return."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                async for _ in inbox:
                    pass
                self._nursery = None  # stop spawning; let the live children drain
                for entry in list(self._live.values()):
                    entry.mailbox.close()
        finally:
            self._nursery = None

    async def send(self, key: K, message: M) -> None:
        """Send `message` to the child for `key`, spawning it if needed.

        Error handling: `ActorStopped` when the registry is not running.
        """
        while True:
            entry = self._ensure(key)
            try:
                await entry.mailbox.ref.send(message)
                return
            except ActorStopped:
                if self._nursery is None or self._live.get(key) is entry:
                    raise
                # passivated while we waited for room: the next incarnation takes it

    def send_nowait(self, key: K, message: M) -> None:
        """Like `send` without waiting: `MailboxFull` when the child's mailbox is full."""
        self._ensure(key).mailbox.ref.send_nowait(message)

    async def ask(self, key: K, make: Callable[[Reply[R]], M]) -> R:
        return await self._ensure(key).mailbox.ref.ask(make)

    def get(self, key: K) -> ActorRef[M] | None:
        entry = self._live.get(key)
        return entry.mailbox.ref if entry is not None else None

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
        entry = _Entry(
            Mailbox(f"{self.name}/{key}", self._mailbox_size),
            RestartWindow(self._intensity, self._period),
        )
        self._live[key] = entry
        self._spawned += 1
        self._nursery.start_soon(self._supervise, key, entry)
        return entry

    def _passivate(self, key: K, entry: _Entry[M]) -> bool:
        # Runs without a checkpoint: nothing can be queued between the check and the removal.
        if not entry.mailbox.empty or self._live.get(key) is not entry:
            return False
        del self._live[key]
        entry.mailbox.close()
        self._passivated += 1
        return True

    async def _supervise(self, key: K, entry: _Entry[M]) -> None:
        mailbox = entry.mailbox
        token = set_actor_name(mailbox.name)
        attempt = 0
        try:
            while True:
                crash = await self._run_once(key, entry)
                if crash is None or mailbox.closed:
                    return
                attempt = attempt + 1 if entry.window.recent() else 0
                if entry.window.exceeded_after_one_more():
                    self._failed += 1
                    log.error(
                        "%s crashed more than %d times within %g s: giving up on it",
                        mailbox.name,
                        self._intensity,
                        self._period,
                    )
                    return
                await trio.sleep(self._backoff.delay(attempt, self._rng))
                mailbox.restarts += 1
                self._restarts += 1
        finally:
            if self._live.get(key) is entry:
                del self._live[key]
            left = mailbox.fail_remaining()
            if left:
                log.warning("%s stopped with %d message(s) undelivered", mailbox.name, left)
            entry.done.set()
            reset_actor_name(token)

    async def _run_once(self, key: K, entry: _Entry[M]) -> BaseException | None:
        inbox: Inbox[M] = Inbox(
            entry.mailbox,
            idle_timeout=self._idle_timeout,
            on_idle=lambda: self._passivate(key, entry),
        )
        entry.mailbox.running = True
        try:
            await self._spawn(key)(inbox)
        except Exception as exc:
            log.error("%s crashed", entry.mailbox.name, exc_info=exc)
            return exc
        finally:
            entry.mailbox.running = False
            inbox.finish()
        return None
