"""Scheduling tools: set, list and cancel reminders through the reminder actor's mailbox.

A reminder set from a conversation comes back into that conversation (thread-bound), or,
with `system: true`, into the autonomous system thread, whose results go to the log. Either
way the reminder remembers the thread that set it: a conversation lists and cancels only
the reminders it set, so one Matrix room never sees or touches another's. The system
threads (heartbeat, system reminders) see them all.

What a turn may schedule depends on where it comes from (`ToolContext.source`): the
reminder actor lets a reminder turn schedule only a few one-shot reminders, so reminders
cannot breed.

Error handling: a schedule the actor refuses (`ScheduleError`) becomes a tool error with
its message; a reminder actor that is not running or does not answer in time becomes a
tool error saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from ganglion.messages import (
    AddReminder,
    CancelReminder,
    ListReminders,
    ReminderInfo,
    ReminderRequest,
)
from ganglion.reminders.schedule import ScheduleError
from ganglion.reminders.text import reminder_line
from ganglion.services import ServiceUnavailable, ask_service
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool
from ganglion_actors import ActorRef, Reply

__all__ = ["reminder_tools"]

T = TypeVar("T")


def reminder_tools(reminders: ActorRef[ReminderRequest]) -> list[Tool]:
    """The scheduling tools, asking the reminder actor at `reminders`."""

    async def ask(make: Callable[[Reply[T]], ReminderRequest]) -> T:
        try:
            return await ask_service(reminders, make, name="reminder")
        except (ScheduleError, ServiceUnavailable) as exc:
            raise ToolError(str(exc)) from None

    async def visible(ctx: ToolContext) -> tuple[ReminderInfo, ...]:
        scope = None if ctx.interface == "system" else ctx.thread_id
        found: tuple[ReminderInfo, ...] = await ask(
            lambda reply: ListReminders(reply=reply, thread_id=scope)
        )
        return found

    @tool(
        core=True,
        persists=True,
        brief='Schedule a reminder: kind "at" ("2026-12-01 09:30", "in 20m"), "every" ("2h") '
        'or "cron" ("0 9 * * 1-5").',
    )
    async def set_reminder(
        ctx: ToolContext,
        text: str,
        kind: Literal["at", "every", "cron"],
        schedule: str,
        timezone: str | None = None,
        system: bool = False,
    ) -> str:
        """Schedule a reminder. `text` is what you will be told when it fires (write it as
        an instruction to yourself). `kind` and `schedule`:
        - "at": once, at a local date-time like "2026-12-01 09:30", or relative: "in 20m",
        "in 2h", "in 3d";
        - "every": repeatedly, every duration like "30m", "2h", "1d";
        - "cron": a cron expression like "0 9 * * 1-5" (09:00 on weekdays).
        `timezone` is an IANA name like "Europe/Paris" (default: the owner's). By default
        the reminder comes back into this conversation; `system: true` runs it in the
        background system thread instead (for autonomous work; its result goes to the log).
        """
        info: ReminderInfo = await ask(
            lambda reply: AddReminder(
                text=text,
                kind=kind,
                spec=schedule,
                reply=reply,
                timezone=timezone,
                thread_id=ctx.thread_id,
                system=system,
                source=ctx.source,
                turn_id=ctx.turn_id,
            )
        )
        if info.awaiting_confirmation:
            return (
                f"{reminder_line(info)}. It is set but off: a repeating reminder starts only once "
                f"the owner replies /confirm {info.reminder_id} in this conversation. Tell them."
            )
        return "scheduled " + reminder_line(info)

    @tool(brief="List this conversation's reminders.")
    async def list_reminders(ctx: ToolContext) -> str:
        """List the reminders this conversation has scheduled, with their ids."""
        found = await visible(ctx)
        if not found:
            return "no reminders are scheduled from this conversation"
        return "\n".join(reminder_line(item) for item in found)

    @tool(persists=True)
    async def cancel_reminder(ctx: ToolContext, reminder_id: str) -> str:
        """Cancel a reminder by its id (as shown by list_reminders)."""
        wanted = reminder_id.strip().strip("[]")
        match = next((item for item in await visible(ctx) if item.reminder_id == wanted), None)
        if match is None:
            raise ToolError(
                f"no reminder {wanted!r} was scheduled from this conversation; "
                "list_reminders shows the ids"
            )
        cancelled: bool = await ask(lambda reply: CancelReminder(wanted, reply))
        if not cancelled:
            raise ToolError(f"reminder {wanted!r} had already ended")
        return f"cancelled [{wanted}] {match.text!r}"

    return [set_reminder, list_reminders, cancel_reminder]
