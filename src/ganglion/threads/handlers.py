"""What each special command does inside a thread actor."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ganglion.beats import HEARTBEAT_OK
from ganglion.ids import interface_for
from ganglion.messages import (
    ConfirmReminder,
    ListReminders,
    Notice,
    ReminderInfo,
    ReminderRequest,
    ReviewOutcome,
)
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
from ganglion.threads.conversation import Conversation
from ganglion.threads.metering import budget_command, model_command, usage_command
from ganglion.threads.turn import Emit
from ganglion_actors import ActorRef

__all__ = ["handle_command"]

log = logging.getLogger(__name__)


async def handle_command(
    command: Command,
    conversation: Conversation,
    emit: Emit,
    *,
    review: Callable[[], Awaitable[ReviewOutcome]],
    reminders: ActorRef[ReminderRequest],
) -> None:
    """Do `command` in `conversation` and say how it went (a `Notice` to `emit`).
    `review` runs a heartbeat review of the conversation now (`/heartbeat`)."""
    thread_id = conversation.thread_id

    async def notice(text: str) -> None:
        await emit(Notice(thread_id, text))

    match command.name:
        case "help":
            await notice(help_text())
        case "new":
            await conversation.new_conversation()
            await notice("Started a new conversation. The previous one is archived.")
        case "compact":
            before = conversation.message_count
            if await conversation.compact():
                kept = conversation.message_count
                await notice(
                    f"Compacted: {before - kept} older message(s) summarised, {kept} kept verbatim."
                )
            else:
                await notice(await conversation.why_not_compacted())
        case "reminders":
            await notice(await _list_reminders(reminders, thread_id))
        case "confirm":
            await notice(await _confirm_reminder(reminders, thread_id, command.args))
        case "heartbeat":
            await notice(_review_text(await review()))
        case "tools":
            await notice(format_tools(conversation.tools.names))
        case "usage":
            await notice(await usage_command(conversation))
        case "budget":
            await notice(await budget_command(conversation, command.args))
        case "model":
            await notice(await model_command(conversation, command.args))
        case name:
            await notice(unknown_command_text(name))


def _review_text(outcome: ReviewOutcome) -> str:
    match outcome.state:
        case "silent":
            return (
                "Heartbeat review of this conversation: nothing to report (the model "
                f"answered {HEARTBEAT_OK}, which is shown to no one)."
            )
        case "spoke":
            return (
                f"Heartbeat review of this conversation: delivered above ({outcome.tokens} tokens)."
            )
        case _:
            return f"Heartbeat review of this conversation failed: {outcome.text}"


async def _list_reminders(reminders: ActorRef[ReminderRequest], thread_id: str) -> str:
    """This conversation's reminders and the system ones (a system thread sees all)."""
    scope = None if interface_for(thread_id) == "system" else thread_id
    try:
        items: tuple[ReminderInfo, ...] = await ask_service(
            reminders,
            lambda reply: ListReminders(reply=reply, thread_id=scope, include_system=True),
            name="reminder",
        )
    except ServiceUnavailable as exc:
        return str(exc)
    return format_reminders(items)


async def _confirm_reminder(reminders: ActorRef[ReminderRequest], thread_id: str, args: str) -> str:
    reminder_id = args.strip().strip("[]")
    if not reminder_id:
        return "Give the reminder's id: /confirm <id> (/reminders lists them)."
    try:
        info: ReminderInfo = await ask_service(
            reminders,
            lambda reply: ConfirmReminder(reminder_id, thread_id, reply),
            name="reminder",
        )
    except ScheduleError as exc:
        return f"Not confirmed: {exc}."
    except ServiceUnavailable as exc:
        return str(exc)
    return f"Confirmed: {reminder_line(info)}."
