"""The delivery route: outbound events go to the interface that owns the thread.

Each interface registers which thread ids it owns (`web_…` tabs, `!room:server` rooms) and
the mailbox that takes its events. The thread actor never knows which interface it talks
to. An event with no live route is dropped here on purpose: final replies are already in
the store's outbox, and the interface delivers them when it is back.

A `journal`, when given, sees every event before it is routed, in the emitter's task: it
records what an interface shows from the store later (the web chat's notices and failed
turns, `backend.DisplayJournal`), in order with the rows the emitter writes next.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from ganglion.messages import Outbound
from ganglion_actors import ActorStopped

__all__ = ["DeliveryRouter", "DeliveryStatistics", "Sink"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where an interface takes its events: usually its actor's `ActorRef`."""

    async def send(self, event: Outbound, /) -> None: ...


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    routes: tuple[str, ...]
    delivered: int
    unrouted: int


@dataclass(slots=True)
class _Route:
    name: str
    owns: Callable[[str], bool]
    sink: Sink


class DeliveryRouter:
    """Routes outbound events to the interface that owns their thread.

    Owns: the routes (a name, which thread ids it owns, the sink). Interfaces register
    when they are ready and unregister when they stop; the first route that owns a thread
    gets its events. Error handling: an event with no route, or whose interface is
    stopping, is dropped and counted (final replies are in the outbox already). Resource
    handling: `deliver` waits while the sink's mailbox is full, never longer.
    """

    def __init__(self, journal: Callable[[Outbound], Awaitable[None]] | None = None) -> None:
        self._journal = journal
        self._routes: dict[str, _Route] = {}
        self._delivered = 0
        self._unrouted = 0
        self._observers: list[Callable[[Outbound], None]] = []

    def register(self, name: str, owns: Callable[[str], bool], sink: Sink) -> None:
        """Route events of every thread for which `owns(thread_id)` is true to `sink`."""
        self._routes[name] = _Route(name, owns, sink)

    def unregister(self, name: str) -> None:
        self._routes.pop(name, None)

    @contextmanager
    def route(self, name: str, owns: Callable[[str], bool], sink: Sink) -> Iterator[None]:
        """`register` for the duration of the block (an interface's whole life)."""
        self.register(name, owns, sink)
        try:
            yield
        finally:
            self.unregister(name)

    def observe(self, observer: Callable[[Outbound], None]) -> None:
        """Call `observer(event)` for every event, before it is routed (status and metrics
        count turns and tool calls this way). It must be quick and must not raise."""
        self._observers.append(observer)

    @contextmanager
    def observing(self, observer: Callable[[Outbound], None]) -> Iterator[None]:
        """`observe` for the duration of the block (a service's whole life)."""
        self.observe(observer)
        try:
            yield
        finally:
            self._observers.remove(observer)

    def route_for(self, thread_id: str) -> Sink | None:
        for route in self._routes.values():
            if route.owns(thread_id):
                return route.sink
        return None

    async def deliver(self, event: Outbound) -> None:
        """Hand `event` to its interface, waiting while that interface's mailbox is full.

        Interfaces drain their mailbox without waiting on any client or on the disk (a
        slow web socket is closed, delivery marks are written beside the loop), so the
        wait is short and one slow client never holds up another conversation. The
        journal, if any, records the event first (and never raises); observers see it
        next."""
        if self._journal is not None:
            await self._journal(event)
        for observer in self._observers:
            observer(event)
        sink = self.route_for(event.thread_id)
        if sink is None:
            self._unrouted += 1
            log.debug("no route for %s (%s)", event.thread_id, type(event).__name__)
            return
        try:
            await sink.send(event)
        except ActorStopped:
            self._unrouted += 1
            log.debug("route for %s is stopping; event dropped", event.thread_id)
            return
        self._delivered += 1

    def statistics(self) -> DeliveryStatistics:
        return DeliveryStatistics(tuple(self._routes), self._delivered, self._unrouted)
