"""The daemon as an interface actor (web chat, Matrix) sees it.

An interface turns what people send into `UserMessage`s and hands them to `submit`, and
delivers what the thread actors emit (it receives those events in its own mailbox, routed
by `DeliveryRouter`). Replies it could not deliver wait in the store's outbox; it reads
them with `undelivered` when it can deliver again and marks each one delivered once the
other side has it. It never touches the threads, the store or the registry directly.

Rules an interface keeps:

1. A message is acknowledged to its sender (a web `accepted` frame, a Matrix sync token
   advanced past its event) only after `submit` returned: `submit` returns once the
   message is durable (its turn is on disk, or it was a command).
2. A reply is marked delivered only after the other side accepted it (a homeserver's
   answer to the send, a websocket send that did not fail).

How an interface runs (`interface_child`): under the root supervisor, holding the delivery
route of the threads it owns (those whose `interface_for` is its name) for as long as it
runs, and restarted with backoff for as long as it fails, never escalating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import trio

from ganglion.delivery import DeliveryRouter
from ganglion.errors import GanglionError
from ganglion.messages import Inbound, Outbound, UserMessage
from ganglion.store import ConversationStore, OutboxItem, StoredMessage
from ganglion.threads.ids import interface_for
from ganglion_actors import ActorError, ActorFn, Backoff, ChildSpec, Inbox, Registry, Restart

__all__ = [
    "INTERFACE_BACKOFF",
    "SUBMIT_TIMEOUT",
    "DaemonBackend",
    "InterfaceBackend",
    "SubmitError",
    "interface_child",
]

# How long a thread may take to make a message durable before `submit` gives up.
SUBMIT_TIMEOUT = 30.0

# Interfaces fail for outside reasons (a port, a homeserver): retried up to once a minute.
INTERFACE_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.2, reset_after=60.0)


class SubmitError(GanglionError):
    """A message could not be made durable (its thread is stopping, crashed, or stuck);
    the interface must not acknowledge it, so the sender can send it again."""


class InterfaceBackend(Protocol):
    """What an interface actor needs from the daemon."""

    async def submit(self, message: UserMessage) -> None:
        """Hand `message` to its thread; return once it is durable.

        Error handling: `SubmitError` when it is not (do not acknowledge it).
        """
        ...

    async def history(
        self, thread_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[StoredMessage]:
        """A page of the thread's transcript, oldest first, before `before_id`."""
        ...

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        """Replies not yet delivered: of one thread, or of every thread (oldest first)."""
        ...

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        """Record that these replies reached their conversation."""
        ...


class DaemonBackend:
    """`InterfaceBackend` over the thread registry and the conversation store."""

    def __init__(self, threads: Registry[str, Inbound], store: ConversationStore) -> None:
        self._threads = threads
        self._store = store

    async def submit(self, message: UserMessage) -> None:
        try:
            with trio.fail_after(SUBMIT_TIMEOUT):
                await self._threads.ask(
                    message.thread_id, lambda accepted: replace(message, accepted=accepted)
                )
        except (ActorError, trio.TooSlowError) as exc:
            raise SubmitError(
                f"{message.thread_id} did not store the message ({type(exc).__name__})"
            ) from exc

    async def history(
        self, thread_id: str, *, before_id: int | None, limit: int
    ) -> Sequence[StoredMessage]:
        return await self._store.history_page(thread_id, before_id=before_id, limit=limit)

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        return await self._store.undelivered(thread_id)

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        await self._store.mark_delivered(outbox_ids)


def interface_child(name: str, run: ActorFn, router: DeliveryRouter) -> ChildSpec[Outbound]:
    """How the root supervisor runs the interface actor `run` (an `ActorFn` taking the
    interface's `Inbox[Outbound]`), named `name` ("web", "matrix", "system").

    Each incarnation holds the delivery route of the threads whose `interface_for` is
    `name` from before it starts until it ends, so the thread actors' events reach its
    mailbox and nothing else's. Error handling: restarted with `INTERFACE_BACKOFF` for as
    long as it fails and never escalating: one broken interface (a homeserver that went
    away) never stops the others, the conversations or the reminders. Replies emitted
    while it is down wait in the outbox.
    """

    async def serve(
        inbox: Inbox[Outbound], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with router.route(name, lambda thread_id: interface_for(thread_id) == name, inbox.ref):
            await run(inbox, task_status=task_status)

    return ChildSpec(
        name, serve, restart=Restart.TRANSIENT, backoff=INTERFACE_BACKOFF, escalates=False
    )
