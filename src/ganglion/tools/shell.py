"""The shell tool: one command line, run by `/bin/sh -c`, without ever blocking the loop.

How a command runs:

- under a small reaper process (`_reaper.py`, started with the daemon's own Python): the
  reaper is a child subreaper, so whatever the command starts stays its descendant even
  after `setsid`, `setpgid` or a double fork; when the command's shell exits, or the call
  ends (time limit, cancellation, a daemon that died), the reaper kills every process
  the command left and only then exits. A pid namespace (`unshare`) or a cgroup would
  need privileges or a delegated cgroup tree that a daemon run by its owner does not
  have; the sandbox below is where the pid namespace comes in. Without the sandbox the
  command runs as the owner and could still outlive the call on purpose (`kill -9` the
  reaper, crontab, `systemd-run`): this is hygiene, the sandbox is the containment;
- in a session of its own (the reaper's) and a process group of its own, in the
  configured working directory (default `<data_dir>/scripts`), with stdin from /dev/null
  and stdout and stderr merged;
- under resource limits (CPU seconds, address space, file size, processes: the
  `tools.shell.limit_*` options), set by the reaper on itself before it starts the
  command, since `preexec_fn` is not safe in a threaded program;
- with an environment built from an allowlist (`BASE_ENVIRONMENT`, then the names in
  `tools.shell.pass_env`, then the values in `tools.shell.env`), never a `GANGLION_*`
  variable nor a value that holds a known secret (API keys, tokens, credential headers);
- under a time limit (`tools.shell.timeout_seconds`, or the model's `timeout_seconds`
  up to `max_timeout_seconds`);
- with bounded memory whatever it prints: the first and last halves of
  `max_output_bytes` are kept, the middle is dropped with a marker saying how much.

The daemon's own environment: `ganglion.private.protect_process` makes the daemon non-dumpable, so
its `/proc/<pid>/environ` and memory are closed to the processes of its (non-root) user;
a command run as root without the sandbox can still read them, since root has
CAP_SYS_PTRACE. In the sandbox, the pid namespace hides the daemon altogether.

With `tools.shell.sandbox: bwrap`, the command runs inside bubblewrap, in new user, pid,
IPC and (unless `network: true`) network namespaces, in a new session (no TIOCSTI into
the daemon's terminal), with every capability dropped, including as root (`check_sandbox`
refuses a bwrap that keeps them) and, where bwrap can, no further user namespaces.
The reaper starts bwrap, so `--die-with-parent` watches the reaper's only thread, which
lives exactly as long as the call (a Trio worker thread retires after 10 s idle, and
took the sandbox with it). It sees:

- read-only: /usr and the /bin, /sbin, /lib* links or directories, and from /etc only
  `ETC_ENTRIES` (users, groups, name resolution, the linker cache, locale, time zone, CA
  certificates, shell defaults): not the shadow files, SSH host keys, TLS private keys,
  saved Wi-Fi passwords or the daemon's own config;
- `tools.shell.readonly_paths` read-only and `writable_paths` (default: the data
  directory) read-write; a private /tmp, a private empty $HOME and /dev/shm, each a
  tmpfs capped by its share of `tools.shell.tmp_bytes` (`tmpfs_sizes`: they live in
  memory, outside the address-space limit), a fresh /dev (read-only, or it would be
  one more tmpfs without a cap) and /proc;
- everything else not at all (the root is a read-only tmpfs): /run, /var/run,
  $XDG_RUNTIME_DIR and their sockets (the session bus, docker.sock), /sys, /home, /root.
  Within the paths it does see, Ganglion's own files (`ganglion.owned`: the databases,
  reminders.json, the web token, the Matrix store, the logs, the config file),
  `tools.shell.hidden_paths` and the runtime directories are covered by empty ones.
  Abstract unix sockets belong to the network namespace: with `network: true` the
  host's are reachable.

`check_sandbox` fails start-up when bwrap is missing or cannot create its sandbox here,
rather than running unsandboxed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import trio

from ganglion.config import ShellToolConfig
from ganglion.datadir import SCRIPTS_DIR
from ganglion.errors import GanglionError
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool

__all__ = [
    "BASE_ENVIRONMENT",
    "ETC_ENTRIES",
    "CappedOutput",
    "SandboxError",
    "bwrap_argv",
    "check_sandbox",
    "child_environment",
    "resource_limits",
    "run_command",
    "shell_tools",
    "tmpfs_sizes",
]

READ_SIZE = 65536
# After the call ends, how long the reaper has to kill what is left and exit.
KILL_GRACE = 5.0
REAPER = Path(__file__).with_name("_reaper.py")
# Variables a command gets from the daemon's environment; a trailing * matches a prefix.
BASE_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TERM", "TZ", "USER", "LOGNAME")
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = (
    # users and groups (never the shadow files), name resolution
    *("passwd", "group", "nsswitch.conf", "host.conf", "hosts", "hostname", "resolv.conf"),
    *("gai.conf", "services", "protocols", "networks"),
    # the dynamic linker, locale and time zone
    *("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias", "locale.conf"),
    *("default/locale", "localtime", "timezone"),
    # CA certificates (never private keys)
    *("ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf"),
    *("pki/ca-trust", "pki/tls/certs", "pki/tls/cert.pem", "pki/tls/openssl.cnf"),
    "crypto-policies",
    # programs' defaults
    *("alternatives", "profile", "bash.bashrc", "inputrc", "shells", "mime.types", "magic"),
    *("magic.mime", "gitconfig", "os-release", "lsb-release", "debian_version", "fonts"),
    *("terminfo", "mtab"),
)
RUNTIME_PATHS = ("/run", "/var/run")
_SYSTEM_VIEW = [Path(p) for p in SYSTEM_PATHS] + [Path("/etc", e) for e in ETC_ENTRIES]


class SandboxError(GanglionError):
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


def _listed(name: str, patterns: Iterable[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def child_environment(
    environ: Mapping[str, str],
    secrets: Iterable[str],
    *,
    pass_env: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A command's environment: the variables of `environ` that `BASE_ENVIRONMENT` or
    `pass_env` name, then `extra`; never a `GANGLION_*` variable nor a value that holds
    one of `secrets`."""
    patterns = [*BASE_ENVIRONMENT, *pass_env]
    chosen = {name: value for name, value in environ.items() if _listed(name, patterns)}
    chosen.update(extra or {})
    known = [s for s in secrets if s]
    return {
        name: value
        for name, value in chosen.items()
        if not name.startswith("GANGLION_") and not any(s in value for s in known)
    }


def resource_limits(config: ShellToolConfig) -> dict[str, int]:
    """The reaper's limit options for `config` (a limit set to None is left out)."""
    limits = {
        "cpu": config.limit_cpu_seconds,
        "as": config.limit_address_space_bytes,
        "fsize": config.limit_file_size_bytes,
        "nproc": config.limit_processes,
    }
    return {name: value for name, value in limits.items() if value is not None}


def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


def _reaper_argv(
    argv: Sequence[str], env: Mapping[str, str], limits: Mapping[str, int]
) -> list[str]:
    options = [f"{name}={value}" for name, value in limits.items()]
    options.append(f"lc_ctype={env.get('LC_CTYPE', '')}")
    return [sys.executable, "-I", "-S", str(REAPER), *options, "--", *argv]


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: CappedOutput,
    limits: Mapping[str, int] | None = None,
) -> int:
    """Run `argv` under the reaper with resource `limits` (see `resource_limits`),
    collecting what it prints into `output`; return its exit code (negative: the signal
    that killed it).

    The caller sets the time limit (`trio.move_on_after`): when it expires, or the call is
    cancelled in any other way, every process the command started is killed and what it
    had printed stays in `output`.

    Resource handling: on every way out, the lifeline pipe is closed, which tells the
    reaper to kill every process the command left, and the reaper is reaped (killed with
    its process group if it has not exited after `KILL_GRACE`). Processes are started
    from a worker thread, which is harmless: nothing here is tied to the thread that
    started it (bubblewrap's `--die-with-parent` is tied to the reaper's only thread).
    Error handling: `OSError` when the reaper cannot start (e.g. `cwd` is missing).
    """
    lifeline, keepalive = os.pipe()
    try:
        process = await trio.lowlevel.open_process(
            _reaper_argv(argv, env, limits or {}),
            stdin=lifeline,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    except BaseException:
        os.close(keepalive)
        raise
    finally:
        os.close(lifeline)
    stdout = process.stdout
    assert stdout is not None
    try:
        await _read_all(stdout, output)  # to the end: the reaper and all it ran are gone
        await process.wait()
    finally:
        os.close(keepalive)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(KILL_GRACE):
                await _read_all(stdout, output)
                await process.wait()
            if process.returncode is None:
                _kill_group(process)
                await process.wait()
            await stdout.aclose()
    return process.returncode if process.returncode is not None else -signal.SIGKILL


async def _read_all(stream: trio.abc.ReceiveStream, output: CappedOutput) -> None:
    while chunk := await stream.receive_some(READ_SIZE):
        output.feed(chunk)


def _under(path: Path, trees: Iterable[Path]) -> bool:
    return any(path.is_relative_to(tree) for tree in trees)


def _mirror(path: Path) -> list[str]:
    """The bwrap options that show host `path` read-only at the same place: a symlink
    stays one when what it points to is shown too (or is in /proc), else the file or
    directory it points to is bound there; sockets, devices and missing paths: none."""
    source = path
    if path.is_symlink():
        source = path.resolve()
        if _under(source, [*_SYSTEM_VIEW, Path("/proc")]):
            return ["--symlink", os.readlink(path), str(path)]
    if source.is_file() or source.is_dir():
        return ["--ro-bind", str(source), str(path)]
    return []


def tmpfs_sizes(total: int) -> dict[str, int]:
    """How `tools.shell.tmp_bytes` is shared among the sandbox's private tmpfs mounts:
    /tmp half, $HOME and /dev/shm a quarter each (a $HOME that is a shown path gets no
    tmpfs, and its quarter goes unused). The kernel rounds each up to whole pages."""
    return {"tmp": total // 2, "home": total // 4, "shm": total // 4}


def _tmpfs(size: int, path: str | Path) -> list[str]:
    return ["--size", str(size), "--tmpfs", str(path)]


def _mask(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path), "--remount-ro", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def bwrap_argv(
    config: ShellToolConfig,
    *,
    cwd: Path,
    writable: Sequence[Path],
    hidden: Iterable[Path] = (),
    home: Path | None = None,
    disable_userns: bool = False,
) -> list[str]:
    """The bubblewrap prefix for one command (it looks at the file system: which system
    paths exist, which are symlinks, which `hidden` paths are there to cover).

    Mounts are ordered by depth, so a deeper path is bound on top of the tree holding it,
    and a hidden path covers what it hides however it came to be visible; the root of
    the sandbox is remounted read-only last.
    """
    argv = [config.bwrap_path, "--unshare-user", "--unshare-ipc", "--unshare-pid"]
    argv += ["--new-session", "--die-with-parent", "--cap-drop", "ALL"]
    if disable_userns:
        argv.append("--disable-userns")
    if not config.network:
        argv.append("--unshare-net")
    readonly = [p for p in config.readonly_paths if p not in writable]
    shown = [*writable, *readonly]
    if cwd != Path("/") and not _under(cwd, [*shown, *_SYSTEM_VIEW]):
        readonly.append(cwd)
        shown.append(cwd)
    # (depth, 0 for what shows and 1 for what hides, options); sorted, stable.
    mounts: list[tuple[int, int, list[str]]] = []
    for name in SYSTEM_PATHS:
        mounts.append((2, 0, _mirror(Path(name))))
    sizes = tmpfs_sizes(config.tmp_bytes)
    mounts += [(2, 0, ["--dev", "/dev"]), (2, 0, ["--proc", "/proc"])]
    mounts += [(2, 0, _tmpfs(sizes["tmp"], "/tmp")), (3, 0, _tmpfs(sizes["shm"], "/dev/shm"))]
    for entry in ETC_ENTRIES:
        path = Path("/etc", entry)
        mounts.append((len(path.parts), 0, _mirror(path)))
    if home is not None and home.is_absolute() and home != Path("/") and not _under(home, shown):
        mounts.append((len(home.parts), 0, _tmpfs(sizes["home"], home)))
    for path in readonly:
        mounts.append((len(path.parts), 0, ["--ro-bind-try", str(path), str(path)]))
    for path in writable:
        mounts.append((len(path.parts), 0, ["--bind-try", str(path), str(path)]))
    for path in dict.fromkeys(p.resolve() for p in hidden):
        if os.path.lexists(path) and _under(path, [*shown, *_SYSTEM_VIEW]):
            mounts.append((len(path.parts), 1, _mask(path)))
    for _, _, options in sorted(mounts, key=lambda mount: mount[:2]):
        argv += options
    # /dev is a tmpfs of its own: read-only, or it would be one more without a cap.
    return [*argv, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", str(cwd), "--"]


@functools.cache
def _bwrap_can(bwrap: str, option: str) -> bool:
    """Whether this bubblewrap knows `option` (`--disable-userns` came in 0.8.0)."""
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option in done.stdout


def _sandbox_prefix(
    config: ShellToolConfig, cwd: Path, writable: Sequence[Path], data_dir: Path, home: str
) -> list[str]:
    bwrap = shutil.which(config.bwrap_path) or config.bwrap_path
    owned = config.owned_files(data_dir).existing()
    runtime = [Path(p) for p in (*RUNTIME_PATHS, os.environ.get("XDG_RUNTIME_DIR", "")) if p]
    return bwrap_argv(
        config.model_copy(update={"bwrap_path": bwrap}),
        cwd=cwd,
        writable=writable,
        hidden=[*owned, *config.hidden_paths, *runtime],
        home=Path(home) if home else None,
        disable_userns=_bwrap_can(bwrap, "--disable-userns"),
    )


def check_sandbox(config: ShellToolConfig) -> None:
    """Raise `SandboxError` when `sandbox: bwrap` is configured but cannot work here: bwrap
    is missing, cannot create its namespaces, or leaves the command any capability."""
    if config.sandbox != "bwrap":
        return
    found = shutil.which(config.bwrap_path)
    if found is None:
        raise SandboxError(
            f"tools.shell.sandbox is bwrap, but bubblewrap ({config.bwrap_path}) is not "
            "installed: install it (apt install bubblewrap) or set tools.shell.sandbox: none"
        )
    prefix = bwrap_argv(
        config.model_copy(update={"bwrap_path": found}),
        cwd=Path("/"),
        writable=[],
        disable_userns=_bwrap_can(found, "--disable-userns"),
    )
    probe = [*prefix, "/bin/sh", "-c", "cat /proc/self/status"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"tools.shell.sandbox is bwrap, but bwrap cannot run: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.strip() or f"exit code {done.returncode}"
        if "--size" in reason:
            raise SandboxError(
                "tools.shell.sandbox is bwrap, but this bubblewrap cannot cap the size of the "
                "sandbox's /tmp, $HOME and /dev/shm (tools.shell.tmp_bytes needs a bwrap whose "
                f"--help lists --size): {reason}"
            )
        raise SandboxError(
            f"tools.shell.sandbox is bwrap, but bwrap cannot create its sandbox here: {reason}"
        )
    capabilities = [line for line in done.stdout.splitlines() if line.startswith("Cap")]
    if any(line.split()[1].strip("0") for line in capabilities) or not capabilities:
        raise SandboxError(
            "tools.shell.sandbox is bwrap, but commands kept capabilities in the sandbox "
            f"({', '.join(capabilities) or 'no capability report'}); refusing to run them"
        )


def shell_tools(
    config: ShellToolConfig, data_dir: Path, secrets: Callable[[], Iterable[str]]
) -> list[Tool]:
    """The shell tool. `secrets()` gives the values to keep out of the child's environment
    (called per command, so a token created after start-up is included)."""
    cwd = config.cwd or data_dir / SCRIPTS_DIR
    writable = config.writable_paths or [data_dir]
    limits = resource_limits(config)

    @tool(core=True, brief="Run a shell command; returns its output and exit code.")
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
        env = child_environment(os.environ, secrets(), pass_env=config.pass_env, extra=config.env)
        argv = ["/bin/sh", "-c", command]
        if config.sandbox == "bwrap":
            home = env.get("HOME", "")
            prefix = await trio.to_thread.run_sync(
                _sandbox_prefix, config, cwd, writable, data_dir, home
            )
            argv = prefix + argv
        output = CappedOutput(config.max_output_bytes)
        try:
            with trio.move_on_after(timeout) as limit:
                code = await run_command(argv, cwd=cwd, env=env, output=output, limits=limits)
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
