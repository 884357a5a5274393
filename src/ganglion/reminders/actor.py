"""The reminder actor.

The scheduler itself (croniter + SQLite ledger, exactly-once firing) is the Reminders
issue; until it lands this actor owns the mailbox and protocol the rest of the daemon
talks to, and reports that no reminder is scheduled.
"""

from __future__ import annotations

import trio

from ganglion.messages import ListReminders
from ganglion_actors import Inbox

__all__ = ["run_reminders"]


async def run_reminders(
    inbox: Inbox[ListReminders],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async for request in inbox:
        match request:
            case ListReminders(reply=reply):
                reply.send(())
