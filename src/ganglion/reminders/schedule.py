"""When a reminder fires (pure: no clock, no I/O).

Three kinds, each in an IANA timezone:

- `at`: one local date-time (`2026-12-01 09:00`), fired once.
- `every`: a fixed interval (`every 2h`), counted in elapsed time from its anchor, so it
  is not affected by DST changes.
- `cron`: a cron expression (croniter) evaluated in *local wall-clock time*: a daily
  `0 9 * * *` fires at 09:00 local on both sides of a DST change.

Local times that do not exist or exist twice (DST changes) follow one documented rule:

- a time inside a spring-forward gap (02:30 when clocks jump from 02:00 to 03:00) fires
  at the same offset past the gap's end (03:30), as a wall clock shifted forward would;
- a time repeated by a fall-back (02:30 happens twice) fires once, at the first
  occurrence.

All instants returned are aware UTC datetimes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from ganglion.errors import GanglionError

__all__ = [
    "Kind",
    "Schedule",
    "ScheduleError",
    "describe",
    "local_to_utc",
    "next_fire",
    "parse_duration",
    "validate",
    "zone",
]

Kind = Literal["at", "every", "cron"]

_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)"
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# croniter iterates forever on a pattern that never matches (30 February); cap the search.
_CRON_LOOKAHEAD = 5000


class ScheduleError(GanglionError):
    """A schedule that cannot be used; the message says why, for the model or the CLI."""


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: Kind
    spec: str  # at: ISO local date-time; every: seconds; cron: the expression
    timezone: str
    anchor: datetime  # aware UTC: creation time (every: intervals count from here)


# Nothing is scheduled further ahead than this (dates overflow a few thousand years on).
MAX_DURATION = 100 * 365.25 * 86400
MAX_DURATION_TEXT = "100 years"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown timezone {name!r}; use an IANA name like Europe/Paris"
        ) from None


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d 12h`, `1w` -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        if float(text) > MAX_DURATION:
            raise ScheduleError(f"the duration {text!r} is longer than {MAX_DURATION_TEXT}")
        return float(text)
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if text[position : match.start()].strip():
            break
        total += float(match.group(1)) * _UNITS[match.group(2)[0]]
        position = match.end()
    if not total or text[position:].strip():
        raise ScheduleError(f"cannot read the duration {text!r}; write e.g. 90s, 15m, 2h or 1d")
    if total > MAX_DURATION:
        raise ScheduleError(f"the duration {text!r} is longer than {MAX_DURATION_TEXT}")
    return total


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time to an aware UTC instant, by the module's DST rule."""
    # fold=0 is the first of two repeated times; for a time in a gap, zoneinfo applies the
    # offset from before the gap, which lands the same distance past the gap's end.
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire instant strictly after `after` (aware), or None when there is none."""
    tz = zone(schedule.timezone)
    match schedule.kind:
        case "at":
            when = local_to_utc(datetime.fromisoformat(schedule.spec), tz)
            return when if when > after else None
        case "every":
            step = float(schedule.spec)
            elapsed = (after - schedule.anchor).total_seconds()
            count = max(0, int(elapsed // step) + 1)
            when = schedule.anchor + timedelta(seconds=count * step)
            while when <= after:
                when += timedelta(seconds=step)
            return when
        case "cron":
            # Walk local wall-clock times; the first whose instant is after `after` wins.
            start = after.astimezone(tz).replace(tzinfo=None, fold=0) - timedelta(hours=3)
            candidates = croniter(schedule.spec, start)
            try:
                for _ in range(_CRON_LOOKAHEAD):
                    when = local_to_utc(candidates.get_next(datetime), tz)
                    if when > after:
                        return when
            except CroniterBadDateError:
                pass
            return None


def validate(schedule: Schedule, now: datetime, *, min_interval: float) -> None:
    """Raise `ScheduleError` unless `schedule` can fire in the future."""
    tz = zone(schedule.timezone)
    match schedule.kind:
        case "at":
            try:
                local = datetime.fromisoformat(schedule.spec)
            except ValueError:
                raise ScheduleError(
                    f"cannot read the time {schedule.spec!r}; write e.g. 2026-12-01 09:00"
                ) from None
            if local.tzinfo is not None:
                raise ScheduleError(
                    "give the time without an offset; the timezone says where it is"
                )
            try:
                when = local_to_utc(local, tz)
            except OverflowError:
                raise ScheduleError(f"{schedule.spec} is outside the calendar") from None
            if when <= now:
                raise ScheduleError(f"{schedule.spec} ({schedule.timezone}) is in the past")
            if (when - now).total_seconds() > MAX_DURATION:
                raise ScheduleError(f"{schedule.spec} is more than {MAX_DURATION_TEXT} away")
        case "every":
            if float(schedule.spec) < min_interval:
                raise ScheduleError(f"the shortest allowed interval is {min_interval:g} s")
        case "cron":
            if not croniter.is_valid(schedule.spec):
                raise ScheduleError(
                    f"invalid cron expression {schedule.spec!r} (five fields: minute hour day month weekday)"
                )
            first = next_fire(schedule, now)
            if first is None:
                raise ScheduleError(f"the cron expression {schedule.spec!r} never fires")
            second = next_fire(schedule, first)
            if second is not None and (second - first).total_seconds() < min_interval:
                raise ScheduleError(
                    f"the cron expression fires more often than every {min_interval:g} s"
                )


def describe(schedule: Schedule) -> str:
    match schedule.kind:
        case "at":
            return f"once at {schedule.spec}"
        case "every":
            return f"every {_human(float(schedule.spec))}"
        case "cron":
            return f"cron {schedule.spec}"


def _human(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
