"""How a reminder is shown: to the owner (`/reminders`, `ganglion reminders list`) and to
the model (the scheduling tools), in one line format."""

from __future__ import annotations

from ganglion.messages import ReminderInfo
from ganglion.reminders.schedule import describe, zone
from ganglion.reminders.store import Reminder

__all__ = ["reminder_info", "reminder_line"]


def reminder_info(reminder: Reminder) -> ReminderInfo:
    """What a reminder looks like outside the reminder actor (local times, in words)."""
    next_local = None
    if reminder.next_fire is not None and not reminder.awaiting_confirmation:
        tz = zone(reminder.schedule.timezone)
        next_local = reminder.next_fire.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    return ReminderInfo(
        reminder_id=reminder.id,
        text=reminder.text,
        schedule=describe(reminder.schedule),
        timezone=reminder.schedule.timezone,
        next_fire=next_local,
        thread_id=reminder.thread_id,
        system=reminder.system,
        awaiting_confirmation=reminder.awaiting_confirmation,
    )


def reminder_line(item: ReminderInfo) -> str:
    """`[id] 'text' (schedule, timezone); next: when; for: where`."""
    target = "the system thread" if item.system else (item.thread_id or "?")
    when = item.next_fire or "no further firing"
    if item.awaiting_confirmation:
        when = f"off until the owner replies /confirm {item.reminder_id}"
    return (
        f"[{item.reminder_id}] {item.text!r} ({item.schedule}, {item.timezone}); "
        f"next: {when}; for: {target}"
    )
