"""Special commands and compaction, inside the running daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ganglion.messages import AddReminder
from tests.daemon import daemon_config, open_daemon
from tests.fakellm import FakeLLM, Reply

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
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (4,)  # archived, kept


async def test_reminders_command_asks_the_reminder_actor(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "/reminders")
        assert await daemon.collector.notice(WEB) == "No reminders are scheduled."


async def test_reminders_command_lists_this_conversations_and_the_system_ones(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    other = "!elsewhere:example.org"
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        reminders = daemon.services.peers.reminders
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


async def test_heartbeat_command_with_no_goals_stays_quiet(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.say(WEB, "/heartbeat")
        assert "nothing to review" in await daemon.collector.notice(WEB)
    assert fake_llm.requests == []


async def test_heartbeat_command_reviews_active_goals(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("HEARTBEAT_OK"))
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        (tmp_path / "HEARTBEATS.txt").write_text("# goals\n- check the backup ran\n")
        await daemon.say(WEB, "/heartbeat")
        assert "review started" in await daemon.collector.notice(WEB)
        await fake_llm.wait_for_requests(1)
    request = fake_llm.requests[0]["messages"]
    assert "system:heartbeat" in request[0]["content"]
    assert "- check the backup ran" in request[-1]["content"]


async def test_long_threads_are_compacted_automatically(tmp_path: Path, fake_llm: FakeLLM) -> None:
    long = "x" * 600
    fake_llm.script(
        Reply("first " + long),
        Reply("second " + long),
        Reply("SUMMARY: the user asked twice about x."),
        Reply("third"),
    )
    config = daemon_config(
        tmp_path,
        fake_llm.base_url,
        compaction={"threshold_tokens": 1200, "keep_recent_messages": 2},
    )
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "one " + long)
        await daemon.collector.final(WEB)
        await daemon.say(WEB, "two " + long)
        await daemon.collector.final(WEB, 2)
        await daemon.say(WEB, "three")
        await daemon.collector.final(WEB, 3)
        info = await daemon.info(WEB)
    assert info.has_summary
    summary_request = fake_llm.requests[2]["messages"]
    assert "running summary" in summary_request[0]["content"]
    assert "one x" in summary_request[1]["content"]
    third = fake_llm.requests[3]["messages"]
    assert third[1]["content"].endswith("SUMMARY: the user asked twice about x.")
    assert all(not (m["content"] or "").startswith("one ") for m in third)
    assert third[-1]["content"] == "three"
    with sqlite3.connect(tmp_path / "conversation.db") as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (6,)


async def test_compact_command_forces_a_summary(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("a"), Reply("b"), Reply("the summary"))
    config = daemon_config(tmp_path, fake_llm.base_url, compaction={"keep_recent_messages": 2})
    async with open_daemon(config) as daemon:
        await daemon.say(WEB, "/compact")
        assert await daemon.collector.notice(WEB) == "Nothing to compact yet."
        for text in ("q1", "q2"):
            await daemon.say(WEB, text)
        await daemon.collector.final(WEB, 2)
        await daemon.say(WEB, "/compact")
        notice = await daemon.collector.notice(WEB, 2)
    assert notice == "Compacted: 2 older message(s) summarised, 2 kept verbatim."
