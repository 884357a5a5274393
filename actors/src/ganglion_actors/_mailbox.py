"""Mailboxes, references and request/reply.

A `Mailbox` is a bounded trio memory channel owned by whoever supervises the actor, not by
the running incarnation: it survives restarts, so every `ActorRef` handed out stays valid.
The actor reads it through an `Inbox`; everyone else writes to it through an `ActorRef`.

Request/reply: `ActorRef.ask` puts a fresh `Reply` next to the message. The `Inbox` that
hands the message to the actor remembers the reply, and when that incarnation ends every
reply it left unresolved fails with `ActorDied`; replies of messages still queued when the
actor stops for good fail with `ActorStopped`. So an ask never hangs on a dead actor; the
caller's own deadline (`trio.fail_after`) covers an actor that is alive but slow.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from ganglion_actors._errors import ActorDied, ActorStopped, MailboxFull

__all__ = [
    "ActorRef",
    "ActorStatistics",
    "Inbox",
    "Mailbox",
    "Reply",
    "current_actor_name",
    "reserve",
]

M = TypeVar("M")
R = TypeVar("R")

_actor_name: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ganglion_actor_name", default=None
)


def current_actor_name() -> str | None:
    """The name of the actor whose task is running (None outside any actor)."""
    return _actor_name.get()


def set_actor_name(name: str) -> contextvars.Token[str | None]:
    return _actor_name.set(name)


def reset_actor_name(token: contextvars.Token[str | None]) -> None:
    _actor_name.reset(token)


class Reply(Generic[R]):
    """A one-shot reply slot. The first `send` or `fail` wins; later ones are ignored."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: R | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def send(self, value: R) -> None:
        if not self.done:
            self._value = value
            self._event.set()

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self._error = exc
            self._event.set()

    async def wait(self) -> R:
        """Wait for the resolution: return the value sent or raise the exception failed."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Envelope(Generic[M]):
    message: M
    reply: Reply[Any] | None


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    name: str
    mailbox_depth: int
    mailbox_capacity: int
    running: bool
    closed: bool
    restarts: int
    received: int


class Mailbox(Generic[M]):
    """The bounded channel behind an actor, plus what its supervisor records about it."""

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the mailbox of {name!r} needs room for a message, not {capacity}")
        self.name = name
        self.capacity = capacity
        self._send, self._receive = trio.open_memory_channel[_Envelope[M]](capacity)
        self.closed = False
        self.running = False
        self.busy = False
        self.restarts = 0
        self.received = 0
        self.ref: ActorRef[M] = ActorRef(self)

    @property
    def depth(self) -> int:
        return self._send.statistics().current_buffer_used

    @property
    def empty(self) -> bool:
        stats = self._send.statistics()
        return stats.current_buffer_used == 0 and stats.tasks_waiting_send == 0

    def close(self) -> None:
        """Stop intake; what is queued is still delivered, then the inbox ends."""
        if not self.closed:
            self.closed = True
            self._send.close()

    def fail_remaining(self) -> int:
        """The actor is gone for good: fail the asks still queued; return how many
        messages were left undelivered."""
        self.close()
        left = 0
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return left
            left += 1
            if envelope.reply is not None:
                envelope.reply.fail(
                    ActorStopped(self.name, "it stopped before receiving the request")
                )

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            mailbox_depth=self.depth,
            mailbox_capacity=self.capacity,
            running=self.running,
            closed=self.closed,
            restarts=self.restarts,
            received=self.received,
        )


class ActorRef(Generic[M]):
    """The handle to an actor. Valid across restarts; cheap to copy around."""

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox[M]) -> None:
        self._mailbox = mailbox

    @property
    def name(self) -> str:
        return self._mailbox.name

    async def send(self, message: M) -> None:
        """Queue `message`, waiting while the mailbox is full.

        Error handling: raises `ActorStopped` if the mailbox is (or gets) closed.
        """
        await self._put(_Envelope(message, None))

    def send_nowait(self, message: M) -> None:
        """Queue `message` now. Raises `MailboxFull` or `ActorStopped`."""
        try:
            self._mailbox._send.send_nowait(_Envelope(message, None))
        except trio.WouldBlock:
            raise MailboxFull(self.name, self._mailbox.capacity) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(self.name) from None

    async def ask(self, make: Callable[[Reply[R]], M]) -> R:
        """Send the message `make(reply)` and wait for the actor's answer.

        Error handling: re-raises what the actor passed to `Reply.fail`; raises
        `ActorDied` if the incarnation that received the request ended without
        answering and `ActorStopped` if the actor stopped before receiving it. Put a
        deadline around the call (`trio.fail_after`) for an actor that is merely slow.
        """
        reply: Reply[R] = Reply()
        await self._put(_Envelope(make(reply), reply))
        return await reply.wait()

    def close(self) -> None:
        """Stop intake: later sends raise `ActorStopped`; the actor drains what is queued."""
        self._mailbox.close()

    def statistics(self) -> ActorStatistics:
        return self._mailbox.statistics()

    async def _put(self, envelope: _Envelope[M]) -> None:
        try:
            await self._mailbox._send.send(envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStopped(self.name) from None

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"


class Inbox(Generic[M]):
    """What one incarnation of an actor reads: `async for message in inbox`.

    The iteration ends (and `receive` raises `trio.EndOfChannel`) when the mailbox was
    closed and everything queued has been received, or, for registry children, when the
    actor is passivated as idle; the actor should then return. Requests (`ask`) it
    received and did not answer fail with `ActorDied` when this incarnation ends.
    """

    def __init__(
        self,
        mailbox: Mailbox[M],
        *,
        idle_timeout: float | None = None,
        on_idle: Callable[[], bool] | None = None,
    ) -> None:
        self._mailbox = mailbox
        self._idle_timeout = idle_timeout
        self._on_idle = on_idle
        self._replies: list[Reply[Any]] = []

    @property
    def name(self) -> str:
        return self._mailbox.name

    @property
    def ref(self) -> ActorRef[M]:
        return self._mailbox.ref

    def set_busy(self, busy: bool) -> None:
        """Mark the actor busy (work in progress in another task while it keeps
        receiving): a registry never passivates a busy actor as idle."""
        self._mailbox.busy = busy

    async def receive(self) -> M:
        """The next message. Raises `trio.EndOfChannel` when the inbox has ended."""
        while True:
            if self._idle_timeout is None:
                envelope = await self._mailbox._receive.receive()
                break
            with trio.move_on_after(self._idle_timeout):
                envelope = await self._mailbox._receive.receive()
                break
            if self._on_idle is not None and not self._mailbox.busy and self._on_idle():
                raise trio.EndOfChannel
        self._mailbox.received += 1
        if envelope.reply is not None:
            self._replies = [r for r in self._replies if not r.done]
            self._replies.append(envelope.reply)
        return envelope.message

    def __aiter__(self) -> AsyncIterator[M]:
        return self

    async def __anext__(self) -> M:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def finish(self) -> None:
        """The incarnation ended: fail every request it received and did not answer."""
        for reply in self._replies:
            reply.fail(ActorDied(self.name))
        self._replies.clear()


def reserve(name: str, capacity: int = 64) -> ActorRef[Any]:
    """The reference of an actor that is not started yet, for wiring actors that need each
    other: hand it out now, start the actor later with `ChildSpec(..., ref=it)`. Messages
    sent before then wait in its mailbox (up to `capacity`; then senders wait)."""
    return Mailbox[Any](name, capacity).ref
