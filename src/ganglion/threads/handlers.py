"""What each special command does inside a thread actor."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from ganglion.messages import ConfirmReminder, ListReminders, ReminderInfo
from ganglion.reminders.schedule import ScheduleError
from ganglion.reminders.text import reminder_line
from ganglion.services import ServiceUnavailable, ask_service
from ganglion.threads.commands import (
    Command,
    format_reminders,
    format_tools,
    help_text,
    unknown_command_text,
)
from ganglion.threads.ids import interface_for

if TYPE_CHECKING:
    from ganglion.threads.deps import ThreadDeps


class CommandHost(Protocol):
    """What a command may do to its thread (the thread actor implements it)."""

    thread_id: str
    deps: ThreadDeps

    @property
    def message_count(self) -> int: ...

    async def notice(self, text: str) -> None: ...

    async def new_conversation(self) -> None: ...

    async def compact_if_needed(self, *, force: bool = False) -> bool: ...

    async def why_not_compacted(self) -> str: ...

    async def review_now(self) -> str: ...


__all__ = ["CommandHost", "handle_command"]

log = logging.getLogger(__name__)


async def handle_command(thread: CommandHost, command: Command) -> None:
    match command.name:
        case "help":
            await thread.notice(help_text())
        case "new":
            await thread.new_conversation()
            await thread.notice("Started a new conversation. The previous one is archived.")
        case "compact":
            before = thread.message_count
            if await thread.compact_if_needed(force=True):
                kept = thread.message_count
                await thread.notice(
                    f"Compacted: {before - kept} older message(s) summarised, {kept} kept verbatim."
                )
            else:
                await thread.notice(await thread.why_not_compacted())
        case "reminders":
            await thread.notice(await _list_reminders(thread))
        case "confirm":
            await thread.notice(await _confirm_reminder(thread, command.args))
        case "heartbeat":
            await thread.notice(await thread.review_now())
        case "tools":
            await thread.notice(format_tools(thread.deps.tools.names))
        case name:
            await thread.notice(unknown_command_text(name))


async def _list_reminders(thread: CommandHost) -> str:
    """This conversation's reminders and the system ones (a system thread sees all)."""
    scope = None if interface_for(thread.thread_id) == "system" else thread.thread_id
    try:
        items: tuple[ReminderInfo, ...] = await ask_service(
            thread.deps.reminders,
            lambda reply: ListReminders(reply=reply, thread_id=scope, include_system=True),
            name="reminder",
        )
    except ServiceUnavailable as exc:
        return str(exc)
    return format_reminders(items)


async def _confirm_reminder(thread: CommandHost, args: str) -> str:
    reminder_id = args.strip().strip("[]")
    if not reminder_id:
        return "Give the reminder's id: /confirm <id> (/reminders lists them)."
    try:
        info: ReminderInfo = await ask_service(
            thread.deps.reminders,
            lambda reply: ConfirmReminder(reminder_id, thread.thread_id, reply),
            name="reminder",
        )
    except ScheduleError as exc:
        return f"Not confirmed: {exc}."
    except ServiceUnavailable as exc:
        return str(exc)
    return f"Confirmed: {reminder_line(info)}."
