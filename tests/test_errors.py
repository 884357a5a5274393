"""Ganglion's errors form one tree under GanglionError, each with a message for people."""

from __future__ import annotations

import pytest

from ganglion.backend import SubmitError
from ganglion.config import ConfigError
from ganglion.entries import EntryError
from ganglion.errors import GanglionError, StartupError
from ganglion.llm import LLMError
from ganglion.matrix.errors import MatrixError
from ganglion.reminders.schedule import ScheduleError
from ganglion.safefs import SafePathError
from ganglion.services import ServiceUnavailable
from ganglion.store import MigrationError, StoreError
from ganglion.terminal import ChatError
from ganglion.threads.turn import TurnError
from ganglion.tools.files import FileAccessError
from ganglion.tools.mcp import ConnectionLost
from ganglion.tools.registry import ToolError
from ganglion.tools.shell import SandboxError
from ganglion.web.protocol import FrameError


@pytest.mark.parametrize(
    "error",
    [
        StartupError("x"),
        ConfigError("x"),
        StoreError("x"),
        MigrationError("x"),
        TurnError("x"),
        ToolError("x"),
        FileAccessError("x"),
        SafePathError("x"),
        EntryError("x"),
        ScheduleError("x"),
        SandboxError("x"),
        ConnectionLost("x"),
        ServiceUnavailable("x"),
        SubmitError("x"),
        FrameError("bad", "x"),
        ChatError("x", 3),
        MatrixError("x"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_error_is_a_ganglion_error_with_a_message_for_people(error: GanglionError) -> None:
    assert isinstance(error, GanglionError)
    assert error.user_message == "x"


def test_model_errors_keep_their_own_message_for_people() -> None:
    from ganglion.llm import LLMTimeout

    error = LLMTimeout("http://127.0.0.1:1/v1: ReadTimeout")
    assert isinstance(error, LLMError) and isinstance(error, GanglionError)
    assert "127.0.0.1" not in error.user_message
