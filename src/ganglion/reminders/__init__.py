"""The reminder actor (croniter + SQLite)."""

from ganglion.reminders.actor import run_reminders

__all__ = ["run_reminders"]
