"""The runtime's exceptions.

ActorError          base of everything below
├── MailboxFull     send_nowait() on a mailbox at capacity
├── ActorStopped    the actor's mailbox is closed: it is stopping or gone for good
├── ActorDied       an ask() was received by an incarnation that ended without replying
└── Escalation      a supervisor exceeded its restart intensity and gave up
"""

from __future__ import annotations

__all__ = ["ActorDied", "ActorError", "ActorStopped", "Escalation", "MailboxFull"]


class ActorError(Exception):
    """Base class of the runtime's errors."""


class MailboxFull(ActorError):
    """`send_nowait` found the mailbox at capacity; `send` would have waited."""

    def __init__(self, name: str, capacity: int) -> None:
        super().__init__(f"the mailbox of actor {name!r} is full ({capacity} messages)")
        self.name = name
        self.capacity = capacity


class ActorStopped(ActorError):
    """The actor takes no more messages: it is stopping, or gone and not coming back.
    Also raised to askers whose request was still queued when it stopped for good."""

    def __init__(self, name: str, detail: str = "its mailbox is closed") -> None:
        super().__init__(f"cannot reach actor {name!r}: {detail}")
        self.name = name


class ActorDied(ActorError):
    """The incarnation that received a request crashed or returned without replying."""

    def __init__(self, name: str) -> None:
        super().__init__(f"actor {name!r} ended before replying")
        self.name = name


class Escalation(ActorError):
    """A supervisor gave up; `child` names the actor whose crash was one too many and
    `__cause__` is that crash."""

    def __init__(self, supervisor: str, child: str, restarts: int, period: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {restarts} restarts within "
            f"{period:g} s (last crash: {child!r})"
        )
        self.supervisor = supervisor
        self.child = child
