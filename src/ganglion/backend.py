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

The web chat shows a conversation from the store alone, so the daemon keeps, for the
interfaces in `KEEPS_TRANSCRIPT`, what the model never sees beside what it does: a command
as typed (recorded by `submit`, before its thread runs it), and the notices and failed
turns its thread emits (recorded by `DisplayJournal`, the delivery router's journal, in
the emitting thread's task, so they keep their place among the thread's own rows).

How an interface runs (`interface_child`): under the root supervisor, holding the delivery
route of the threads it owns (those whose `interface_for` is its name) for as long as it
runs, and restarted with backoff for as long as it fails, never escalating.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Final, Literal, Protocol

import trio

from ganglion.delivery import DeliveryRouter
from ganglion.errors import GanglionError
from ganglion.ids import interface_for
from ganglion.inbox import FileInbox
from ganglion.messages import (
    ApprovalAnswer,
    ApprovalAsked,
    ApprovalResult,
    ChooseVersion,
    Inbound,
    Notice,
    Outbound,
    RewindTurn,
    StopTurn,
    TurnFailed,
    UserMessage,
    user_turn_id,
)
from ganglion.reminders.store import ReminderStore
from ganglion.services import ask_within
from ganglion.spend import Totals, UsageView
from ganglion.store import (
    ConversationStore,
    Library,
    OutboxItem,
    StoredMessage,
    StoreError,
    ThreadDeleted,
)
from ganglion.threads.approvals import Approver
from ganglion.threads.commands import parse_command
from ganglion.usage import Meter
from ganglion_actors import ActorFn, Backoff, ChildSpec, Inbox, Registry, Restart

__all__ = [
    "INTERFACE_BACKOFF",
    "KEEPS_TRANSCRIPT",
    "SUBMIT_TIMEOUT",
    "ControlsBackend",
    "ConversationDeleted",
    "DaemonBackend",
    "DisplayJournal",
    "InterfaceBackend",
    "LibraryBackend",
    "SubmitError",
    "Submitted",
    "interface_child",
]

log = logging.getLogger(__name__)

# The interfaces whose conversations are shown from the store (commands, notices and
# failed turns are kept for them too); a Matrix room keeps its own.
KEEPS_TRANSCRIPT: Final = frozenset({"web"})

# How long a thread may take to make a message durable before `submit` gives up.
SUBMIT_TIMEOUT = 30.0

# Interfaces fail for outside reasons (a port, a homeserver): retried up to once a minute.
INTERFACE_BACKOFF = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.2, reset_after=60.0)


class SubmitError(GanglionError):
    """A message could not be made durable (its thread is stopping, crashed, or stuck);
    the interface must not acknowledge it, so the sender can send it again."""


class ConversationDeleted(SubmitError):
    """The message's conversation was deleted: it is not taken, and sending it again
    will not help."""


TurnState = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class Submitted:
    """What `submit` made of a message: its turn (None for a command, which is not one)
    and that turn's state: 'queued' when it was new; for a resubmission (`duplicate`),
    the state the first submission's turn is in now ('done' for a command run already)."""

    turn_id: str | None
    state: TurnState
    duplicate: bool = False


class InterfaceBackend(Protocol):
    """What an interface actor needs from the daemon."""

    async def submit(self, message: UserMessage) -> Submitted:
        """Hand `message` to its thread; return once it is durable.

        Idempotent by `message.message_id`: a message sent again is not handed over
        twice, and its first turn's state is returned. Error handling: `SubmitError` when
        it is not durable (do not acknowledge it).
        """
        ...

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        """Replies not yet delivered: of one thread, or of every thread (oldest first)."""
        ...

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        """Record that these replies reached their conversation."""
        ...


class ControlsBackend(InterfaceBackend, Protocol):
    """What an interface whose people stop, edit and regenerate turns needs too (the web
    chat's Stop, Edit and Regenerate; a Matrix room's `/stop`, edits and reactions)."""

    async def stop(self, thread_id: str, turn_id: str) -> None:
        """Ask the thread to stop `turn_id` if it is running (its partial answer is kept)."""
        ...

    async def rewind(
        self, thread_id: str, turn_id: str, message_id: str, text: str | None
    ) -> Submitted:
        """Take back the thread's last turn `turn_id` and answer it again as the turn of
        `message_id`, with `text` when it is an edit; return once the new turn is durable.

        Idempotent by `message_id`, like `submit`. Error handling: `RewindRefused` (the
        message says why, safe to show) when it cannot be taken back; `SubmitError` when
        the new turn is not durable.
        """
        ...

    async def decide_approval(
        self, thread_id: str, approval_id: str, answer: ApprovalAnswer, by: str
    ) -> ApprovalResult:
        """The owner's answer, given in conversation `thread_id` by `by` (a Matrix user
        id; "owner" in the web chat), to a question asked there; what came of it, in a
        few words to show. The first answer wins; a question asked elsewhere is not
        answered from here."""
        ...

    async def open_approvals(self, thread_id: str) -> Sequence[ApprovalAsked]:
        """The questions still open in conversation `thread_id` (to ask them again)."""
        ...


class LibraryBackend(ControlsBackend, Protocol):
    """What an interface that lists its conversations needs too (the web chat): what
    changes a conversation. It reads them from the store's library directly
    (`ganglion.store.Library`: list, search, history, queued turns)."""

    async def rename(self, thread_id: str, title: str) -> None: ...

    async def archive(self, thread_id: str, archived: bool) -> None: ...

    async def delete(self, thread_id: str) -> int:
        """Delete a conversation for good: its reminders are cancelled first (how many is
        returned), its actor is stopped, its history and its inbox are gone."""
        ...

    async def usage(self, thread_id: str) -> UsageView:
        """What the conversation spent (in all and today), what every conversation spent
        today, and the model it talks to."""
        ...

    async def versions(self, thread_id: str, turn_id: str) -> tuple[str, ...]:
        """The answered versions of the last turn `turn_id` (regenerated answers, itself
        among them), oldest first; only `turn_id` when there is nothing to choose."""
        ...

    async def choose_version(self, thread_id: str, turn_id: str) -> None:
        """Show the version `turn_id` of the last turn's answer instead of the one shown;
        return once the choice is durable. Error handling: `RewindRefused` (safe to show)
        when it cannot be made now; `SubmitError` when it was not stored."""
        ...


class DaemonBackend:
    """`LibraryBackend` over the thread registry and the conversation store."""

    def __init__(
        self,
        threads: Registry[str, Inbound],
        store: ConversationStore,
        reminders: ReminderStore,
        inbox: FileInbox,
        approver: Approver,
        meter: Meter | None = None,
        models: Mapping[str | None, str] | None = None,
    ) -> None:
        self._approver = approver
        self._meter = meter
        self._models = dict(models or {})  # the model's id by its name (None: the main one)
        self._threads = threads
        self._store = store
        self._reminders = reminders
        self._inbox = inbox

    async def decide_approval(
        self, thread_id: str, approval_id: str, answer: ApprovalAnswer, by: str
    ) -> ApprovalResult:
        return await self._approver.answer(
            approval_id, answer, by=by, interface=interface_for(thread_id), asked_in=thread_id
        )

    async def open_approvals(self, thread_id: str) -> Sequence[ApprovalAsked]:
        return await self._approver.questions_in(thread_id)

    async def usage(self, thread_id: str) -> UsageView:
        if self._meter is None:
            raise StoreError("usage is not kept in this daemon")
        in_all, today = await self._meter.conversation(thread_id)
        everyone = await self._meter.today()
        summary = await self._store.library.thread_summary(thread_id)
        model = summary.model if summary is not None else None
        if model not in self._models:
            model = None  # a name the config no longer has: the main model answers
        return UsageView(
            self._meter.day,
            sum(in_all.values(), Totals()),
            sum(today.values(), Totals()),
            sum(everyone.values(), Totals()),
            model,
            self._models.get(model, ""),
        )

    async def submit(self, message: UserMessage) -> Submitted:
        thread_id = message.thread_id
        turn_id = user_turn_id(thread_id, message.message_id) if message.message_id else None
        command = parse_command(message.text) is not None
        recorded: StoredMessage | None = None
        try:
            if command and message.interface in KEEPS_TRANSCRIPT:
                # Recorded before the thread has it, so its output lands after it.
                recorded, created = await self._store.library.record(
                    thread_id, "command", message.text, interface=message.interface, turn_id=turn_id
                )
                if not created:
                    return Submitted(None, "done", duplicate=True)
            # A message received before is recognised by its turn id where its turn is
            # stored: the thread answers with that turn's state.
            before: str | None = await ask_within(
                SUBMIT_TIMEOUT,
                lambda: self._threads.ask(
                    thread_id, lambda accepted: replace(message, accepted=accepted)
                ),
                partial(_not_stored, thread_id, "message"),
            )
        except ThreadDeleted as exc:
            raise ConversationDeleted(f"{thread_id} was deleted") from exc
        except (SubmitError, StoreError) as exc:
            if recorded is not None:
                with trio.CancelScope(shield=True):
                    await self._forget(recorded.id)
            if isinstance(exc, StoreError):
                raise _not_stored(thread_id, "message", exc) from exc
            raise
        if before is not None and turn_id is not None:
            return Submitted(turn_id, _state(before), True)
        return Submitted(None if command else turn_id, "queued")

    async def rewind(
        self, thread_id: str, turn_id: str, message_id: str, text: str | None
    ) -> Submitted:
        new_turn_id = user_turn_id(thread_id, message_id)
        try:
            existing = await self._submitted(new_turn_id)
            if existing is not None:
                return existing
            await ask_within(
                SUBMIT_TIMEOUT,
                lambda: self._threads.ask(
                    thread_id,
                    lambda accepted: RewindTurn(thread_id, turn_id, message_id, text, accepted),
                ),
                partial(_not_stored, thread_id, "rewind"),
            )
        except ThreadDeleted as exc:
            raise ConversationDeleted(f"{thread_id} was deleted") from exc
        except StoreError as exc:
            raise _not_stored(thread_id, "rewind", exc) from exc
        return Submitted(new_turn_id, "queued")

    async def versions(self, thread_id: str, turn_id: str) -> tuple[str, ...]:
        return await self._store.turns.versions(thread_id, turn_id)

    async def choose_version(self, thread_id: str, turn_id: str) -> None:
        try:
            await ask_within(
                SUBMIT_TIMEOUT,
                lambda: self._threads.ask(
                    thread_id, lambda accepted: ChooseVersion(thread_id, turn_id, accepted)
                ),
                partial(_not_stored, thread_id, "choice"),
            )
        except ThreadDeleted as exc:
            raise ConversationDeleted(f"{thread_id} was deleted") from exc
        except StoreError as exc:
            raise _not_stored(thread_id, "choice", exc) from exc

    async def _submitted(self, turn_id: str) -> Submitted | None:
        """How a turn sent before stands now (None: it was never taken)."""
        existing = await self._store.turns.turn(turn_id)
        return None if existing is None else Submitted(turn_id, _state(existing.state), True)

    async def _forget(self, message_id: int) -> None:
        try:
            await self._store.library.forget(message_id)
        except StoreError:
            log.warning("a command its thread did not take stays recorded", exc_info=True)

    async def stop(self, thread_id: str, turn_id: str) -> None:
        try:
            await ask_within(
                SUBMIT_TIMEOUT,
                lambda: self._threads.send(thread_id, StopTurn(thread_id, turn_id)),
                partial(_not_stored, thread_id, "stop"),
            )
        except SubmitError:
            log.warning("could not ask %s to stop %s", thread_id, turn_id, exc_info=True)

    async def rename(self, thread_id: str, title: str) -> None:
        await self._store.library.rename_thread(thread_id, title)

    async def archive(self, thread_id: str, archived: bool) -> None:
        await self._store.library.archive_thread(thread_id, archived)

    async def delete(self, thread_id: str) -> int:
        # In this order: nothing the conversation set up may fire into it once it is
        # gone, and nothing it was doing may write after the delete.
        cancelled = await self._reminders.cancel_thread(thread_id)
        self._threads.stop(thread_id)
        await self._store.library.delete_thread(thread_id)
        try:
            files = await self._inbox.remove(thread_id)
        except OSError:
            files = 0
            log.warning("the inbox of deleted conversation %s stays", thread_id, exc_info=True)
        log.info(
            "deleted conversation %s, %d of its reminders and %d file(s) it held",
            thread_id,
            cancelled,
            files,
        )
        return cancelled

    async def undelivered(self, thread_id: str | None = None) -> Sequence[OutboxItem]:
        return await self._store.outbox.undelivered(thread_id)

    async def mark_delivered(self, outbox_ids: Sequence[int]) -> None:
        await self._store.outbox.mark_delivered(outbox_ids)


def _not_stored(thread_id: str, what: str, exc: BaseException) -> SubmitError:
    return SubmitError(f"{thread_id} did not store the {what} ({type(exc).__name__})")


def _state(state: str) -> TurnState:
    match state:
        case "queued" | "running" | "done" | "failed":
            return state
    raise StoreError(f"a turn in an unknown state {state!r}")


class DisplayJournal:
    """The delivery router's journal: records the notices and failed turns of the
    conversations of `KEEPS_TRANSCRIPT` interfaces, so they come back with the history.

    Error handling: a record that cannot be written is logged and the event delivered
    anyway (a live tab still sees it)."""

    def __init__(self, library: Library) -> None:
        self._library = library

    async def __call__(self, event: Outbound) -> None:
        interface = interface_for(event.thread_id)
        if interface not in KEEPS_TRANSCRIPT:
            return
        match event:
            case Notice(text=text, turn_id=turn_id):
                kind = "notice"
            case TurnFailed(message=text, turn_id=turn_id):
                kind = "failed"
            case _:
                return
        try:
            await self._library.record(
                event.thread_id, kind, text, interface=interface, turn_id=turn_id
            )
        except StoreError:
            log.warning("a %s for %s was not recorded", kind, event.thread_id, exc_info=True)


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
