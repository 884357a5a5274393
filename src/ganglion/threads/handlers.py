"""What each special command does inside a thread actor."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ganglion.messages import ConfirmReminder, ListReminders, ReminderInfo, TriggerHeartbeat
from ganglion.reminders import ScheduleError
from ganglion.threads.commands import (
    Command,
    format_reminders,
    format_tools,
    help_text,
    unknown_command_text,
)
from ganglion_actors import ActorError

if TYPE_CHECKING:
    from ganglion.threads.actor import ThreadActor

__all__ = ["run_command"]

log = logging.getLogger(__name__)

SERVICE_TIMEOUT = 10.0


async def run_command(thread: ThreadActor, command: Command) -> None:
    match command.name:
        case "help":
            await thread.notice(help_text())
        case "new":
            await thread.deps.store.new_epoch(thread.thread_id)
            thread.history.clear()
            thread.summary = None
            await thread.notice("Started a new conversation. The previous one is archived.")
        case "compact":
            before = len(thread.history)
            if await thread.compact_if_needed(force=True):
                kept = len(thread.history)
                await thread.notice(
                    f"Compacted: {before - kept} older message(s) summarised, {kept} kept verbatim."
                )
            else:
                await thread.notice("Nothing to compact yet.")
        case "reminders":
            await thread.notice(await _list_reminders(thread))
        case "confirm":
            await thread.notice(await _confirm_reminder(thread, command.args))
        case "heartbeat":
            await thread.notice(await _trigger_heartbeat(thread))
        case "tools":
            await thread.notice(format_tools(thread.deps.tools.names))
        case name:
            await thread.notice(unknown_command_text(name))


async def _list_reminders(thread: ThreadActor) -> str:
    reminders = thread.deps.peers.reminders
    if reminders is None:
        return "The reminder service is not running."
    try:
        with trio.fail_after(SERVICE_TIMEOUT):
            items: tuple[ReminderInfo, ...] = await reminders.ask(ListReminders)
    except (ActorError, trio.TooSlowError):
        log.warning("the reminder actor did not answer", exc_info=True)
        return "The reminder service did not answer; try again in a moment."
    if thread.interface != "system":
        # A room or a tab sees its own reminders and the system ones, not another's.
        items = tuple(r for r in items if r.system or r.thread_id == thread.thread_id)
    return format_reminders(items)


async def _confirm_reminder(thread: ThreadActor, args: str) -> str:
    reminder_id = args.strip().strip("[]")
    if not reminder_id:
        return "Give the reminder's id: /confirm <id> (/reminders lists them)."
    reminders = thread.deps.peers.reminders
    if reminders is None:
        return "The reminder service is not running."
    try:
        with trio.fail_after(SERVICE_TIMEOUT):
            info: ReminderInfo = await reminders.ask(
                lambda reply: ConfirmReminder(reminder_id, thread.thread_id, reply)
            )
    except ScheduleError as exc:
        return f"Not confirmed: {exc}."
    except (ActorError, trio.TooSlowError):
        log.warning("the reminder actor did not answer", exc_info=True)
        return "The reminder service did not answer; try again in a moment."
    return (
        f"Confirmed: [{info.reminder_id}] {info.text!r} ({info.schedule}); next: {info.next_fire}."
    )


async def _trigger_heartbeat(thread: ThreadActor) -> str:
    heartbeat = thread.deps.peers.heartbeat
    if heartbeat is None:
        return "The heartbeat service is not running."
    try:
        with trio.fail_after(SERVICE_TIMEOUT):
            return await heartbeat.ask(
                lambda reply: TriggerHeartbeat(requested_by=thread.thread_id, reply=reply)
            )
    except (ActorError, trio.TooSlowError):
        log.warning("the heartbeat actor did not answer", exc_info=True)
        return "The heartbeat service did not answer; try again in a moment."
