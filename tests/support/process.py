"""Running `ganglion` as a user does: a subprocess with the test's Python."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import trio


async def run_ganglion(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m ganglion ARGS` to completion (60 s at most), capturing its output."""
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "ganglion", *args],
            cwd=cwd,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
