"""Running `ganglion` as a user does: a subprocess with the test's Python."""

from __future__ import annotations

import json
import os
import signal
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


async def modules_loaded_by(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-c", script], cwd=cwd, capture_stdout=True, capture_stderr=True
        )
    loaded: list[str] = json.loads(result.stdout.decode().splitlines()[-1])
    return set(loaded)


def side_python(variable: str, session: str, installs: str, error: type[Exception]) -> Path:
    """The python of a server's own virtualenv, named by `$variable` (the nox `session`
    that `installs` it sets it). Error handling: raises `error`, never skips."""
    value = os.environ.get(variable)
    if not value:
        raise error(
            f"{variable} is not set: run these tests with `uv run nox -s {session}`, "
            f"which installs {installs} in its own virtualenv and sets it"
        )
    python = Path(value)
    if not python.exists():
        raise error(f"{variable}={value} does not exist")
    return python


async def terminate(process: subprocess.Popen[bytes], *, grace: float, reap_within: float) -> None:
    """SIGTERM and up to `grace` seconds to exit (none: SIGKILL at once), then SIGKILL;
    returns once the process is reaped (within `reap_within` seconds)."""
    if grace > 0 and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
    if process.poll() is None:
        process.kill()
    with trio.fail_after(reap_within):
        await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)


def log_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a server's log, headed by its name, for an error."""
    if not path.exists():
        return f"({path.name}: missing)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text)
