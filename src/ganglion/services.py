"""Asking another actor with a time limit (`ask_within`), and a service actor (the
reminders, the heartbeat) in particular (`ask_service`).

Threads and tools ask the service actors for things (schedule a reminder, review the goals
now). A service that stopped, died with the request, or does not answer within
`SERVICE_TIMEOUT` becomes one `ServiceUnavailable` whose message can be shown as it is;
errors the service itself reports (a refused schedule) pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ganglion.errors import GanglionError
from ganglion_actors import ActorError, ActorRef, Reply

__all__ = ["SERVICE_TIMEOUT", "ServiceUnavailable", "ask_service", "ask_within"]

log = logging.getLogger(__name__)

M = TypeVar("M")
R = TypeVar("R")

SERVICE_TIMEOUT = 10.0


class ServiceUnavailable(GanglionError):
    """The service could not answer; the message says so in words for people."""


async def ask_within(
    seconds: float, ask: Callable[[], Awaitable[R]], error: Callable[[BaseException], Exception]
) -> R:
    """`await ask()` within `seconds`.

    Error handling: an actor that stopped, died with the request (`ActorError`) or did
    not answer in time becomes `error(that exception)`, raised from it; anything else
    (what the actor passed to `Reply.fail`) is raised as it is.
    """
    try:
        with trio.fail_after(seconds):
            return await ask()
    except (ActorError, trio.TooSlowError) as exc:
        raise error(exc) from exc


async def ask_service(ref: ActorRef[M], make: Callable[[Reply[R]], M], *, name: str) -> R:
    """`ref.ask(make)` within `SERVICE_TIMEOUT`.

    Error handling: `ServiceUnavailable` when the actor stopped or died with the request,
    or did not answer in time (one not started yet answers once it is); what the actor
    passed to `Reply.fail` is raised as it is.
    """

    def unavailable(exc: BaseException) -> ServiceUnavailable:
        log.warning("the %s service did not answer: %s", name, type(exc).__name__)
        return ServiceUnavailable(f"The {name} service did not answer; try again in a moment.")

    return await ask_within(SERVICE_TIMEOUT, lambda: ref.ask(make), unavailable)
