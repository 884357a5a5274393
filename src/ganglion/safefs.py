"""File access beneath a directory handle that no symlink or hardlink can redirect.

The daemon reads and writes files in directories that something less trusted can change
at the same time: the model through its tools, or a (sandboxed) shell command that plants
`skills/x.md -> /proc/self/environ` or swaps `scripts/r` for a link between a `realpath`
check and the `open` that follows. So no path here is ever checked and then opened by
name. A trusted directory (a file-tool root, the data directory) is opened once, as the
owner configured it, and every path given to a `SafeDir` is resolved from that handle:

- with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`
  where the kernel has it (Linux 5.6+): the kernel refuses every link on the way, and
  any escape, in the same system call that opens the file;
- elsewhere (older kernels, seccomp filters that answer ENOSYS), by a walk that opens one
  component at a time with `O_NOFOLLOW` relative to the previous component's handle.

Either way there is no window between the check and the use: the check *is* the open.

Invariants:

1. A path given to a `SafeDir` is relative and free of `..` and NUL; it is resolved
   beneath the handle and never leaves it.
2. No symbolic link beneath the handle is followed, in a directory component or in the
   last one. (A link can be listed and deleted; deleting removes the link itself.)
3. A regular file with more than one hard link is never read or replaced: a hard link can
   make a private file (the web token, the config) appear under an innocent name.
4. Only regular files are read; opening never blocks (a planted FIFO is refused, not
   waited on).
5. A write is atomic: a temporary file created with `O_CREAT | O_EXCL | O_NOFOLLOW` in
   the target's directory handle, synced, renamed over the target through that handle,
   then the directory synced. Readers see the old file or the new one, never a mix.
6. Every error is a `SafePathError` whose message names only the relative path the caller
   gave, so it is safe to show to the model.

The handle itself is opened by name, following links: the directory is the owner's
choice. Error hierarchy:

    SafePathError          any refusal or failure; the message is for the model
    ├── BadPath            empty, absolute, `..`, NUL
    ├── LinkRefused        a symbolic link on the way, or a hard-linked file
    ├── NotFound           no such file or directory
    └── WrongKind          a directory where a file is wanted, or the other way round
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ganglion.errors import GanglionError

__all__ = [
    "BadPath",
    "DirEntry",
    "LinkRefused",
    "NotFound",
    "SafeDir",
    "SafePathError",
    "WrongKind",
    "open_dir",
    "replaced_name",
    "split_path",
]


class SafePathError(GanglionError):
    """A file operation refused or failed; the message names only the caller's path."""


class BadPath(SafePathError):
    """The path is empty, absolute, or uses `..` or NUL."""


class LinkRefused(SafePathError):
    """A symbolic link on the way, or a file with more than one hard link."""


class NotFound(SafePathError):
    """No such file or directory."""


class WrongKind(SafePathError):
    """A directory where a file is wanted, or a file where a directory is."""


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One directory entry, described without following it."""

    name: str
    kind: str  # "file", "dir", "link" or "other"
    size: int


_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_WALK_FLAGS = _O_PATH | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC

# openat2(2): numbers from 424 on are the same on every architecture but alpha.
_OPENAT2_NR = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "riscv64": 437, "ppc64le": 437}
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def _load_syscall() -> tuple[Callable[..., int], int] | None:
    number = _OPENAT2_NR.get(os.uname().machine) if hasattr(os, "uname") else None
    if number is None:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    syscall: Callable[..., int] = function
    return syscall, number


_syscall = _load_syscall()
# False once the kernel said ENOSYS; tests set it to force the walk.
use_openat2 = _syscall is not None


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
    assert _syscall is not None
    syscall, number = _syscall
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, _RESOLVE)
    for _ in range(8):  # EAGAIN: a concurrent rename; the kernel asks us to retry
        fd = syscall(
            ctypes.c_long(number),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code != errno.EAGAIN:
            raise OSError(code, os.strerror(code))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _walk(dir_fd: int, parts: tuple[str, ...], flags: int, mode: int) -> int:
    """Open `parts` beneath `dir_fd` one component at a time, never following a link."""
    opened: list[int] = []
    current = dir_fd
    try:
        for name in parts[:-1]:
            current = os.open(name, _WALK_FLAGS, dir_fd=current)
            opened.append(current)
        return os.open(parts[-1], flags | _O_NOFOLLOW, mode, dir_fd=current)
    finally:
        for fd in opened:
            os.close(fd)


def split_path(path: str) -> tuple[str, ...]:
    """The components of a relative path (`.` and empty ones dropped), or `BadPath`.
    `()` is the directory itself."""
    if not path or "\x00" in path:
        raise BadPath("give a non-empty path")
    if path.startswith("/"):
        raise BadPath(f"{path!r} is absolute; give a path relative to the directory")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise BadPath(f"{path!r} uses '..'; give a path without it")
    return parts


def _describe(exc: OSError, path: str) -> SafePathError:
    """Our error for `exc`, naming only the caller's `path`."""
    match exc.errno:
        case errno.ELOOP | errno.EXDEV:
            return LinkRefused(
                f"{path!r} is or goes through a symbolic link; links are never followed here"
            )
        case errno.ENOENT:
            return NotFound(f"no such file or directory: {path!r}")
        case errno.ENOTDIR:
            return WrongKind(f"a part of {path!r} is not a directory")
        case errno.EISDIR:
            return WrongKind(f"{path!r} is a directory")
        case _:
            return SafePathError(f"cannot use {path!r}: {exc.strerror or 'error'}")


def _check_file(st: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise WrongKind(f"{path!r} is a directory")
    if stat.S_ISLNK(st.st_mode):
        raise LinkRefused(f"{path!r} is a symbolic link; links are never followed here")
    if not stat.S_ISREG(st.st_mode):
        raise WrongKind(f"{path!r} is not a regular file")
    if st.st_nlink > 1:
        raise LinkRefused(
            f"{path!r} has {st.st_nlink} hard links; a file with more than one is refused"
        )


class SafeDir:
    """An open directory; every path given to a method is resolved beneath it.

    Resource handling: owns one file descriptor; use it as a context manager (or call
    `close`). Blocking: call it from a worker thread. Error handling: `SafePathError`.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """A new descriptor for `path` (never through a link); `()` opens this directory."""
        parts = split_path(path)
        global use_openat2
        try:
            if not parts:
                return os.open(".", flags, dir_fd=self.fd)
            if use_openat2:
                try:
                    return _openat2(self.fd, "/".join(parts), flags | _O_CLOEXEC, mode)
                except OSError as exc:
                    if exc.errno != errno.ENOSYS:
                        raise
                    use_openat2 = False
            return _walk(self.fd, parts, flags | _O_CLOEXEC, mode)
        except OSError as exc:
            raise self._error(exc, parts, path) from None

    def _error(self, exc: OSError, parts: tuple[str, ...], path: str) -> SafePathError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and self._has_link(parts):
            exc = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        return _describe(exc, path)

    def _has_link(self, parts: tuple[str, ...]) -> bool:
        """Whether a component of `parts` is a link (to word the error; never trusted)."""
        for depth in range(1, len(parts) + 1):
            try:
                st = os.stat("/".join(parts[:depth]), dir_fd=self.fd, follow_symlinks=False)
            except OSError:
                return False
            if stat.S_ISLNK(st.st_mode):
                return True
        return False

    def subdir(self, path: str) -> SafeDir:
        """The directory `path` beneath this one, as its own `SafeDir`."""
        return SafeDir(self.open(path, _DIR_FLAGS))

    def stat(self, path: str) -> os.stat_result:
        """The `stat` of `path` itself (a link is described, never followed)."""
        parts = split_path(path)
        if not parts:
            return os.fstat(self.fd)
        with self._parent(parts, path) as parent:
            try:
                return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except OSError as exc:
                raise _describe(exc, path) from None

    def read_bytes(
        self, path: str, *, offset: int = 0, limit: int = -1
    ) -> tuple[bytes, os.stat_result]:
        """Up to `limit` bytes (-1: all) of the regular file `path` from `offset`, with the
        file's `stat` as opened."""
        fd = self.open(path, _READ_FLAGS)
        try:
            st = os.fstat(fd)
            _check_file(st, path)
            wanted = st.st_size - offset if limit < 0 else limit
            chunks: list[bytes] = []
            while wanted > 0 and (chunk := os.pread(fd, min(wanted, 1 << 20), offset)):
                chunks.append(chunk)
                offset += len(chunk)
                wanted -= len(chunk)
            return b"".join(chunks), st
        except OSError as exc:
            raise _describe(exc, path) from None
        finally:
            os.close(fd)

    def write_atomic(self, path: str, data: bytes, *, mode: int = 0o600) -> bool:
        """Create or replace the regular file `path` with `data`, atomically. An existing
        file keeps its permission bits; a new one gets `mode`. Return whether it existed."""
        parts = split_path(path)
        if not parts:
            raise WrongKind(f"{path!r} is a directory")
        name = parts[-1]
        with self._parent(parts, path) as parent:
            try:
                existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            except OSError as exc:
                raise _describe(exc, path) from None
            if existing is not None:
                _check_file(existing, path)
                mode = stat.S_IMODE(existing.st_mode)
            _replace(parent, name, data, mode, path)
        return existing is not None

    def overwrite(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Write `data` into the regular file `path` in place (created with `mode` when
        missing), keeping its inode: a bind mount that hides the file from the shell's
        sandbox stays on it, where a replacement by rename would drop it. Not atomic: a
        reader may see a half-written file, so only for copies that can be made again."""
        # O_NONBLOCK: a FIFO planted under the name must not hang the writer.
        fd = self.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | _O_NOFOLLOW, mode)
        try:
            st = os.fstat(fd)
            _check_file(st, path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        except OSError as exc:
            raise _describe(exc, path) from None
        finally:
            os.close(fd)

    def list(self, path: str = ".") -> list[DirEntry]:
        """The entries of the directory `path`, sorted by name, links not followed."""
        with self.subdir(path) as directory:
            found = []
            try:
                with os.scandir(directory.fd) as entries:
                    for entry in entries:
                        st = entry.stat(follow_symlinks=False)
                        found.append(DirEntry(entry.name, _kind(st), st.st_size))
            except OSError as exc:
                raise _describe(exc, path) from None
        return sorted(found, key=lambda e: e.name)

    def unlink(self, path: str) -> None:
        """Delete the file (or link: the link itself) `path`; never a directory."""
        parts = split_path(path)
        if not parts:
            raise WrongKind(f"{path!r} is a directory")
        with self._parent(parts, path) as parent:
            try:
                if stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    raise WrongKind(f"{path!r} is a directory")
                os.unlink(parts[-1], dir_fd=parent)
            except OSError as exc:
                raise _describe(exc, path) from None

    def mkdir(self, path: str, *, parents: bool = False) -> bool:
        """Create the directory `path` (and, with `parents`, the missing ones above it);
        an existing directory is fine, an existing link is refused. Return whether the
        last directory was created."""
        parts = split_path(path)
        current = os.dup(self.fd)
        created = False
        try:
            for depth, name in enumerate(parts, 1):
                if parents or depth == len(parts):
                    try:
                        os.mkdir(name, 0o777, dir_fd=current)
                        created = True
                    except FileExistsError:
                        created = False
                following = os.open(name, _DIR_FLAGS, dir_fd=current)
                os.close(current)
                current = following
        except OSError as exc:
            raise self._error(exc, parts, path) from None
        finally:
            os.close(current)
        return created

    @contextmanager
    def _parent(self, parts: tuple[str, ...], path: str) -> Iterator[int]:
        """A descriptor of the directory that holds the last of `parts`."""
        fd = self.open("/".join(parts[:-1]) or ".", _DIR_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)


# The temporary a write goes to before it is renamed over its target: the target's name
# (cut at 64 characters), then 12 hex digits.
_TEMPORARY = re.compile(r"\.(.{1,64})\.[0-9a-f]{12}\.tmp", re.DOTALL)


def replaced_name(name: str) -> str | None:
    """The target name (cut at 64 characters) that `name` is the temporary of while an
    atomic write is under way, or None: the temporary holds the target's new content, so
    whoever keeps the target private keeps it private too."""
    found = _TEMPORARY.fullmatch(name)
    return found.group(1) if found else None


def _replace(parent: int, name: str, data: bytes, mode: int, path: str) -> None:
    temporary = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600, dir_fd=parent)
    except OSError as exc:
        raise _describe(exc, path) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=parent)
        if isinstance(exc, OSError):
            raise _describe(exc, path) from None
        raise
    try:
        os.fsync(parent)
    except OSError as exc:
        raise _describe(exc, path) from None


def _kind(st: os.stat_result) -> str:
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return "other"


def open_dir(path: Path) -> SafeDir:
    """Open the trusted directory `path` (links in `path` itself are followed: it is the
    owner's choice) as the handle everything beneath it is resolved from."""
    try:
        return SafeDir(os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))
    except FileNotFoundError:
        raise NotFound(f"the directory {path.name!r} does not exist") from None
    except OSError as exc:
        raise SafePathError(f"cannot open the directory {path.name!r}: {exc.strerror}") from None
