"""`ganglion reminders list|cancel` from the shell, while the daemon runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganglion.messages import AddReminder, ListReminders, ReminderInfo
from tests.support.daemon import daemon_config, open_daemon
from tests.support.fakellm import FakeLLM
from tests.support.process import run_ganglion

pytestmark = pytest.mark.slow

THREAD = "web_9999888877776666"


async def test_list_and_cancel_against_the_running_daemon(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    data = tmp_path / "data"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"data_dir: {data}\nlogging: {{dir: null}}\n")
    async with open_daemon(daemon_config(data, fake_llm.base_url)) as daemon:
        reminders = daemon.services.deps.reminders
        assert reminders is not None
        info: ReminderInfo = await reminders.ask(
            lambda reply: AddReminder(
                "water the plants", "cron", "0 9 * * *", reply, thread_id=THREAD
            )
        )
        listed = await run_ganglion("reminders", "--config", str(config_file), "list", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        line = listed.stdout.decode()
        assert info.reminder_id in line and "water the plants" in line and "cron 0 9 * * *" in line
        cancelled = await run_ganglion(
            "reminders", "--config", str(config_file), "cancel", info.reminder_id, cwd=tmp_path
        )
        assert cancelled.returncode == 0
        assert await reminders.ask(ListReminders) == ()
        again = await run_ganglion(
            "reminders", "--config", str(config_file), "cancel", info.reminder_id, cwd=tmp_path
        )
        assert again.returncode == 1
        assert "no active reminder" in again.stderr.decode()


async def test_reminders_command_lists_what_is_scheduled(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with open_daemon(daemon_config(tmp_path, fake_llm.base_url)) as daemon:
        reminders = daemon.services.deps.reminders
        assert reminders is not None
        await reminders.ask(
            lambda reply: AddReminder("stretch", "every", "2h", reply, thread_id=THREAD)
        )
        await daemon.say(THREAD, "/reminders")
        text = await daemon.collector.notice(THREAD)
    assert "1 scheduled reminder(s):" in text and "'stretch' (every 2h" in text
