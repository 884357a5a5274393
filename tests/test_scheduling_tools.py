"""Scheduling tools through real turns: the fake model sets, lists and cancels reminders
through the reminder actor's mailbox, and each thread sees only its own."""

from __future__ import annotations

import re
from pathlib import Path

from ganglion.messages import Notice, ReminderDue
from tests.support.daemon import Daemon, daemon_config, open_daemon
from tests.support.fakellm import FakeLLM, Reply, calling, calling_all

ROOM = "web_aaaaaaaaaaaaaaaa"
OTHER = "web_bbbbbbbbbbbbbbbb"


def tool_result(fake_llm: FakeLLM, request: int) -> str:
    message = fake_llm.requests[request]["messages"][-1]
    assert message["role"] == "tool"
    content: str = message["content"]
    return content


async def turn(daemon: Daemon, thread_id: str, text: str, count: int) -> None:
    await daemon.say(thread_id, text)
    await daemon.collector.final(thread_id, count)


async def test_set_list_and_cancel_a_reminder(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        calling("set_reminder", text="Stretch your legs", kind="every", schedule="2h"),
        calling("list_reminders"),
        Reply("Every two hours, then."),
    )
    config = daemon_config(tmp_path, fake_llm.base_url, reminders={"confirm_recurring": False})
    async with open_daemon(config) as daemon:
        await turn(daemon, ROOM, "remind me to stretch every 2 hours", 1)
        scheduled = tool_result(fake_llm, 1)
        assert scheduled.startswith("scheduled [") and "every 2h" in scheduled, scheduled
        assert "Europe/Paris" in scheduled
        listed = tool_result(fake_llm, 2)
        reminder_id = re.search(r"\[([^\]]+)\]", scheduled)
        assert reminder_id is not None and reminder_id.group(0) in listed

        fake_llm.script(
            calling("cancel_reminder", reminder_id=reminder_id.group(1)), Reply("Done.")
        )
        await turn(daemon, ROOM, "stop that reminder", 2)
        assert tool_result(fake_llm, 4).startswith(f"cancelled [{reminder_id.group(1)}]")
        assert await daemon.services.reminder_store.active() == []


async def test_a_thread_neither_sees_nor_cancels_another_threads_reminders(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("set_reminder", text="Water the plants", kind="at", schedule="in 3h"), Reply("Ok.")
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await turn(daemon, ROOM, "remind me about the plants", 1)
        (reminder,) = await daemon.services.reminder_store.active()
        fake_llm.script(
            calling("list_reminders"),
            calling("cancel_reminder", reminder_id=reminder.id),
            Reply("Nothing to cancel here."),
        )
        await turn(daemon, OTHER, "cancel all reminders", 1)
        assert "no reminders are scheduled from this conversation" in tool_result(fake_llm, 3)
        refused = tool_result(fake_llm, 4)
        assert refused.startswith("error: no reminder") and reminder.id in refused
        assert [r.id for r in await daemon.services.reminder_store.active()] == [reminder.id]


async def test_a_bad_schedule_is_a_tool_error_and_the_turn_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("set_reminder", text="x", kind="cron", schedule="61 * * * *"),
        calling("set_reminder", text="x", kind="at", schedule="tomorrow-ish"),
        calling("set_reminder", text="x", kind="every", schedule="5m", timezone="Mars/Olympus"),
        calling("set_reminder", text="x", kind="weekly", schedule="monday"),
        Reply("I could not schedule that."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await turn(daemon, ROOM, "remind me", 1)
        assert await daemon.collector.final(ROOM) == ["I could not schedule that."]
        assert await daemon.services.reminder_store.active() == []
    errors = [tool_result(fake_llm, i) for i in range(1, 5)]
    assert all(error.startswith("error: ") for error in errors), errors
    assert "Mars/Olympus" in errors[2]
    assert "kind" in errors[3]


async def test_a_system_reminder_remembers_the_thread_that_set_it(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling(
            "set_reminder",
            text="Check disk space",
            kind="cron",
            schedule="0 9 * * *",
            system=True,
            timezone="UTC",
        ),
        Reply("I will check every morning."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await turn(daemon, ROOM, "watch the disk", 1)
        (reminder,) = await daemon.services.reminder_store.awaiting()
    assert reminder.system and reminder.thread_id == ROOM
    assert reminder.schedule.timezone == "UTC"
    assert "system thread" in tool_result(fake_llm, 1)


async def test_a_reminder_turn_may_not_schedule_recurring_reminders(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("set_reminder", text="again and again", kind="every", schedule="1h"),
        calling("set_reminder", text="once more", kind="at", schedule="in 1h"),
        Reply("Reminded."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await daemon.services.threads.send(
            ROOM, ReminderDue(ROOM, "r_test", "2026-11-24T10:00", "say hello")
        )
        assert await daemon.collector.final(ROOM) == ["Reminded."]
        (reminder,) = await daemon.services.reminder_store.active()
    assert "only schedule one-shot reminders" in tool_result(fake_llm, 1)
    assert reminder.text == "once more"


async def test_a_repeating_reminder_the_model_sets_waits_for_the_owners_confirm(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(
        calling("set_reminder", text="Check the logs", kind="cron", schedule="*/5 * * * *"),
        Reply("Asked for it."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await turn(daemon, ROOM, "check the logs every five minutes", 1)
        result = tool_result(fake_llm, 1)
        found = re.search(r"/confirm (\w+)", result)
        assert found is not None, result
        reminder_id = found.group(1)
        assert await daemon.services.reminder_store.active() == []  # off until confirmed
        notices = [e.text for e in daemon.collector.of(ROOM, Notice)]  # type: ignore[attr-defined]
        assert any(f"/confirm {reminder_id}" in text for text in notices)
        await daemon.say(OTHER, f"/confirm {reminder_id}")  # another conversation cannot
        assert "Not confirmed" in await daemon.collector.notice(OTHER)
        await daemon.say(ROOM, f"/confirm {reminder_id}")
        assert (await daemon.collector.notice(ROOM, len(notices) + 1)).startswith("Confirmed")
        assert [r.id for r in await daemon.services.reminder_store.active()] == [reminder_id]


async def test_one_message_sets_at_most_five_reminders(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        calling_all(
            *[
                ("set_reminder", {"text": f"r{n}", "kind": "at", "schedule": "in 1h"})
                for n in range(7)
            ]
        ),
        Reply("Set what I could."),
    )
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        await turn(daemon, ROOM, "set seven reminders", 1)
        results = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
        assert [r.startswith("scheduled") for r in results] == [True] * 5 + [False] * 2
        assert "the most one message may set" in results[-1]
        assert len(await daemon.services.reminder_store.active()) == 5
