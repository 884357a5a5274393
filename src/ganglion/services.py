"""Asking a service actor (the reminders, the heartbeat) with a time limit.

Threads and tools ask the service actors for things (schedule a reminder, review the goals
now). A service that stopped, died with the request, or does not answer within
`SERVICE_TIMEOUT` becomes one `ServiceUnavailable` whose message can be shown as it is;
errors the service itself reports (a refused schedule) pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import trio

from ganglion.errors import GanglionError
from ganglion_actors import ActorError, ActorRef, Reply

__all__ = ["SERVICE_TIMEOUT", "ServiceUnavailable", "ask_service"]

log = logging.getLogger(__name__)

M = TypeVar("M")
R = TypeVar("R")

SERVICE_TIMEOUT = 10.0


class ServiceUnavailable(GanglionError):
    """The service could not answer; the message says so in words for people."""


async def ask_service(ref: ActorRef[M], make: Callable[[Reply[R]], M], *, name: str) -> R:
    """`ref.ask(make)` within `SERVICE_TIMEOUT`.

    Error handling: `ServiceUnavailable` when the actor stopped or died with the request,
    or did not answer in time (one not started yet answers once it is); what the actor
    passed to `Reply.fail` is raised as it is.
    """
    try:
        with trio.fail_after(SERVICE_TIMEOUT):
            return await ref.ask(make)
    except (ActorError, trio.TooSlowError) as exc:
        log.warning("the %s service did not answer: %s", name, type(exc).__name__)
        raise ServiceUnavailable(
            f"The {name} service did not answer; try again in a moment."
        ) from exc
