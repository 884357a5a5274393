"""Runs one command for the shell tool, and makes sure nothing it started outlives the call.

The daemon starts this file as a program, with its own interpreter in isolated mode and
without the site module (`python -I -S _reaper.py OPTION=VALUE ... -- PROGRAM ARGS...`),
so it imports only the standard library and starts in a few milliseconds. Its stdin is
the read end of a *lifeline* pipe whose write end only the daemon holds; its stdout and
stderr are the pipe the daemon collects the output from.

Rules, in order:

1. It makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process the command
   starts stays its descendant even when it leaves the session or process group
   (`setsid`, `setpgid`) or its parent exits (double fork, `nohup ... &`, daemon(3)),
   because an orphan is re-parented to the nearest subreaper, not to init.
2. It sets the resource limits on itself before it starts the command, which inherits
   them (the daemon cannot use `preexec_fn`: it is not safe in a threaded program).
3. It starts the command in a process group of its own, with stdin from /dev/null, the
   signals it ignores itself restored to their defaults, and the environment it was given.
4. It waits for whichever comes first: the command exits, or the lifeline closes (the
   daemon ended the call: time limit, cancellation, a daemon that died). Orphans that
   exit meanwhile are reaped at once.
5. Then it kills every descendant with SIGKILL, scanning /proc again until none is
   left (a process forked during a scan is re-parented to it when its parent dies, so
   the next scan finds it), reaps them all, and exits as the command did: the same exit
   code, or killed by the same signal.

It ignores SIGINT, SIGTERM and SIGHUP, so a command's `kill 0` or `kill $PPID` does not
stop the clean-up; SIGKILL of course does: without a sandbox, a command runs as the
owner and can always arrange to outlive the call (this is hygiene, not containment).

Options: `cpu`, `as`, `fsize`, `nproc` (RLIMIT_CPU, _AS, _FSIZE, _NPROC; soft and hard,
never above the hard limit it already has) and `lc_ctype` (the LC_CTYPE the command
gets, empty for none: Python's C-locale coercion sets LC_CTYPE in this process's
environment at start-up, and the command must get the environment the daemon chose).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import sys

__all__ = ["descendants", "main"]

PR_SET_CHILD_SUBREAPER = 36
LIFELINE = 0
LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
}
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Python itself ignores SIGPIPE and SIGXFSZ; the command gets the defaults back.
RESTORED = (*IGNORED, signal.SIGPIPE, signal.SIGXFSZ)


def descendants(root: int) -> list[int]:
    """Every process whose chain of parents leads to `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # exited meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    queue = [root]
    while queue:
        kids = children.get(queue.pop(), [])
        found += kids
        queue += kids
    return found


def _set_limit(name: str, value: int) -> None:
    which = LIMITS[name]
    # A second more of CPU time: SIGXCPU at the soft limit says why, SIGKILL follows.
    soft, hard = value, value + 1 if name == "cpu" else value
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def _reap(main: int) -> int | None:
    """Reap every child that has exited; the wait status of `main` if it was one."""
    status = None
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main:
            status = code


def _kill_descendants(main: int) -> int | None:
    """Kill and reap every descendant; the wait status of `main` if it was reaped here."""
    status = None
    while True:
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:  # no child left: every descendant is gone
            return status
        if pid == main:
            status = code
        if (reaped := _reap(main)) is not None:
            status = reaped


def _exit_as(status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of this process
    if -code != signal.SIGKILL:  # cannot be caught or ignored anyway
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def main(args: list[str]) -> None:
    split = args.index("--")
    options = dict(arg.split("=", 1) for arg in args[:split])
    argv = args[split + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"ganglion: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    for name, value in options.items():
        if name in LIMITS:
            _set_limit(name, int(value))
    env = dict(os.environ)
    env.pop("LC_CTYPE", None)
    if options.get("lc_ctype"):
        env["LC_CTYPE"] = options["lc_ctype"]
    for number in IGNORED:
        signal.signal(number, signal.SIG_IGN)
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    try:
        child = os.posix_spawnp(
            argv[0],
            argv,
            env,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
            setpgroup=0,
            setsigdef=RESTORED,
        )
    except OSError as exc:
        sys.exit(f"ganglion: cannot run {argv[0]}: {exc.strerror or exc}")
    status = None
    while status is None:
        ready, _, _ = select.select([LIFELINE, wakeup_read], [], [])
        if wakeup_read in ready:
            os.read(wakeup_read, 4096)
        status = _reap(child)
        if LIFELINE in ready:  # the daemon ended the call
            break
    killed = _kill_descendants(child)
    final = status if status is not None else killed
    assert final is not None  # the command is a child: reaped by now
    _exit_as(final)


if __name__ == "__main__":
    main(sys.argv[1:])
