"""Fuzzing where input comes from outside (issue 16, item 4): configuration files, tool
arguments as a model would send them, schedules and timezones given to set_reminder, and
the SSE parser on arbitrary bytes. Each either works or fails with our own clear error;
nothing else escapes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import trio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganglion.config import Config, ConfigError, load_config
from ganglion.llm.sse import SSEParser
from ganglion.messages import AddReminder
from ganglion.reminders.actor import ReminderActor
from ganglion.reminders.schedule import ScheduleError
from ganglion.reminders.store import ReminderStore
from ganglion.tools import ToolContext, ToolRegistry
from ganglion.tools.files import file_tools
from ganglion.tools.memory import memory_tools
from ganglion.tools.shell import shell_tools
from ganglion.transcript import ToolCall
from ganglion_actors import Reply

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

# --- configuration files ----------------------------------------------------------------

SECTIONS: dict[str, list[str]] = {
    "llm": ["base_url", "model", "context_window", "max_tokens", "temperature", "timeouts"],
    "web": ["enabled", "host", "port", "token", "allowed_origins"],
    "matrix": ["enabled", "homeserver", "user_id", "allowed_users", "access_token"],
    "tools": ["shell", "files", "memory", "mcp"],
    "heartbeat": ["enabled", "interval_seconds"],
    "reminders": ["grace_seconds"],
    "compaction": ["threshold_tokens", "threshold_fraction", "keep_recent_messages"],
    "threads": ["idle_seconds", "mailbox_size"],
    "logging": ["level", "dir"],
}
config_like = st.dictionaries(
    st.sampled_from([*SECTIONS, "timezone", "data_dir", "unknown"]),
    st.one_of(
        junk,
        st.sampled_from(list(SECTIONS)).flatmap(
            lambda section: st.dictionaries(st.sampled_from(SECTIONS[section]), junk, max_size=3)
        ),
    ),
    max_size=4,
)
yaml_text = st.one_of(
    config_like.map(lambda value: yaml.safe_dump(value, allow_unicode=True)),
    st.text(max_size=200),
)


@FUZZ
@given(text=yaml_text)
def test_any_yaml_gives_a_config_or_a_clear_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config, _ = load_config(path, environ={})
        except ConfigError as exc:
            message = str(exc)
            assert message and "Traceback" not in message
            assert str(path) in message  # it says which file
            return
        assert isinstance(config, Config)


# --- tool arguments as a model sends them -----------------------------------------------

CTX = ToolContext(thread_id="web_0000000000000000", turn_id="t", interface="web")


def _tools(root: Path) -> ToolRegistry:
    config = Config(data_dir=root)
    return ToolRegistry(
        [
            *file_tools(config.tools.files, root),
            *memory_tools(config.tools.memory, root),
            # The shell tool is fuzzed with arguments it must refuse: random text is never
            # run as a command here.
            *shell_tools(config.tools.shell, root, list),
        ]
    )


def _arguments(names: list[str]) -> st.SearchStrategy[str]:
    objects = st.dictionaries(st.sampled_from([*names, "extra"]), junk, max_size=len(names) + 1)
    return st.one_of(objects.map(json.dumps), junk.map(json.dumps), st.text(max_size=60))


TOOL_NAMES = sorted(_tools(Path(tempfile.gettempdir())).names)


@FUZZ
@given(data=st.data(), name=st.sampled_from(TOOL_NAMES))
def test_any_arguments_to_any_tool_give_a_result(data: st.DataObject, name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        tools = _tools(root)
        schema = next(s for s in tools.schemas() if s["function"]["name"] == name)
        params = list(schema["function"]["parameters"].get("properties", {}))
        arguments = data.draw(_arguments(params))
        if name == "shell":
            decoded = _decode(arguments)
            if isinstance(decoded, dict) and isinstance(decoded.get("command"), str):
                arguments = json.dumps({**decoded, "command": 42})
        result = trio.run(tools.call, ToolCall("c1", name, arguments), CTX)
        assert isinstance(result.content, str)
        if not result.ok:
            assert "Traceback" not in result.content


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


# --- schedules and timezones for set_reminder -------------------------------------------

schedules = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "in 20m",
            "in 0s",
            "in -5m",
            "in 99999999d",
            "2026-02-30 09:00",
            "25:00",
            "9999-12-31 23:59",
            "0001-01-01 00:00",
            "2026-03-29 02:30",
        ]
    ),
    st.sampled_from(["* * * * *", "0 9 * * 1-5", "61 * * * *", "@hourly", "0 0 31 2 *"]),
    st.builds(
        lambda n, u: f"{n}{u}",
        st.integers(-5, 10**9),
        st.sampled_from(["s", "m", "h", "d", "w", "x", ""]),
    ),
)
timezones = st.one_of(
    st.none(),
    st.sampled_from(["Europe/Paris", "UTC", "America/St_Johns", "Mars/Olympus", "", "../etc"]),
    st.text(max_size=20),
)


async def _add(directory: Path, kind: str, spec: str, timezone: str | None) -> None:
    store = await ReminderStore.open(directory / "scheduler.db")
    try:
        actor = ReminderActor(store, Config().reminders, "Europe/Paris", _never, _never)
        request = AddReminder(
            "ping",
            kind,
            spec,
            Reply(),
            timezone=timezone,
            thread_id=CTX.thread_id,  # type: ignore[arg-type]
        )
        try:
            await actor.add(request)
        except ScheduleError as exc:
            refusal = str(exc)
            assert refusal  # said to the model as the tool's result
    finally:
        await store.aclose()


async def _never(*args: Any) -> None:
    raise AssertionError("nothing is due while adding")


@FUZZ
@given(kind=st.sampled_from(["at", "every", "cron"]), spec=schedules, timezone=timezones)
def test_any_schedule_and_timezone_is_accepted_or_refused_clearly(
    kind: str, spec: str, timezone: str | None
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        trio.run(_add, Path(directory), kind, spec, timezone)


# --- the SSE parser on arbitrary bytes --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_the_sse_parser_takes_any_bytes_in_any_chunks(body: bytes, cuts: list[int]) -> None:
    parser = SSEParser()
    events: list[str] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += parser.feed(body[start:cut])
        start = max(start, cut)
    events += parser.feed(body[start:])
    events += parser.close()
    assert all(isinstance(event, str) for event in events)
    # The same bytes in one piece give the same events.
    whole = SSEParser()
    assert whole.feed(body) + whole.close() == events
