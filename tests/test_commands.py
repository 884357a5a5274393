"""Special commands: parsing and formatting (pure), then inside the running daemon,
where they never reach the model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ganglion.messages import AddReminder, FinalReply, ReminderInfo
from ganglion.threads.commands import (
    Command,
    format_reminders,
    format_tools,
    help_text,
    parse_command,
    unescape,
    unknown_command_text,
)
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply


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


WEB = "web_dddddddddddddddd"


async def test_help_and_unknown_commands_never_reach_the_model(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "/help")
        assert "/new" in await daemon.collector.notice(WEB)
        await daemon.say(WEB, "/frobnicate")
        assert (await daemon.collector.notice(WEB, 2)).startswith("Unknown command /frobnicate.")
    assert fake_llm.requests == []


async def test_new_archives_the_conversation_and_starts_fresh(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "remember the number 7")
        await daemon.collector.final(WEB)
        await daemon.say(WEB, "/new")
        assert "new conversation" in await daemon.collector.notice(WEB)
        await daemon.say(WEB, "what number?")
        await daemon.collector.final(WEB, 2)
    contents = [m["content"] for m in fake_llm.requests[-1]["messages"][1:]]
    assert contents == ["what number?"]
    with sqlite3.connect(tmp_path / "conversation.db") as conn:
        kept = "SELECT count(*) FROM messages WHERE kind IS NULL"
        assert conn.execute(kept).fetchone() == (4,)  # archived, kept


async def test_reminders_command_asks_the_reminder_actor(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "/reminders")
        assert await daemon.collector.notice(WEB) == "No reminders are scheduled."


async def test_reminders_command_lists_this_conversations_and_the_system_ones(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    other = "!elsewhere:example.org"
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        reminders = daemon.services.deps.reminders
        assert reminders is not None
        for text, thread_id, system in (
            ("mine", WEB, False),
            ("theirs", other, False),
            ("for everyone", None, True),
        ):
            await reminders.ask(
                lambda reply, text=text, thread_id=thread_id, system=system: AddReminder(
                    text, "at", "in 1h", reply, thread_id=thread_id, system=system
                )
            )
        await daemon.say(WEB, "/reminders")
        listing = await daemon.collector.notice(WEB)
    assert "'mine'" in listing and "'for everyone'" in listing
    assert "theirs" not in listing
    assert listing.startswith("2 scheduled reminder(s):")


async def test_heartbeat_command_shows_a_silent_review(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("HEARTBEAT_OK"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        (tmp_path / "HEARTBEATS.txt").write_text("# goals\n- check the backup ran\n")
        await daemon.say(WEB, "/heartbeat")
        notice = await daemon.collector.notice(WEB)
    assert notice.startswith("Heartbeat review of this conversation: nothing to report")
    [request] = fake_llm.requests
    assert "- check the backup ran" in request["messages"][0]["content"]
    assert WEB in request["messages"][0]["content"]  # this conversation's review
    assert not daemon.collector.of(WEB, FinalReply)


async def test_heartbeat_command_delivers_what_the_review_says(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("You meant to call Anna today."))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "/heartbeat")
        notice = await daemon.collector.notice(WEB)
        [reply] = await daemon.collector.final(WEB)
        info = await daemon.info(WEB)
    assert reply == "You meant to call Anna today."
    assert notice.startswith("Heartbeat review of this conversation: delivered")
    assert info.messages == 2  # the review's marker and what it said
