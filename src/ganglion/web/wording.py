"""What the web chat tells the owner about tools, in the owner's words.

A tool's result is written for the model ("scheduled [5a706c51] 'stretch' (once at
2026-12-07 18:30, Europe/Paris); next: 2026-12-07 18:30 CET; for: web_…"), and the
"Kept:" notice of a tool that changes what outlives the conversation repeats it. The chat
shows the owner the same facts as a person would say them ("Reminder set for 18:30
today"); the card keeps the exact call one click away. A shell command that
exits non-zero did run: its card says "exit status 1" and shows its output as output.

Pure: no I/O; `now` is passed in (the owner's "today" is the reminder's time zone's).
"""

from __future__ import annotations

import ast
import json
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ganglion.web import frames

__all__ = ["owner_notice", "tool_card"]

TITLE_CHARS = 80
KEPT = "Kept: "
# The shell tool's last line, "[exit code 1]" or "[killed by signal SIGKILL]".
_SHELL_STATUS = re.compile(r"\n?\[(exit code (-?\d+)|killed by signal \w+)\]\s*$")
# `reminders.text.reminder_line`: "[id] 'text' (schedule, timezone); next: when; for: where".
_REMINDER = re.compile(
    r"\[(?P<id>[^\]\s]+)\] (?P<text>.*) \((?P<schedule>[^()]*), (?P<tz>[^\s,()]+)\); "
    r"next: (?P<next>.*?)(?:; for: .*)?$",
    re.DOTALL,
)
_CANCELLED = re.compile(r"cancelled \[[^\]\s]+\] (?P<text>.*)$", re.DOTALL)
_WHEN = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d)")


def tool_card(name: str, arguments: str, result: str, ok: bool, now: datetime) -> frames.ToolCard:
    """A finished tool call as its card shows it: a title in plain words, what it returned
    (without the model's framing), and a status when it did not go as planned."""
    output = result.removeprefix("error: ") if not ok else result
    status = None if ok else "failed"
    said = _said(name, result, now) if ok else None
    if said is not None:
        return frames.ToolCard(title=said, output="", status=None)  # the title says it all
    title = f"Used {name}"
    if name == "shell":
        title = _shortened("Ran " + _argument(arguments, "command"))
        match = _SHELL_STATUS.search(output)
        if match is not None:
            output = output[: match.start()]
            code = match.group(2)
            if code is None:
                status = match.group(1)
            elif code != "0":
                status = f"exit status {code}"
            else:
                status = None
    return frames.ToolCard(title=title, output=output, status=status)


def owner_notice(text: str, now: datetime) -> str:
    """A notice as the owner reads it: a "Kept:" notice says what was kept in plain words."""
    if not text.startswith(KEPT):
        return text
    kept = text.removeprefix(KEPT)
    return _said("", kept, now) or kept[:1].upper() + kept[1:]


def _said(name: str, result: str, now: datetime) -> str | None:
    """What a reminder tool did, said plainly (None: not a reminder's result)."""
    if name in ("", "set_reminder"):
        scheduled = result.removeprefix("scheduled ")
        match = _REMINDER.match(scheduled)
        if match is not None:
            return _reminder_set(match, now)
    if name in ("", "cancel_reminder"):
        match = _CANCELLED.match(result)
        if match is not None:
            return f"Reminder cancelled: “{_text(match.group('text'))}”"
    if name == "list_reminders":
        return "Looked at the reminders"
    return None


def _reminder_set(match: re.Match[str], now: datetime) -> str:
    text, schedule, tz = _text(match.group("text")), match.group("schedule"), match.group("tz")
    upcoming = match.group("next")
    if upcoming.startswith("off until"):
        return (
            f"Repeating reminder set ({schedule}): “{text}”. It starts once you reply "
            f"/confirm {match.group('id')}"
        )
    when = _when(upcoming, tz, now)
    if schedule.startswith("once"):
        return f"Reminder set for {when}: “{text}”" if when else f"Reminder set: “{text}”"
    repeating = f"Repeating reminder set ({schedule}): “{text}”"
    return f"{repeating}, next at {when}" if when else repeating


def _when(upcoming: str, tz: str, now: datetime) -> str | None:
    """'18:30 today', '09:00 tomorrow', '09:00 on Mon 14 Dec' (in the reminder's zone)."""
    match = _WHEN.match(upcoming)
    if match is None:
        return None
    day, clock = date.fromisoformat(match.group(1)), match.group(2)
    try:
        today = now.astimezone(ZoneInfo(tz)).date()
    except (ZoneInfoNotFoundError, ValueError):
        today = now.date()
    if day == today:
        return f"{clock} today"
    if day == today + timedelta(days=1):
        return f"{clock} tomorrow"
    year = "" if day.year == today.year else f" {day.year}"
    return f"{clock} on {day:%a} {day.day} {day:%b}{year}"


def _text(quoted: str) -> str:
    """A reminder's text as the model's line quotes it (Python's repr)."""
    try:
        value = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return quoted.strip("'\"")
    return value if isinstance(value, str) else quoted


def _argument(arguments: str, key: str) -> str:
    try:
        value = json.loads(arguments or "{}").get(key, "")
    except (json.JSONDecodeError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _shortened(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
