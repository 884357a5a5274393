"""Ganglion's errors form one tree under GanglionError, each with a message for people,
and each drawn in the tree `ganglion.errors` shows (or in its own package's tree)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator

import pytest

import ganglion
from ganglion.errors import GanglionError
from ganglion.store import RewindReason
from ganglion.usage import Overrun


def _import_everything() -> None:
    for module in pkgutil.walk_packages(ganglion.__path__, "ganglion."):
        if not module.name.endswith("__main__"):  # that one runs the command line
            importlib.import_module(module.name)


def _subclasses(cls: type[GanglionError]) -> Iterator[type[GanglionError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_import_everything()
ERRORS = sorted(set(_subclasses(GanglionError)), key=lambda cls: cls.__qualname__)

# Errors whose constructor takes more than the message.
ARGUMENTS: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
    "FrameError": (("bad", "x"), {}),
    "ChatError": (("x", 3), {}),
    "RewindRefused": ((RewindReason.BUSY, "x"), {}),
    "ThreadDeleted": (("web_00",), {}),
    "ForcedStop": ((2,), {}),
    "LLMRequestRejected": ((400, "x"), {}),
    "LLMImagesRefused": ((400, "x"), {}),
    "LLMContextExceeded": ((400, "x"), {"limit": None, "prompt_tokens": None}),
    "MatrixInteractiveAuth": (("x",), {"session": None, "flows": []}),
    "MatrixMediaTooLarge": (("x",), {"limit": 1}),
    "BudgetExceeded": ((Overrun("daily", 10, 9, 2),), {"autonomous": False}),
}


def _make(cls: type[GanglionError]) -> GanglionError:
    args, kwargs = ARGUMENTS.get(cls.__name__, (("x",), {}))
    return cls(*args, **kwargs)


def test_the_walk_finds_the_tree() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"StartupError", "ConfigError", "StoreError", "LLMError", "MatrixError"} <= names
    assert {"SubmitError", "FrameError", "TurnError", "ForcedStop"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_a_ganglion_error_with_a_message_for_people(
    cls: type[GanglionError],
) -> None:
    error = _make(cls)
    assert isinstance(error, GanglionError)
    assert isinstance(error.user_message, str) and error.user_message
    if cls.user_message is GanglionError.user_message and cls.__name__ not in ARGUMENTS:
        assert error.user_message == "x"


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_drawn_in_a_tree(cls: type[GanglionError]) -> None:
    trees = (sys.modules["ganglion.errors"].__doc__ or "") + (
        sys.modules[cls.__module__].__doc__ or ""
    )
    if cls.__module__ == "ganglion.safefs":
        pytest.skip("the refusals of safefs are drawn as SafePathError")
    assert cls.__name__ in trees


def test_model_errors_keep_their_own_message_for_people() -> None:
    from ganglion.llm import LLMError, LLMTimeout

    error = LLMTimeout("http://127.0.0.1:1/v1: ReadTimeout")
    assert isinstance(error, LLMError) and isinstance(error, GanglionError)
    assert "127.0.0.1" not in error.user_message
