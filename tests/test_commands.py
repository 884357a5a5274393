from __future__ import annotations

from ganglion.messages import ReminderInfo
from ganglion.threads.commands import (
    Command,
    format_reminders,
    format_tools,
    help_text,
    parse_command,
    unescape,
    unknown_command_text,
)


def test_ordinary_text_is_not_a_command() -> None:
    assert parse_command("hello /new") is None
    assert parse_command("") is None
    assert parse_command("/") is None


def test_command_name_is_case_insensitive_and_keeps_arguments() -> None:
    assert parse_command("  /NEW  ") == Command("new", "")
    assert parse_command("/compact now please") == Command("compact", "now please")


def test_double_slash_escapes_a_message_for_the_model() -> None:
    assert parse_command("//etc/hosts is odd") is None
    assert unescape("//etc/hosts is odd") == "/etc/hosts is odd"
    assert unescape("plain") == "plain"


def test_help_lists_every_command() -> None:
    text = help_text()
    for name in ("/new", "/compact", "/reminders", "/heartbeat", "/help"):
        assert name in text


def test_unknown_command_reply_names_it_and_helps() -> None:
    text = unknown_command_text("frobnicate")
    assert text.startswith("Unknown command /frobnicate.")
    assert "/help" in text


def test_reminder_listing() -> None:
    assert format_reminders(()) == "No reminders are scheduled."
    info = ReminderInfo(
        "r1", "water the plants", "every 1d", "Europe/Paris", "2026-11-25 09:00", "web_ab"
    )
    text = format_reminders((info,))
    assert "[r1] 'water the plants'" in text
    assert "Europe/Paris" in text and "next: 2026-11-25 09:00" in text


def test_tool_listing_groups_mcp_servers() -> None:
    names = frozenset({"shell", "read_file", "mcp__calc__add", "mcp__calc__die", "mcp__web__get"})
    assert format_tools(names) == (
        "5 tool(s):\n"
        "- built in: read_file, shell\n"
        "- MCP server calc: add, die\n"
        "- MCP server web: get"
    )
    assert "only talk" in format_tools(frozenset())
