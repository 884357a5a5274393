"""The real parts of this machine that some tests need (bubblewrap, root), and what a
test does when one is missing.

Outside CI a missing part skips the test, and the reason says how to get it. Under CI
(`CI` set to anything but empty) it fails the test instead: a green CI run may not hide
a sandbox that never ran. A bubblewrap that is installed but unusable (Ganglion's own
`check_sandbox()` refuses it: it cannot make its namespaces, or leaves the command a
capability) always fails: that is the product's sandbox broken, not a part missing.

The Chromium, Synapse and llama.cpp sessions never skip at all (tests/browser/conftest.py,
tests/support/synapse.py, tests/support/llamacpp.py): their part is what they test.
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["in_ci", "require_bwrap", "require_root", "unavailable"]

BWRAP_INSTALL = (
    "install bubblewrap (sudo apt-get install bubblewrap); `uv run nox -s tests` does it "
    "when run as root"
)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def unavailable(need: str, how: str) -> NoReturn:
    """Skip (outside CI) or fail (under CI) the running test, which needs `need`;
    `how` says how to get it."""
    if in_ci():
        pytest.fail(f"CI is set and {need}: {how}", pytrace=False)
    pytest.skip(f"{need}: {how}")


@functools.cache
def _sandbox_refusal() -> str | None:
    from ganglion.config import ShellToolConfig
    from ganglion.tools.shell import SandboxError, check_sandbox

    try:
        check_sandbox(ShellToolConfig(sandbox="bwrap"))
    except SandboxError as exc:
        return str(exc)
    return None


def require_bwrap() -> None:
    """Bubblewrap, installed and accepted by `check_sandbox()` (checked once a run)."""
    if shutil.which("bwrap") is None:
        unavailable(
            "this test runs the shell sandbox and bubblewrap is not installed", BWRAP_INSTALL
        )
    refusal = _sandbox_refusal()
    if refusal is not None:
        pytest.fail(f"check_sandbox() refuses this machine's bubblewrap: {refusal}", pytrace=False)


def require_root(why: str) -> None:
    """Root, for a test that shows what holds when the daemon runs as root."""
    if os.geteuid() != 0:
        unavailable(f"this test needs root ({why})", "run the suite as root (sudo uv run nox)")
