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
    def __init__(self, name: str, capacity: int) -> None:
        super().__init__(f"the mailbox of actor {name!r} is full ({capacity} messages)")
        self.name = name
        self.capacity = capacity


class ActorStopped(ActorError):
    def __init__(self, name: str, detail: str = "it has stopped") -> None:
        super().__init__(f"cannot reach actor {name!r}: {detail}")
        self.name = name


class ActorDied(ActorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"actor {name!r} ended before replying")
        self.name = name


class Escalation(ActorError):
    """A supervisor gave up; `__cause__` is the last crash of `child`."""

    def __init__(self, supervisor: str, child: str, restarts: int, period: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {restarts} restarts within "
            f"{period:g} s (last crash: {child!r})"
        )
        self.supervisor = supervisor
        self.child = child
