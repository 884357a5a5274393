"""The reminder actor: croniter + SQLite, exactly once.

It sleeps until the next due slot (read from an index, so thousands of waiting reminders
cost nothing), wakes at once when its mailbox gets a request, and never sleeps longer
than `MAX_SLEEP` so a wall-clock jump (suspend/resume, an NTP step) is noticed within a
minute. Firing a slot is three steps, each durable before the next:

1. claim the slot in the ledger and advance the reminder (one transaction);
2. hand a `ReminderDue` to the target thread and wait for its acknowledgement, which the
   thread sends once the reminder's turn (id derived from the slot) is on disk;
3. mark the slot done.

A kill between 1 and 3 leaves a claimed slot, which is handed over again on start; the
thread takes a given slot's turn only once. A thread that does not acknowledge (it
crashed, it is stopping, it is stuck past `HANDOVER_TIMEOUT`) leaves the slot claimed too,
and it is handed over again after `RETRY_DELAY`. So a slot is never lost and never
doubled. All the slots due at one wake are claimed in one transaction, handed over
concurrently and marked done in one more: a burst costs two synced writes here, plus each
thread's own write of its turn.

Should a slot ever be found done without its turn (a conversation database restored
from an older backup, a bug), start-up says so in the log and in the thread, and hands it
over again if it is still within the grace period (reported as missed otherwise).

Slots missed while the daemon was down fire once (a recurring reminder that missed many
fires once, not once per slot) if the newest is within `reminders.misfire_grace`; older
ones are recorded as missed and the owner is told in the thread. One-shots are never
silently dropped.

An autonomous turn (a reminder firing, a heartbeat review) may schedule only one-shot
reminders, and only `MAX_FROM_REMINDERS` of those may be pending: no reminder or heartbeat
can breed reminders in a loop. Only a person sets recurring ones.

The tree runs it with `reminders_child`, on the reference the threads and the scheduling
tools already hold, handing reminders over through the thread registry and telling the
owner through the delivery router.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import trio

from ganglion.config import RemindersConfig
from ganglion.delivery import DeliveryRouter
from ganglion.messages import (
    AddReminder,
    CancelReminder,
    ConfirmReminder,
    Inbound,
    ListReminders,
    Notice,
    ReminderDue,
    ReminderInfo,
    ReminderRequest,
)
from ganglion.reminders.schedule import (
    Schedule,
    ScheduleError,
    describe,
    next_fire,
    parse_duration,
    validate,
    zone,
)
from ganglion.reminders.store import Claim, Reminder, ReminderStore, Slot
from ganglion.reminders.text import reminder_info
from ganglion.store import ThreadDeleted
from ganglion_actors import ActorDied, ActorRef, ActorStopped, ChildSpec, Inbox, Registry

__all__ = ["MAX_SLEEP", "SYSTEM_REMINDER_THREAD", "ReminderActor", "reminders_child"]

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0
# How long a thread may take to put a reminder's turn on disk before the slot is retried.
HANDOVER_TIMEOUT = 60.0
RETRY_DELAY = 10.0
# How far back start-up checks done slots against the conversation store.
RECHECK_WINDOW = timedelta(days=7)
MAX_FROM_REMINDERS = 5
AUTONOMOUS_SOURCES = frozenset({"reminder", "heartbeat"})
SYSTEM_REMINDER_THREAD = "system:reminders"

# Hands a reminder to its thread and returns once its turn is durable there; raises
# `ActorDied`/`ActorStopped` when the thread cannot take it.
Deliver = Callable[[ReminderDue], Awaitable[None]]
Notify = Callable[[str, str], Awaitable[None]]
# Which of these turn ids the conversation store has no turn for.
MissingTurns = Callable[[Sequence[str]], Awaitable[set[str]]]
WallClock = Callable[[], datetime]


def _wall_now() -> datetime:
    return datetime.now(UTC)


def reminders_child(
    store: ReminderStore,
    config: RemindersConfig,
    default_timezone: str,
    threads: Registry[str, Inbound],
    router: DeliveryRouter,
    *,
    missing_turns: MissingTurns,
    ref: ActorRef[ReminderRequest],
) -> ChildSpec[ReminderRequest]:
    """The reminder actor as the root supervisor runs it: started on `ref` (reserved
    before the tree starts), a fresh `ReminderActor` each incarnation (the ledger makes
    a restart safe). It hands each `ReminderDue` to its thread through `threads` (which
    returns once the thread has the reminder's turn on disk) and tells the owner through
    `router`. Permanent, and its crashes count toward the root's restart intensity.
    """

    async def deliver(due: ReminderDue) -> None:
        await threads.ask(due.thread_id, lambda accepted: replace(due, accepted=accepted))

    async def notify(thread_id: str, text: str) -> None:
        await router.deliver(Notice(thread_id, text))

    async def serve(
        inbox: Inbox[ReminderRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        actor = ReminderActor(
            store, config, default_timezone, deliver, notify, missing_turns=missing_turns
        )
        await actor.serve(inbox, task_status=task_status)

    return ChildSpec("reminders", serve, ref=ref)


@dataclass(slots=True)
class _Handover:
    slot: Slot
    accepted: bool = False
    deleted: bool = False  # its conversation was deleted: the reminder ends


class ReminderActor:
    """The reminder actor's state and behaviour; `serve` is its actor function.

    Owns: nothing but its reference to the reminder store (scheduler.db) and the retry
    list of slots whose threads did not confirm. It hands `ReminderDue`s to threads
    through `deliver` (which returns once the turn is durable) and tells the owner about
    missed or refused reminders through `notify`. Error handling: refused requests are
    `ScheduleError`s in the reply; store errors end the incarnation (the supervisor
    restarts it, and the ledger makes the restart safe). Time: `wall` for the calendar,
    trio's clock for waiting, so tests drive both.
    """

    def __init__(
        self,
        store: ReminderStore,
        config: RemindersConfig,
        default_timezone: str,
        deliver: Deliver,
        notify: Notify,
        *,
        missing_turns: MissingTurns | None = None,
        wall: WallClock = _wall_now,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        self.store = store
        self.config = config
        self.default_timezone = default_timezone
        self.deliver = deliver
        self.notify = notify
        self.missing_turns = missing_turns
        self.wall = wall
        self.max_sleep = max_sleep
        self._retry: list[Slot] = []
        self._retry_at = math.inf

    async def serve(
        self,
        inbox: Inbox[ReminderRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.recheck_done()
        await self.resend_unfinished()
        task_status.started()
        while True:
            await self.fire_due()
            await self.retry_unacknowledged()
            due = await self.store.next_due_at()
            wait = self.max_sleep
            if due is not None:
                wait = min(self.max_sleep, max(0.0, (due - self.wall()).total_seconds()))
            wait = min(wait, max(0.0, self._retry_at - trio.current_time()))
            request: ReminderRequest | None = None
            with trio.move_on_after(wait):
                try:
                    request = await inbox.receive()
                except trio.EndOfChannel:
                    return
            if request is not None:
                await self.handle(request)

    # -- firing -------------------------------------------------------------------------

    async def resend_unfinished(self) -> None:
        slots = await self.store.unfinished()
        for slot in slots:
            log.info(
                "reminder %s: slot %s was claimed before a stop; sending it",
                slot.reminder.id,
                slot.key,
            )
        await self._hand_over(slots)

    async def fire_due(self) -> int:
        """Fire every slot that is due now; return how many were handed over.

        All the slots due at one wake are claimed in one transaction, handed over, then
        marked done in one more: a burst of reminders due in the same second costs two
        synced writes, not two per reminder.
        """
        now = self.wall()
        claims = []
        for reminder in await self.store.due(now):
            assert reminder.next_fire is not None
            if not await self._still_allowed(reminder):
                continue
            slot = Slot(reminder, reminder.next_fire)
            following = next_fire(reminder.schedule, now)  # coalesces every missed slot
            late = (now - slot.at).total_seconds()
            claims.append(Claim(slot, following, missed=late > self.config.misfire_grace))
        won = await self.store.claim(claims)
        for claim in won:
            if claim.missed:
                await self._report_missed(claim.slot)
        fired = [claim.slot for claim in won if not claim.missed]
        await self._hand_over(fired)
        if fired:
            await self.store.mirror()
        return len(fired)

    async def _still_allowed(self, reminder: Reminder) -> bool:
        """Check a due reminder against today's limits before it fires: a row written into
        scheduler.db behind the actor's back (a shell command, an edit) may break them.
        One that does is turned off, logged and reported, never fired."""
        if reminder.schedule.kind == "at":
            return True
        assert reminder.next_fire is not None
        try:
            validate(reminder.schedule, reminder.next_fire, min_interval=self.config.min_interval)
        except ScheduleError as exc:
            problem = str(exc)
        else:
            return True
        await self.store.cancel(reminder.id)
        text = (
            f"Reminder [{reminder.id}] {reminder.text!r} was turned off without firing: "
            f"{problem} (it was not set through Ganglion)."
        )
        log.warning("%s", text)
        await self.notify(self._target(reminder), text)
        return False

    async def retry_unacknowledged(self) -> None:
        """Hand over again the slots whose threads did not acknowledge, once it is time."""
        if self._retry and trio.current_time() >= self._retry_at:
            slots, self._retry, self._retry_at = self._retry, [], math.inf
            await self._hand_over(slots)

    async def recheck_done(self) -> None:
        """Find slots marked done whose turn the conversation store does not have."""
        if self.missing_turns is None:
            return
        slots = await self.store.done_since(self.wall() - RECHECK_WINDOW)
        turn_ids = {self._due(slot).turn_id: slot for slot in slots}
        lost = [turn_ids[t] for t in await self.missing_turns(list(turn_ids))]
        lost.sort(key=lambda slot: slot.at)
        resend = []
        for slot in lost:
            log.warning(
                "reminder %s: slot %s is marked done but its turn is not in the conversation "
                "store (a restored backup?)",
                slot.reminder.id,
                slot.key,
            )
            if (self.wall() - slot.at).total_seconds() <= self.config.misfire_grace:
                resend.append(slot)
                await self.notify(
                    self._target(slot.reminder),
                    f"Reminder [{slot.reminder.id}] {slot.reminder.text!r} was marked as "
                    "fired, but its turn was never recorded; it is delivered now.",
                )
            else:
                await self._report_missed(
                    slot, "and was marked as fired, but its turn was never recorded"
                )
        await self.store.mark_missed(*[slot for slot in lost if slot not in resend])
        await self._hand_over(resend)

    async def _hand_over(self, slots: Sequence[Slot]) -> None:
        """Hand the slots to their threads at once; mark done those whose turn is durable."""
        if not slots:
            return
        handovers = [_Handover(slot) for slot in slots]
        async with trio.open_nursery() as nursery:
            for handover in handovers:
                nursery.start_soon(self._hand_over_one, handover)
        await self.store.complete(*[h.slot for h in handovers if h.accepted])
        gone = [h.slot for h in handovers if h.deleted]
        for slot in gone:
            await self.store.cancel(slot.reminder.id)
        await self.store.mark_missed(*gone)
        failed = [h.slot for h in handovers if not h.accepted and not h.deleted]
        if failed:
            self._retry += failed
            self._retry_at = min(self._retry_at, trio.current_time() + RETRY_DELAY)

    async def _hand_over_one(self, handover: _Handover) -> None:
        reminder = handover.slot.reminder
        due = self._due(handover.slot)
        with trio.move_on_after(HANDOVER_TIMEOUT):
            try:
                await self.deliver(due)
            except ThreadDeleted:
                log.info(
                    "reminder %s: its conversation %s was deleted; cancelled, not fired",
                    reminder.id,
                    due.thread_id,
                )
                handover.deleted = True
                return
            except (ActorDied, ActorStopped) as exc:
                log.warning(
                    "reminder %s: %s did not take slot %s (%s); it stays claimed",
                    reminder.id,
                    due.thread_id,
                    due.slot,
                    type(exc).__name__,
                )
                return
            handover.accepted = True
            return
        log.warning(
            "reminder %s: %s did not confirm slot %s within %g s; it stays claimed",
            reminder.id,
            due.thread_id,
            due.slot,
            HANDOVER_TIMEOUT,
        )

    @staticmethod
    def _target(reminder: Reminder) -> str:
        if reminder.system or reminder.thread_id is None:
            return SYSTEM_REMINDER_THREAD
        return reminder.thread_id

    def _due(self, slot: Slot) -> ReminderDue:
        """The message that hands `slot` to its thread (its turn id derives from it)."""
        reminder = slot.reminder
        return ReminderDue(
            self._target(reminder), reminder.id, slot.key, reminder.text, reminder.system
        )

    async def _report_missed(self, slot: Slot, circumstance: str | None = None) -> None:
        reminder = slot.reminder
        local = slot.at.astimezone(zone(reminder.schedule.timezone))
        if circumstance is None:
            circumstance = (
                f"while Ganglion was not running, more than {self.config.misfire_grace:g} s ago"
            )
        text = (
            f"Missed reminder [{reminder.id}] {reminder.text!r}: it was due {local:%Y-%m-%d %H:%M} "
            f"({reminder.schedule.timezone}) {circumstance}."
        )
        log.warning("%s", text)
        await self.notify(reminder.thread_id or SYSTEM_REMINDER_THREAD, text)

    # -- requests -----------------------------------------------------------------------

    async def handle(self, request: ReminderRequest) -> None:
        match request:
            case AddReminder(reply=reply):
                try:
                    reply.send(await self.add(request))
                except ScheduleError as exc:
                    reply.fail(exc)
            case CancelReminder(reminder_id=reminder_id, reply=reply):
                reply.send(await self.store.cancel(reminder_id))
            case ConfirmReminder(reply=reply):
                try:
                    reply.send(await self.confirm(request))
                except ScheduleError as exc:
                    reply.fail(exc)
            case ListReminders(reply=reply, thread_id=thread_id, include_system=system):
                reminders = await self.store.active() + await self.store.awaiting()
                if thread_id is not None:
                    reminders = [
                        r for r in reminders if r.thread_id == thread_id or (system and r.system)
                    ]
                reply.send(tuple(reminder_info(r) for r in reminders))

    async def add(self, request: AddReminder) -> ReminderInfo:
        """Validate and store a reminder. Raises `ScheduleError` with a clear message;
        nothing is stored then."""
        text = request.text.strip()
        if not text:
            raise ScheduleError("the reminder text is empty")
        if len(text) > self.config.max_text_chars:
            raise ScheduleError(
                f"the reminder text is longer than {self.config.max_text_chars} characters"
            )
        if await self.store.count_active() >= self.config.max_active:
            raise ScheduleError(
                f"there are already {self.config.max_active} active reminders; cancel some first"
            )
        if not request.system and request.thread_id is None:
            raise ScheduleError("a reminder needs a thread to be delivered to, or system: true")
        await self._limit_per_turn_and_conversation(request)
        now = self.wall()
        schedule = self._schedule(request, now)
        if request.source in AUTONOMOUS_SOURCES:
            await self._limit_reminder_breeding(schedule)
        validate(schedule, now, min_interval=self.config.min_interval)
        first = next_fire(schedule, now)
        if first is None:
            raise ScheduleError("this schedule never fires")
        awaiting = self.config.confirm_recurring and schedule.kind != "at"
        reminder = await self.store.add(
            text,
            schedule,
            thread_id=request.thread_id,
            system=request.system,
            next_fire=first,
            created_by=request.source,
            turn_id=request.turn_id,
            awaiting_confirmation=awaiting,
        )
        if awaiting:
            log.info(
                "reminder %s awaits the owner's confirmation: %s", reminder.id, describe(schedule)
            )
        else:
            log.info(
                "reminder %s scheduled: %s, first at %s", reminder.id, describe(schedule), first
            )
        return reminder_info(reminder)

    async def confirm(self, request: ConfirmReminder) -> ReminderInfo:
        """Turn on a recurring reminder the model set, from the conversation it was set in
        (its first slot counted from now). Raises `ScheduleError` saying why not."""
        reminder = await self.store.get(request.reminder_id)
        if (
            reminder is None
            or not reminder.awaiting_confirmation
            or reminder.thread_id != request.thread_id
        ):
            raise ScheduleError(
                f"no reminder {request.reminder_id!r} of this conversation awaits confirmation"
            )
        first = next_fire(reminder.schedule, self.wall())
        if first is None or not await self.store.confirm(reminder.id, first):
            raise ScheduleError(f"reminder {reminder.id!r} can no longer fire")
        log.info("reminder %s confirmed by the owner: first at %s", reminder.id, first)
        confirmed = await self.store.get(reminder.id)
        assert confirmed is not None
        return reminder_info(confirmed)

    async def _limit_per_turn_and_conversation(self, request: AddReminder) -> None:
        if request.turn_id is not None:
            count = await self.store.count_set(turn_id=request.turn_id)
            if count >= self.config.max_per_turn:
                raise ScheduleError(
                    f"this message has set {count} reminders already, the most one message may set"
                )
        if request.thread_id is not None:
            count = await self.store.count_set(thread_id=request.thread_id)
            if count >= self.config.max_per_conversation:
                raise ScheduleError(
                    f"this conversation has {count} reminders pending already; cancel some first"
                )

    def _schedule(self, request: AddReminder, now: datetime) -> Schedule:
        timezone = request.timezone or self.default_timezone
        tz = zone(timezone)
        match request.kind:
            case "at" if request.spec.strip().lower().startswith("in "):
                when = now + timedelta(seconds=parse_duration(request.spec.strip()[3:]))
                local = when.astimezone(tz).replace(tzinfo=None, microsecond=0)
                return Schedule("at", local.isoformat(), timezone, now)
            case "at":
                spec = request.spec.strip().replace(" ", "T", 1)
                return Schedule("at", spec, timezone, now)
            case "every":
                return Schedule("every", f"{parse_duration(request.spec):g}", timezone, now)
            case "cron":
                return Schedule("cron", request.spec.strip(), timezone, now)
        raise ScheduleError(f"unknown reminder kind {request.kind!r}; use at, every or cron")

    async def _limit_reminder_breeding(self, schedule: Schedule) -> None:
        if schedule.kind != "at":
            raise ScheduleError("a reminder or heartbeat turn may only schedule one-shot reminders")
        active = await self.store.active()
        pending = [r for r in active if r.created_by in AUTONOMOUS_SOURCES]
        if len(pending) >= MAX_FROM_REMINDERS:
            raise ScheduleError(
                f"reminder and heartbeat turns already have {len(pending)} reminders pending; "
                "no more may be scheduled until some have fired"
            )
