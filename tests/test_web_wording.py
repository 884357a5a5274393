"""The web chat's words for tools and their notices (`ganglion.web.wording`)."""

from __future__ import annotations

from datetime import UTC, datetime

from ganglion.web.wording import owner_notice, tool_card

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 13:00 in Paris
LINE = "[5a706c51] 'stretch' ({schedule}, Europe/Paris); next: {next}; for: web_3993ed3dbff339c1"


def line(schedule: str, upcoming: str) -> str:
    return LINE.format(schedule=schedule, next=upcoming)


def test_a_reminder_set_for_today_tomorrow_or_later_is_said_so() -> None:
    today = line("once at 2026-12-07T18:30:00", "2026-12-07 18:30 CET")
    assert (
        owner_notice("Kept: scheduled " + today, NOW) == "Reminder set for 18:30 today: “stretch”"
    )
    tomorrow = line("once at 2026-12-08T09:00:00", "2026-12-08 09:00 CET")
    assert owner_notice("Kept: scheduled " + tomorrow, NOW).startswith(
        "Reminder set for 09:00 tomorrow"
    )
    later = line("once at 2026-12-14T09:00:00", "2026-12-14 09:00 CET")
    assert owner_notice("Kept: scheduled " + later, NOW).startswith(
        "Reminder set for 09:00 on Mon 14 Dec"
    )


def test_a_repeating_reminder_says_its_schedule_and_what_it_waits_for() -> None:
    every = line("every 2h", "2026-12-07 15:00 CET")
    card = tool_card("set_reminder", "{}", "scheduled " + every, True, NOW)
    assert card == {
        "title": "Repeating reminder set (every 2h): “stretch”, next at 15:00 today",
        "output": "",
        "status": None,
    }
    waiting = line("every 2h", "off until the owner replies /confirm 5a706c51")
    assert owner_notice(f"Kept: {waiting}. It is set but off", NOW).endswith("/confirm 5a706c51")


def test_other_kept_notices_lose_the_prefix_and_the_rest_is_left_alone() -> None:
    assert (
        owner_notice("Kept: cancelled [5a706c51] 'stretch'", NOW) == "Reminder cancelled: “stretch”"
    )
    assert owner_notice("Kept: remembered: tea, no sugar", NOW) == "Remembered: tea, no sugar"
    assert owner_notice("Stopped.", NOW) == "Stopped."


def test_a_shell_command_that_exits_non_zero_shows_its_output_and_exit_status() -> None:
    card = tool_card("shell", '{"command": "make"}', "error: built half\n[exit code 2]", False, NOW)
    assert card == {"title": "Ran make", "output": "built half", "status": "exit status 2"}
    fine = tool_card("shell", '{"command": "ls"}', "a\nb\n[exit code 0]", True, NOW)
    assert fine == {"title": "Ran ls", "output": "a\nb", "status": None}
    killed = tool_card(
        "shell", '{"command": "yes"}', "error: y\n[killed by signal SIGKILL]", False, NOW
    )
    assert killed["status"] == "killed by signal SIGKILL"


def test_a_tool_that_failed_says_failed_without_the_models_prefix() -> None:
    card = tool_card("read_file", '{"path": "x"}', "error: no such file: x", False, NOW)
    assert card == {"title": "Used read_file", "output": "no such file: x", "status": "failed"}
