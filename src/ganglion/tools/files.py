"""File tools, confined to configured roots.

A path the model gives is split into a root and a path relative to it: a relative path
belongs to the first root, an absolute one must lie under some root (compared as written,
no link resolved); `..` is refused. The relative part is then resolved beneath the root's
directory handle by `ganglion.safefs`, which follows no symbolic link and reads no
hard-linked file, so a component swapped for a link mid-call cannot redirect the access:
there is no check followed by a separate open.

Some files inside the roots are refused by path: Ganglion's own files (`ganglion.owned`:
the databases, reminders.json, the web token, the Matrix store, the logs, the config file;
for every operation, and a listing names them without their size) and BASE_PROMPT.txt
(read only: it holds the owner's instructions). Writes are atomic and capped in size,
and a write into the data directory is refused when it would take the files there past
`max_data_bytes`; reads return at most `max_read_bytes`, with an offset to page through
the rest. All filesystem work runs in a worker thread.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio

from ganglion import safefs
from ganglion.config import FilesToolConfig
from ganglion.datadir import BASE_PROMPT_FILE
from ganglion.owned import OwnedFiles, data_dir_usage
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool

__all__ = ["DataQuota", "FileAccessError", "FileRoots", "Target", "file_tools", "run_safely"]

T = TypeVar("T")
MAX_LISTED = 500


class FileAccessError(ToolError):
    """A file operation the tools refuse; the message is for the model."""


async def run_safely(fn: Callable[[], T]) -> T:
    """Run the blocking `fn` in a worker thread; a `SafePathError` becomes a tool error."""

    def guarded() -> T:
        try:
            return fn()
        except safefs.SafePathError as exc:
            raise FileAccessError(str(exc)) from None

    return await trio.to_thread.run_sync(guarded)


@dataclass(frozen=True, slots=True)
class Target:
    """A model-given path, split into the root it lies under and the rest."""

    root: Path
    relative: str  # "." is the root itself

    @property
    def full(self) -> Path:
        """The absolute path, as resolved beneath the root (where no link is followed)."""
        return self.root / self.relative

    def open(self) -> safefs.SafeDir:
        return safefs.open_dir(self.root)


class FileRoots:
    """Splits model-given paths into a root and a relative path, and refuses the files no
    tool may touch."""

    def __init__(self, roots: Sequence[Path], owned: OwnedFiles) -> None:
        if not roots:
            raise ValueError("at least one root is needed")
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        # An absolute path may name a root as configured or as resolved.
        configured = [Path(os.path.abspath(root)) for root in roots]
        self._spellings = [*zip(configured, self.roots, strict=True)]
        self._spellings += [(real, real) for real in self.roots]
        self.owned = owned

    def resolve(self, path: str, *, write: bool = False) -> Target:
        """The `Target` for `path`, or `FileAccessError` saying why not."""
        if not path or "\x00" in path:
            raise FileAccessError("give a non-empty path")
        given = Path(path).expanduser()
        if ".." in given.parts:
            raise FileAccessError(f"{path!r} uses '..'; give a path {self._inside()}")
        target = self._split(given, path)
        self._refuse_reserved(target.full, path, write)
        return target

    def _split(self, given: Path, path: str) -> Target:
        if not given.is_absolute():
            return Target(self.roots[0], str(given))
        for spelled, real in self._spellings:
            if given.is_relative_to(spelled):
                return Target(real, str(given.relative_to(spelled)))
        raise FileAccessError(
            f"{path!r} is outside the allowed directories; give a path {self._inside()}"
        )

    def _inside(self) -> str:
        return f"inside the allowed directories ({', '.join(str(r) for r in self.roots)})"

    def _refuse_reserved(self, full: Path, path: str, write: bool) -> None:
        if self.owned.owns(full):
            raise FileAccessError(
                f"{path!r} is one of Ganglion's private files (its databases, reminders, "
                "tokens, Matrix store, logs and configuration file); no tool may read, list or "
                "change it"
            )
        if write and full == self.owned.data_dir / BASE_PROMPT_FILE:
            raise FileAccessError(
                f"{BASE_PROMPT_FILE} holds the owner's instructions; you may read it, but only "
                "the owner changes it"
            )


def _read(directory: safefs.SafeDir, relative: str, offset: int, limit: int) -> str:
    data, st = directory.read_bytes(relative, offset=offset, limit=limit)
    text = data.decode("utf-8", errors="replace")
    end = offset + len(data)
    if end < st.st_size:
        text += f"\n[… {st.st_size - end} more bytes; read again with offset={end}]"
    return text


def _listing(entries: list[safefs.DirEntry], private: Callable[[str], bool]) -> str:
    def line(entry: safefs.DirEntry) -> str:
        if private(entry.name):
            return f"{entry.name}  (Ganglion's own; private)"
        match entry.kind:
            case "dir":
                return entry.name + "/"
            case "file":
                return f"{entry.name}  ({entry.size} bytes)"
            case "link":
                return f"{entry.name}  (symbolic link; never followed)"
            case _:
                return f"{entry.name}  (not a regular file)"

    lines = [line(entry) for entry in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        lines.append(f"[… {len(entries) - MAX_LISTED} more entries]")
    return "\n".join(lines) or "(empty)"


class DataQuota:
    """Refuses a write that would take the files in the data directory past
    `max_data_bytes` (Ganglion's own files not counted, see `owned.data_dir_usage`).

    Blocking: `check` walks the data directory; call it from the worker thread that then
    writes. Two writes running at once may both pass: each is capped by `max_write_bytes`.
    """

    def __init__(self, owned: OwnedFiles, limit: int) -> None:
        self._owned = owned
        self._limit = limit

    def check(self, target: Target, directory: safefs.SafeDir, size: int) -> None:
        """Refuse writing `size` bytes to `target` (whose current content it replaces)."""
        if not target.full.is_relative_to(self._owned.data_dir):
            return
        try:
            st = directory.stat(target.relative)
            replaced = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except safefs.NotFound:
            replaced = 0
        total = data_dir_usage(self._owned) - replaced + size
        if total > self._limit:
            raise FileAccessError(
                f"writing {size} bytes to {target.relative} would take the files in the data "
                f"directory to {total} bytes, past the limit of {self._limit} bytes "
                "(tools.files.max_data_bytes); nothing was written. Delete files that are no "
                "longer needed, or ask the owner to raise tools.files.max_data_bytes in the "
                "configuration"
            )


def file_tools(config: FilesToolConfig, data_dir: Path) -> list[Tool]:
    """The file tools for `config` (roots default to `data_dir`)."""
    owned = config.owned_files(data_dir)
    roots = FileRoots(config.roots or [data_dir], owned)
    quota = DataQuota(owned, config.max_data_bytes)
    max_read = config.max_read_bytes
    max_write = config.max_write_bytes

    def check_size(text: str) -> bytes:
        data = text.encode("utf-8")
        if len(data) > max_write:
            raise FileAccessError(f"the content is {len(data)} bytes; the limit is {max_write}")
        return data

    def replace(target: Target, directory: safefs.SafeDir, data: bytes) -> None:
        quota.check(target, directory, len(data))
        directory.write_atomic(target.relative, data)

    @tool(core=True)
    async def read_file(ctx: ToolContext, path: str, offset: int = 0) -> str:
        """Read a text file (UTF-8). Long files come in pages: pass the offset the previous
        page ends with."""
        target = roots.resolve(path)
        if offset < 0:
            raise FileAccessError("offset must be 0 or more")

        def read() -> str:
            with target.open() as directory:
                return _read(directory, target.relative, offset, max_read)

        return await run_safely(read)

    @tool(core=True)
    async def write_file(
        ctx: ToolContext, path: str, content: str, create_dirs: bool = False
    ) -> str:
        """Create or replace a file with `content` (atomic: readers never see half a file)."""
        target = roots.resolve(path, write=True)
        data = check_size(content)

        def write() -> None:
            with target.open() as directory:
                quota.check(target, directory, len(data))  # before a directory is made
                parent = os.path.dirname(target.relative)
                if create_dirs and parent:
                    directory.mkdir(parent, parents=True)
                try:
                    directory.write_atomic(target.relative, data)
                except safefs.NotFound:
                    raise FileAccessError(
                        "the directory does not exist; create it by writing with create_dirs"
                    ) from None

        await run_safely(write)
        return f"wrote {len(data)} bytes to {target.relative}"

    @tool
    async def edit_file(ctx: ToolContext, path: str, old: str, new: str) -> str:
        """Replace the exact text `old` with `new`; `old` must occur exactly once."""
        target = roots.resolve(path, write=True)

        def edit() -> None:
            with target.open() as directory:
                text = _read(directory, target.relative, 0, max_write + 1)
                count = text.count(old) if old else 0
                if count != 1:
                    where = "does not occur" if count == 0 else f"occurs {count} times"
                    raise FileAccessError(
                        f"the text to replace {where}; give a unique exact excerpt"
                    )
                replace(target, directory, check_size(text.replace(old, new, 1)))

        await run_safely(edit)
        return f"edited {target.relative}"

    @tool
    async def append_file(ctx: ToolContext, path: str, content: str) -> str:
        """Append `content` to a file (created if missing)."""
        target = roots.resolve(path, write=True)

        def append() -> int:
            with target.open() as directory:
                try:
                    existing = _read(directory, target.relative, 0, max_write + 1)
                except safefs.NotFound:
                    existing = ""
                replace(target, directory, check_size(existing + content))
            return len(content.encode())

        added = await run_safely(append)
        return f"appended {added} bytes to {target.relative}"

    @tool(core=True)
    async def list_dir(ctx: ToolContext, path: str = ".") -> str:
        """List a directory: one entry per line, directories ending in /."""
        target = roots.resolve(path)

        def listing() -> str:
            with target.open() as directory:
                entries = directory.list(target.relative)
            return _listing(entries, lambda name: owned.owns(target.full / name))

        return await run_safely(listing)

    @tool
    async def delete_file(ctx: ToolContext, path: str) -> str:
        """Delete one file (not a directory)."""
        target = roots.resolve(path, write=True)
        if not safefs.split_path(target.relative):
            raise FileAccessError("refusing to delete an allowed root")

        def delete() -> None:
            with target.open() as directory:
                directory.unlink(target.relative)

        await run_safely(delete)
        return f"deleted {target.relative}"

    return [read_file, write_file, edit_file, append_file, list_dir, delete_file]
