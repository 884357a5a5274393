"""The reminder actor: croniter + SQLite, exactly once.

It sleeps until the next due slot (read from an index, so thousands of waiting reminders
cost nothing), wakes at once when its mailbox gets a request, and never sleeps longer
than `MAX_SLEEP` so a wall-clock jump (suspend/resume, an NTP step) is noticed within a
minute. Firing a slot is three steps, each durable before the next:

1. claim the slot in the ledger and advance the reminder (one transaction);
2. hand a `ReminderDue` to the target thread, whose turn id derives from the slot;
3. mark the slot done.

A kill between 1 and 3 leaves a claimed slot, which is handed over again on start; the
thread takes a given slot's turn only once. So a slot is never lost and never doubled.

Slots missed while the daemon was down fire once (a recurring reminder that missed many
fires once, not once per slot) if the newest is within `reminders.misfire_grace`; older
ones are recorded as missed and the owner is told in the thread. One-shots are never
silently dropped.

An autonomous turn (a reminder firing, a heartbeat review) may schedule only one-shot
reminders, and only `MAX_FROM_REMINDERS` of those may be pending: no reminder or heartbeat
can breed reminders in a loop. Only a person sets recurring ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import trio

from ganglion.config import RemindersConfig
from ganglion.messages import (
    AddReminder,
    CancelReminder,
    ListReminders,
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
from ganglion_actors import Inbox

__all__ = ["MAX_SLEEP", "SYSTEM_REMINDER_THREAD", "ReminderActor"]

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0
MAX_FROM_REMINDERS = 5
AUTONOMOUS_SOURCES = frozenset({"reminder", "heartbeat"})
SYSTEM_REMINDER_THREAD = "system:reminders"

Deliver = Callable[[ReminderDue], Awaitable[None]]
Notify = Callable[[str, str], Awaitable[None]]
WallClock = Callable[[], datetime]


def _wall_now() -> datetime:
    return datetime.now(UTC)


class ReminderActor:
    def __init__(
        self,
        store: ReminderStore,
        config: RemindersConfig,
        default_timezone: str,
        deliver: Deliver,
        notify: Notify,
        *,
        wall: WallClock = _wall_now,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        self.store = store
        self.config = config
        self.default_timezone = default_timezone
        self.deliver = deliver
        self.notify = notify
        self.wall = wall
        self.max_sleep = max_sleep

    async def run(
        self,
        inbox: Inbox[ReminderRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.resend_unfinished()
        task_status.started()
        while True:
            await self.fire_due()
            due = await self.store.next_due_at()
            wait = self.max_sleep
            if due is not None:
                wait = min(self.max_sleep, max(0.0, (due - self.wall()).total_seconds()))
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

    async def _hand_over(self, slots: Sequence[Slot]) -> None:
        if not slots:
            return
        for slot in slots:
            reminder = slot.reminder
            thread_id = SYSTEM_REMINDER_THREAD if reminder.system else reminder.thread_id
            if thread_id is None:
                thread_id = SYSTEM_REMINDER_THREAD
            await self.deliver(
                ReminderDue(thread_id, reminder.id, slot.key, reminder.text, reminder.system)
            )
        await self.store.complete(*slots)

    async def _report_missed(self, slot: Slot) -> None:
        reminder = slot.reminder
        local = slot.at.astimezone(zone(reminder.schedule.timezone))
        text = (
            f"Missed reminder [{reminder.id}] {reminder.text!r}: it was due {local:%Y-%m-%d %H:%M} "
            f"({reminder.schedule.timezone}) while Ganglion was not running, more than "
            f"{self.config.misfire_grace:g} s ago."
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
            case ListReminders(reply=reply, thread_id=thread_id):
                reminders = await self.store.active()
                if thread_id is not None:
                    reminders = [r for r in reminders if r.thread_id == thread_id]
                reply.send(tuple(self.info(r) for r in reminders))

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
        now = self.wall()
        schedule = self._schedule(request, now)
        if request.source in AUTONOMOUS_SOURCES:
            await self._limit_reminder_breeding(schedule)
        validate(schedule, now, min_interval=self.config.min_interval)
        first = next_fire(schedule, now)
        if first is None:
            raise ScheduleError("this schedule never fires")
        reminder = await self.store.add(
            text,
            schedule,
            thread_id=request.thread_id,
            system=request.system,
            next_fire=first,
            created_by=request.source,
        )
        log.info("reminder %s scheduled: %s, first at %s", reminder.id, describe(schedule), first)
        return self.info(reminder)

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

    def info(self, reminder: Reminder) -> ReminderInfo:
        tz = zone(reminder.schedule.timezone)
        next_local = (
            reminder.next_fire.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
            if reminder.next_fire
            else None
        )
        return ReminderInfo(
            reminder_id=reminder.id,
            text=reminder.text,
            schedule=describe(reminder.schedule),
            timezone=reminder.schedule.timezone,
            next_fire=next_local,
            thread_id=reminder.thread_id,
            system=reminder.system,
        )
