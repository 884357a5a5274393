"""Special commands: typed in any thread, handled by Ganglion, never sent to the model.

A message starting with `//` is not a command: it goes to the model with one `/` removed
(`//etc/hosts is odd` -> `/etc/hosts is odd`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ganglion.messages import ReminderInfo
from ganglion.reminders.text import reminder_line

__all__ = [
    "COMMANDS",
    "Command",
    "format_reminders",
    "format_tools",
    "help_text",
    "parse_command",
    "unescape",
    "unknown_command_text",
]

COMMANDS: dict[str, str] = {
    "new": "archive this conversation and start a fresh one",
    "compact": "summarise the older part of this conversation now",
    "reminders": "list this conversation's reminders and the system ones",
    "confirm": "turn on a repeating reminder the assistant set: /confirm <id>",
    "heartbeat": "review the open goals in HEARTBEATS.txt now",
    "tools": "list the tools the assistant can use here",
    "usage": "the tokens this conversation and today used, and the budgets",
    "budget": "what today's budgets have left; /budget +N allows N more tokens today",
    "model": "list the models; /model NAME switches this conversation, /model default",
    "help": "show this list",
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: str


def parse_command(text: str) -> Command | None:
    """The command in `text`, or None for an ordinary message."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//") or len(stripped) == 1:
        return None
    name, _, args = stripped[1:].partition(" ")
    return Command(name.lower(), args.strip())


def unescape(text: str) -> str:
    """`//text` -> `/text`: how to send the model a message that starts with a slash."""
    stripped = text.lstrip()
    return stripped[1:] if stripped.startswith("//") else text


def help_text() -> str:
    lines = ["Commands:"]
    lines += [f"/{name} - {meaning}" for name, meaning in COMMANDS.items()]
    lines.append("Start a message with // to send the model text that begins with /.")
    return "\n".join(lines)


def unknown_command_text(name: str) -> str:
    return f"Unknown command /{name}.\n{help_text()}"


def format_reminders(reminders: tuple[ReminderInfo, ...]) -> str:
    if not reminders:
        return "No reminders are scheduled."
    lines = [f"{len(reminders)} scheduled reminder(s):"]
    lines += [f"- {reminder_line(item)}" for item in reminders]
    return "\n".join(lines)


def format_tools(names: frozenset[str]) -> str:
    """The tool names, built-in ones first, then those of each MCP server."""
    if not names:
        return "No tools are enabled: the assistant can only talk."
    builtin = sorted(n for n in names if not n.startswith("mcp__"))
    servers: dict[str, list[str]] = {}
    for name in sorted(names - set(builtin)):
        server, _, tool = name.removeprefix("mcp__").partition("__")
        servers.setdefault(server, []).append(tool)
    lines = [f"{len(names)} tool(s):"]
    if builtin:
        lines.append("- built in: " + ", ".join(builtin))
    lines += [f"- MCP server {server}: {', '.join(tools)}" for server, tools in servers.items()]
    return "\n".join(lines)
