"""Reminders: croniter schedules, a SQLite ledger, exactly-once firing."""

from ganglion.reminders.actor import SYSTEM_REMINDER_THREAD, ReminderActor, reminders_child
from ganglion.reminders.schedule import Schedule, ScheduleError
from ganglion.reminders.store import Reminder, ReminderStore

__all__ = [
    "SYSTEM_REMINDER_THREAD",
    "Reminder",
    "ReminderActor",
    "ReminderStore",
    "Schedule",
    "ScheduleError",
    "reminders_child",
]
