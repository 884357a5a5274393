"""`ganglion reminders list|cancel`: the same scheduler.db, from the shell.

SQLite in WAL mode lets this run beside the daemon. A cancellation takes effect at once in
the database; the running reminder actor re-reads it before every claim (and at least
once a minute), so a cancelled reminder never fires.
"""

from __future__ import annotations

from pathlib import Path

from ganglion.reminders.store import ReminderStore
from ganglion.reminders.text import reminder_info, reminder_line

__all__ = ["cancel_reminder", "list_reminders"]


async def list_reminders(path: Path) -> str:
    store = await ReminderStore.open(path)
    try:
        reminders = await store.active() + await store.awaiting()
    finally:
        await store.aclose()
    if not reminders:
        return "No reminders are scheduled."
    return "\n".join(reminder_line(reminder_info(r)) for r in reminders)


async def cancel_reminder(path: Path, reminder_id: str) -> bool:
    store = await ReminderStore.open(path)
    try:
        return await store.cancel(reminder_id)
    finally:
        await store.aclose()
