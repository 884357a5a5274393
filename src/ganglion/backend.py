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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import trio

from ganglion.errors import GanglionError
from ganglion.messages import Inbound, UserMessage
from ganglion.store import ConversationStore, OutboxItem, StoredMessage
from ganglion_actors import ActorError, Registry

__all__ = ["SUBMIT_TIMEOUT", "DaemonBackend", "InterfaceBackend", "SubmitError"]

# How long a thread may take to make a message durable before `submit` gives up.
SUBMIT_TIMEOUT = 30.0


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
