"""The built-in tools the configuration enables: files (and sending them), shell, memory,
reminders.

MCP servers add theirs at run time (`ganglion.tools.mcp`), into the same registry.
"""

from __future__ import annotations

from ganglion.config import Config
from ganglion.inbox import FileInbox
from ganglion.messages import ReminderRequest
from ganglion.redact import Redactor
from ganglion.tools.files import file_tools
from ganglion.tools.memory import memory_tools
from ganglion.tools.registry import Tool
from ganglion.tools.scheduling import reminder_tools
from ganglion.tools.sending import sending_tools
from ganglion.tools.shell import shell_tools
from ganglion_actors import ActorRef

__all__ = ["builtin_tools"]


def builtin_tools(
    config: Config,
    reminders: ActorRef[ReminderRequest],
    redactor: Redactor,
    inbox: FileInbox | None = None,
) -> list[Tool]:
    """The enabled built-in tools. The shell keeps the redactor's secrets (read per
    command, so the web token made at start-up is one) out of its commands' environment;
    the scheduling tools ask the reminder actor through `reminders`; `send_file` keeps
    what it sends in `inbox` (None: the data directory's)."""
    tools = config.tools
    found: list[Tool] = []
    if tools.files.enabled:
        found += file_tools(tools.files, config.data_dir)
        kept = inbox if inbox is not None else FileInbox.of(config.data_dir, tools.files)
        found += sending_tools(
            tools.files, config.data_dir, kept, limit=config.matrix.max_media_bytes
        )
    if tools.shell.enabled:
        found += shell_tools(tools.shell, config.data_dir, lambda: redactor.secrets)
    if tools.memory.enabled:
        found += memory_tools(tools.memory, config.data_dir)
    if tools.reminders.enabled:
        found += reminder_tools(reminders)
    return found
