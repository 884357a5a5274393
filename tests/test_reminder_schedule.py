from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ganglion.reminders.schedule import (
    Schedule,
    ScheduleError,
    describe,
    next_fire,
    parse_duration,
    validate,
)

PARIS = ZoneInfo("Europe/Paris")
ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def cron(expr: str) -> Schedule:
    return Schedule("cron", expr, "Europe/Paris", ANCHOR)


def fires(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    out, at = [], start
    for _ in range(count):
        at = next_fire(schedule, at)  # type: ignore[assignment]
        out.append(at.astimezone(PARIS))
    return out


def test_daily_cron_keeps_local_time_across_spring_forward() -> None:
    times = fires(cron("0 9 * * *"), local(2026, 3, 27, 12), 4)
    assert [(t.day, t.hour, t.minute) for t in times] == [
        (28, 9, 0),
        (29, 9, 0),
        (30, 9, 0),
        (31, 9, 0),
    ]
    assert times[1].utcoffset() == timedelta(hours=2)  # summer time after the switch
    assert times[0].utcoffset() == timedelta(hours=1)


def test_daily_cron_keeps_local_time_across_fall_back() -> None:
    times = fires(cron("0 9 * * *"), local(2026, 10, 23, 12), 4)
    assert [(t.day, t.hour) for t in times] == [(24, 9), (25, 9), (26, 9), (27, 9)]
    assert times[1].astimezone(UTC) - times[0].astimezone(UTC) == timedelta(hours=25)


def test_a_time_in_the_spring_gap_fires_shifted_past_the_gap() -> None:
    (time,) = fires(cron("30 2 * * *"), local(2026, 3, 29, 0), 1)
    assert (time.day, time.hour, time.minute) == (29, 3, 30)


def test_a_repeated_time_fires_once_at_the_first_occurrence() -> None:
    times = fires(cron("30 2 * * *"), local(2026, 10, 25, 0), 2)
    assert (times[0].day, times[0].hour, times[0].utcoffset()) == (25, 2, timedelta(hours=2))
    assert times[1].day == 26


def test_one_shot_at_a_local_time() -> None:
    schedule = Schedule("at", "2026-12-01T09:00", "Europe/Paris", ANCHOR)
    when = next_fire(schedule, ANCHOR)
    assert when == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert next_fire(schedule, when) is None


def test_intervals_count_elapsed_time_from_the_anchor() -> None:
    schedule = Schedule("every", "3600", "Europe/Paris", ANCHOR)
    assert next_fire(schedule, ANCHOR) == ANCHOR + timedelta(hours=1)
    assert next_fire(schedule, ANCHOR + timedelta(minutes=150)) == ANCHOR + timedelta(hours=3)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (Schedule("cron", "61 * * * *", "UTC", ANCHOR), "invalid cron expression"),
        (Schedule("cron", "0 0 30 2 *", "UTC", ANCHOR), "never fires"),
        (Schedule("cron", "* * * * *", "UTC", ANCHOR), "more often than every 120 s"),
        (Schedule("every", "30", "UTC", ANCHOR), "shortest allowed interval is 120 s"),
        (Schedule("at", "2026-01-01T09:00", "UTC", ANCHOR), "in the past"),
        (Schedule("at", "next tuesday", "UTC", ANCHOR), "cannot read the time"),
        (Schedule("at", "2026-12-01T09:00", "Mars/Olympus", ANCHOR), "unknown timezone"),
    ],
)
def test_bad_schedules_are_refused_clearly(schedule: Schedule, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate(schedule, ANCHOR, min_interval=120)


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1d 12h") == 129600
    with pytest.raises(ScheduleError):
        parse_duration("soon")


def test_descriptions() -> None:
    assert describe(Schedule("every", "7200", "UTC", ANCHOR)) == "every 2h"
    assert describe(cron("0 9 * * 1")) == "cron 0 9 * * 1"
