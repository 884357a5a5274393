"""The shell tool: one command line, run by `/bin/sh -c`, without ever blocking the loop.

How a command runs:

- in its own session and process group (`start_new_session`), in the configured working
  directory (default `<data_dir>/scripts`), with stdin from /dev/null and stdout and
  stderr merged into one pipe;
- with an environment without Ganglion's secrets: every `GANGLION_*` variable and every
  variable whose value contains a known secret (API keys, tokens, credential headers) is
  left out;
- under a time limit (`tools.shell.timeout_seconds`, or the model's `timeout_seconds`
  up to `max_timeout_seconds`): past it, the whole process group is killed;
- with bounded memory whatever it prints: the first and last halves of
  `max_output_bytes` are kept, the middle is dropped with a marker saying how much.

When the command's shell exits, whatever it left running in the background (still in its
process group) is killed too, so no command outlives its tool call or holds the output
pipe open. A cancelled turn (shutdown, `/new`) kills the group the same way.

With `tools.shell.sandbox: bwrap`, the command runs inside bubblewrap: the whole file
system read-only except the configured writable paths (default: the data directory),
a private /tmp, fresh /dev and /proc, Ganglion's private files (databases, web token)
hidden, and optionally no network. `check_sandbox` fails start-up when bwrap is missing
or cannot create its namespaces here, rather than running unsandboxed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import trio

from ganglion.config import ShellToolConfig
from ganglion.datadir import is_private_file
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool

__all__ = [
    "CappedOutput",
    "SandboxError",
    "check_sandbox",
    "child_environment",
    "run_command",
    "shell_tools",
]

READ_SIZE = 65536
# After a kill, how long to wait for the pipe to close and the process to be reaped.
KILL_GRACE = 5.0


class SandboxError(Exception):
    """The configured sandbox cannot be used; the message is for the operator."""


class CappedOutput:
    """Keeps the first and last `limit // 2` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            if len(self._tail) > 2 * self._tail_limit:  # trim in batches, not per chunk
                del self._tail[: len(self._tail) - self._tail_limit]

    def text(self) -> str:
        tail = bytes(self._tail[-self._tail_limit :]) if self._tail_limit else b""
        omitted = self.total - len(self._head) - len(tail)
        head = self._head.decode("utf-8", errors="replace")
        if omitted <= 0:
            return head + tail.decode("utf-8", errors="replace")
        marker = f"\n[… {omitted} bytes of output omitted …]\n"
        return head + marker + tail.decode("utf-8", errors="replace")


def _status(code: int) -> str:
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def child_environment(environ: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """`environ` without Ganglion's variables and without any value holding a secret."""
    known = [s for s in secrets if s]
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith("GANGLION_") and not any(s in value for s in known)
    }


def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], output: CappedOutput
) -> int:
    """Run `argv` in its own process group, collecting what it prints into `output`;
    return its exit code (negative: the signal that killed it).

    The caller sets the time limit (`trio.move_on_after`): when it expires, or the call is
    cancelled in any other way, the whole process group is killed and what it had
    printed stays in `output`.

    Resource handling: the process group is killed and the process reaped on every way
    out. Error handling: `OSError` when the program cannot start.
    """
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    stdout = process.stdout
    assert stdout is not None

    async def kill_leftovers_on_exit() -> None:
        await process.wait()
        _kill_group(process)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_leftovers_on_exit)
            await _read_all(stdout, output)
    finally:
        _kill_group(process)
        with trio.CancelScope(shield=True):
            # What the group wrote before it died; bounded, because a process that left
            # the group (setsid) could keep the pipe open.
            with trio.move_on_after(KILL_GRACE):
                await _read_all(stdout, output)
            with trio.move_on_after(KILL_GRACE):
                await process.wait()
            await stdout.aclose()
    return process.returncode if process.returncode is not None else -signal.SIGKILL


async def _read_all(stream: trio.abc.ReceiveStream, output: CappedOutput) -> None:
    while chunk := await stream.receive_some(READ_SIZE):
        output.feed(chunk)


def bwrap_argv(
    config: ShellToolConfig, cwd: Path, writable: Sequence[Path], data_dir: Path
) -> list[str]:
    """The bubblewrap prefix: read-only root, the writable paths bound read-write, private
    /tmp, fresh /dev and /proc, Ganglion's private files hidden."""
    argv = [config.bwrap_path, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/"]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    if data_dir.is_dir():
        for private in sorted(data_dir.iterdir()):
            if is_private_file(data_dir, private):
                argv += ["--ro-bind", "/dev/null", str(private)]
    if not config.network:
        argv.append("--unshare-net")
    return [*argv, "--chdir", str(cwd), "--"]


def check_sandbox(config: ShellToolConfig) -> None:
    """Raise `SandboxError` when `sandbox: bwrap` is configured but cannot work here."""
    if config.sandbox != "bwrap":
        return
    found = shutil.which(config.bwrap_path)
    if found is None:
        raise SandboxError(
            f"tools.shell.sandbox is bwrap, but bubblewrap ({config.bwrap_path}) is not "
            "installed: install it (apt install bubblewrap) or set tools.shell.sandbox: none"
        )
    probe = [found, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-pid", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"tools.shell.sandbox is bwrap, but bwrap cannot run: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.strip() or f"exit code {done.returncode}"
        raise SandboxError(
            f"tools.shell.sandbox is bwrap, but bwrap cannot create its sandbox here: {reason}"
        )


def shell_tools(
    config: ShellToolConfig, data_dir: Path, secrets: Callable[[], Iterable[str]]
) -> list[Tool]:
    """The shell tool. `secrets()` gives the values to keep out of the child's environment
    (called per command, so a token created after start-up is included)."""
    cwd = config.cwd or data_dir / "scripts"
    writable = config.writable_paths or [data_dir]

    @tool
    async def shell(ctx: ToolContext, command: str, timeout_seconds: float | None = None) -> str:
        """Run a shell command (/bin/sh -c) on the owner's machine and return its output
        (stdout and stderr together) and exit code. Runs in the scripts directory unless
        the command changes directory. Non-interactive: no stdin; background processes
        are stopped when the command ends."""
        if not command.strip():
            raise ToolError("the command is empty")
        timeout = config.timeout_seconds
        if timeout_seconds is not None:
            if timeout_seconds <= 0:
                raise ToolError("timeout_seconds must be more than 0")
            timeout = min(timeout_seconds, config.max_timeout_seconds)
        argv = ["/bin/sh", "-c", command]
        if config.sandbox == "bwrap":
            prefix = await trio.to_thread.run_sync(bwrap_argv, config, cwd, writable, data_dir)
            argv = prefix + argv
        env = child_environment(os.environ, secrets())
        output = CappedOutput(config.max_output_bytes)
        try:
            with trio.move_on_after(timeout) as limit:
                code = await run_command(argv, cwd=cwd, env=env, output=output)
        except OSError as exc:
            raise ToolError(f"the command could not start: {exc.strerror or exc}") from None
        text = output.text().rstrip()
        if limit.cancelled_caught:
            raise ToolError(
                f"the command did not finish within {timeout:g} s; it was killed with its "
                f"child processes. Output so far:\n{text}"
            )
        report = f"{text}\n[{_status(code)}]".lstrip()
        if code != 0:
            raise ToolError(report)
        return report

    return [shell]
