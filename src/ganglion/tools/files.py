"""File tools, confined to configured roots.

Every path the model gives is resolved (relative paths against the first root, `..`
collapsed, symlinks followed) and must land inside one of the roots; otherwise the call
is refused with a clear error. The final component is opened with `O_NOFOLLOW` when it is
read or replaced, so a symlink swapped in after the check cannot redirect the access.
Writes are atomic (a temporary file in the same directory, then a rename) and capped in
size; reads return at most `max_read_bytes`, with an offset to page through the rest.
All filesystem work runs in a worker thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from ganglion.config import FilesToolConfig
from ganglion.datadir import is_private_file
from ganglion.tools.registry import Tool, ToolContext, ToolError, tool

__all__ = ["FileAccessError", "FileRoots", "file_tools", "write_atomically"]

T = TypeVar("T")


class FileAccessError(ToolError):
    """A file operation the tools refuse; the message is for the model."""


class FileRoots:
    """Resolves model-given paths inside the allowed roots."""

    def __init__(self, roots: Sequence[Path], data_dir: Path | None = None) -> None:
        if not roots:
            raise ValueError("at least one root is needed")
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        self._data_dir = Path(os.path.realpath(data_dir)) if data_dir is not None else None

    def resolve(self, path: str) -> Path:
        if not path or "\x00" in path:
            raise FileAccessError("give a non-empty path")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        real = Path(os.path.realpath(candidate))
        if self._data_dir is not None and is_private_file(self._data_dir, real):
            raise FileAccessError(
                f"{path!r} is one of Ganglion's private files (its databases and web token); "
                "no tool may read or change it"
            )
        for root in self.roots:
            if real == root or real.is_relative_to(root):
                return real
        allowed = ", ".join(str(r) for r in self.roots)
        raise FileAccessError(f"{path!r} is outside the allowed directories ({allowed})")

    def show(self, path: Path) -> str:
        for root in self.roots:
            if path.is_relative_to(root):
                return str(path.relative_to(root)) or "."
        return str(path)


def _read(path: Path, offset: int, limit: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise FileAccessError("no such file") from None
    except IsADirectoryError:
        raise FileAccessError("that is a directory; use list_dir") from None
    except OSError as exc:
        raise FileAccessError(f"cannot read it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        data = handle.read(limit)
    text = data.decode("utf-8", errors="replace")
    end = offset + len(data)
    if end < size:
        text += f"\n[… {size - end} more bytes; read again with offset={end}]"
    return text


def write_atomically(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise FileAccessError("that is a directory")
    if not path.parent.is_dir():
        raise FileAccessError(
            "the directory does not exist; create it by writing a file in it with create_dirs"
        )
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def file_tools(config: FilesToolConfig, data_dir: Path) -> list[Tool]:
    """The file tools for `config` (roots default to `data_dir`)."""
    roots = FileRoots(config.roots or [data_dir], data_dir)
    max_read = config.max_read_bytes
    max_write = config.max_write_bytes

    async def run(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)

    def check_size(text: str) -> bytes:
        data = text.encode("utf-8")
        if len(data) > max_write:
            raise FileAccessError(f"the content is {len(data)} bytes; the limit is {max_write}")
        return data

    @tool
    async def read_file(ctx: ToolContext, path: str, offset: int = 0) -> str:
        """Read a text file (UTF-8). Long files come in pages: pass the offset the previous
        page ends with."""
        target = roots.resolve(path)
        if offset < 0:
            raise FileAccessError("offset must be 0 or more")
        return await run(lambda: _read(target, offset, max_read))

    @tool
    async def write_file(
        ctx: ToolContext, path: str, content: str, create_dirs: bool = False
    ) -> str:
        """Create or replace a file with `content` (atomic: readers never see half a file)."""
        target = roots.resolve(path)
        data = check_size(content)

        def write() -> None:
            if create_dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                roots.resolve(str(target.parent))
            write_atomically(target, data)

        await run(write)
        return f"wrote {len(data)} bytes to {roots.show(target)}"

    @tool
    async def edit_file(ctx: ToolContext, path: str, old: str, new: str) -> str:
        """Replace the exact text `old` with `new`; `old` must occur exactly once."""
        target = roots.resolve(path)

        def edit() -> int:
            text = _read(target, 0, max_write + 1)
            count = text.count(old) if old else 0
            if count != 1:
                where = "does not occur" if count == 0 else f"occurs {count} times"
                raise FileAccessError(f"the text to replace {where}; give a unique exact excerpt")
            write_atomically(target, check_size(text.replace(old, new, 1)))
            return count

        await run(edit)
        return f"edited {roots.show(target)}"

    @tool
    async def append_file(ctx: ToolContext, path: str, content: str) -> str:
        """Append `content` to a file (created if missing)."""
        target = roots.resolve(path)

        def append() -> int:
            existing = _read(target, 0, max_write + 1) if target.exists() else ""
            data = check_size(existing + content)
            write_atomically(target, data)
            return len(content.encode())

        added = await run(append)
        return f"appended {added} bytes to {roots.show(target)}"

    @tool
    async def list_dir(ctx: ToolContext, path: str = ".") -> str:
        """List a directory: one entry per line, directories ending in /."""
        target = roots.resolve(path)

        def listing() -> str:
            if not target.is_dir():
                raise FileAccessError("not a directory")
            entries = sorted(target.iterdir(), key=lambda p: p.name)
            lines = [
                p.name + ("/" if p.is_dir() else f"  ({p.stat().st_size} bytes)")
                for p in entries[:500]
            ]
            if len(entries) > 500:
                lines.append(f"[… {len(entries) - 500} more entries]")
            return "\n".join(lines) or "(empty)"

        return await run(listing)

    @tool
    async def delete_file(ctx: ToolContext, path: str) -> str:
        """Delete one file (not a directory)."""
        target = roots.resolve(path)
        if target in roots.roots:
            raise FileAccessError("refusing to delete an allowed root")

        def delete() -> None:
            if target.is_dir():
                raise FileAccessError("that is a directory; only files can be deleted")
            try:
                target.unlink()
            except FileNotFoundError:
                raise FileAccessError("no such file") from None

        await run(delete)
        return f"deleted {roots.show(target)}"

    return [read_file, write_file, edit_file, append_file, list_dir, delete_file]
