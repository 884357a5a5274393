"""Ganglion's files are the owner's only.

The data directory holds every conversation, the memories and the web token (which opens
a shell on this machine); the logs hold what was said and done. Another local account
must be able to read none of it. So the daemon runs with a umask of 077 (everything it
creates is 0600, every directory 0700), and at start-up it tightens what it finds looser
in the data directory and among its own log files (left by an older version, a copy, an
editor), saying so in the log. The log directory itself may be shared (`/var/log/...`),
so only Ganglion's files in it are changed. The daemon process itself is made
non-dumpable (`protect_process`): commands and MCP servers run as the same user, and must
not read its environment or memory through /proc. Symlinks are never followed or changed: what they point to is not ours.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from ganglion.safefs import NotFound, SafeDir, open_dir

__all__ = [
    "PRIVATE_UMASK",
    "keep_secret",
    "load_or_create_secret",
    "protect_process",
    "read_secret",
    "tighten",
]

PR_SET_DUMPABLE = 4

PRIVATE_UMASK = 0o077


def tighten(directories: Iterable[Path], files: Iterable[Path] = ()) -> list[tuple[Path, int]]:
    """Remove group and other permissions from each directory and everything under it,
    and from each of `files`.

    Returns the paths changed with their old modes. Only regular files and directories are
    changed; symlinks are skipped, never followed. Entries that vanish meanwhile are
    skipped; other `OSError`s propagate.
    """
    changed: list[tuple[Path, int]] = []
    for root in directories:
        if not root.is_dir() or root.is_symlink():
            continue
        _tighten_one(root, changed)
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            for name in (*dirnames, *filenames):
                _tighten_one(Path(directory, name), changed)
    for path in files:
        _tighten_one(path, changed)
    return changed


def _tighten_one(path: Path, changed: list[tuple[Path, int]]) -> None:
    # Opened without following symlinks and changed through the descriptor, so a symlink
    # swapped in after the check cannot redirect the chmod to a file elsewhere.
    try:
        info = path.lstat()
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return  # symlinks, sockets, fifos: not ours to change
        mode = stat.S_IMODE(info.st_mode)
        if not mode & 0o077:
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink meanwhile
            return
        raise
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            return
        os.fchmod(fd, stat.S_IMODE(opened.st_mode) & ~0o077)
    finally:
        os.close(fd)
    changed.append((path, mode))


def protect_process() -> None:
    """Make this process non-dumpable: its /proc/<pid>/environ, memory and ptrace are
    then closed to other processes of the same user unless they have CAP_SYS_PTRACE
    (root has it). Also means: no core dumps, and debuggers need root.

    Error handling: `OSError` when the kernel refuses (it does not on Linux).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def load_or_create_secret(data_dir: Path, name: str, configured: str | None) -> str:
    """A secret the daemon keeps for itself (the web token, the Matrix pickle key): the
    configured value, else the one stored in `data_dir/name`, else a new one (256 bits)
    stored there, 0600.

    The file is read and written beneath the data directory's handle (`safefs`): a file
    planted as a link or a hard link (to content someone knows) is refused rather than
    trusted. Error handling: `safefs.SafePathError` for such a file.
    """
    if configured is not None:
        return configured
    with open_dir(data_dir) as directory:
        stored = _read_secret(directory, name)
        if stored:
            return stored
        secret = secrets.token_urlsafe(32)
        directory.write_atomic(name, (secret + "\n").encode(), mode=0o600)
    return secret


def keep_secret(directory: Path, name: str, value: str) -> None:
    """Keep `value` in `directory/name`, replaced atomically, 0600 when new (the Matrix
    cross-signing keys, sealed; a recovery key handed out); read it back with
    `read_secret`.

    Written beneath the directory's handle (`safefs`), as `load_or_create_secret` does.
    Error handling: `safefs.SafePathError` for a file planted as a link, `OSError`.
    """
    with open_dir(directory) as opened:
        opened.write_atomic(name, (value + "\n").encode(), mode=0o600)


def read_secret(data_dir: Path, name: str) -> str | None:
    """The secret kept in `data_dir/name` by `load_or_create_secret`, or None when there
    is none yet (or no data directory); never creates anything (for `ganglion check`).

    Error handling: `safefs.SafePathError` for a file planted as a link, or a data
    directory that cannot be opened.
    """
    try:
        with open_dir(data_dir) as directory:
            return _read_secret(directory, name) or None
    except NotFound:
        return None


def _read_secret(directory: SafeDir, name: str) -> str:
    try:
        return directory.read_bytes(name)[0].decode("utf-8", "replace").strip()
    except NotFound:
        return ""
