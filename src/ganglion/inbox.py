"""The inbox: files, pictures and voice the owner sent, kept per conversation.

    data/inbox/<conversation>/<when>-<name>

Storage design:

- A conversation's directory is its thread id as one safe path segment
  (`conversation_segment`): letters, digits, `.`, `_` and `-` stay, every other byte is
  `%XX` (`!room:server` -> `%21room%3Aserver`), so no id can name `..`, a hidden file or
  a path of several parts, and two ids never share a directory.
- A file's name is the name it was sent with, made safe (`safe_filename`: no directory
  part, no control characters, at most `MAX_NAME` characters, its extension kept),
  prefixed with the UTC time it arrived and a short random suffix, so two files sent
  under one name never overwrite each other and a listing sorts by arrival.
- Everything is written through `safefs` (no link beneath the data directory is ever
  followed), directories 0700 and files 0600. The inbox is the owner's: the file tools
  may read it (that is what it is for), the other side of the owner-only rule.
- Its bytes count in the data directory's quota (`tools.files.max_data_bytes`,
  `owned.data_dir_usage`): a file that would pass it is refused like a tool's write.
- Deleting a conversation removes its directory (`FileInbox.remove`); `/new` keeps it.
- What a file is kept as is an `Attachment` (`ganglion.transcript`): the reference a
  message carries, never its bytes.

Blocking: every method does file I/O; the async ones run it in a worker thread.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
import unicodedata
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

from ganglion.errors import GanglionError
from ganglion.owned import OwnedFiles, data_dir_usage
from ganglion.safefs import SafePathError, open_dir
from ganglion.transcript import Attachment, attachment_kind, describe_size

__all__ = [
    "INBOX_DIR",
    "MAX_NAME",
    "FileInbox",
    "FilesQuota",
    "InboxError",
    "conversation_segment",
    "file_path",
    "inbox_path",
    "remove_conversation",
    "safe_filename",
    "sent_name",
    "store_file",
]

INBOX_DIR = "inbox"
MAX_NAME = 100
_KEPT = re.compile(r"[A-Za-z0-9._-]")
_STAMPED = re.compile(r"\A\d{8}T\d{6}Z-[0-9a-f]{6}-")


class InboxError(GanglionError):
    """A file could not be kept; the message says why and may be shown to the owner."""


def conversation_segment(thread_id: str) -> str:
    """`thread_id` as one path segment (see the module docstring)."""
    if not thread_id:
        raise ValueError("a conversation needs an id")

    def kept(index: int, char: str) -> str:
        # A leading dot would make a hidden name, or `..`.
        if _KEPT.fullmatch(char) and not (index == 0 and char == "."):
            return char
        return "".join(f"%{byte:02X}" for byte in char.encode())

    return "".join(kept(index, char) for index, char in enumerate(thread_id))


def safe_filename(name: str | None, *, fallback: str = "file") -> str:
    """A name to keep a sent file under: its last path part, without control or
    format characters, at most `MAX_NAME` characters with the extension kept."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(
        c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] != "C"
    )
    base = base.strip().strip(".") or fallback
    stem, dot, extension = base.rpartition(".")
    if not dot or len(extension) > 12:
        stem, extension = base, ""
    room = MAX_NAME - (len(extension) + 1 if extension else 0)
    return f"{stem[:room]}.{extension}" if extension else base[:MAX_NAME]


class FilesQuota(Protocol):
    """What the inbox needs of the file tools' configuration (`config.FilesToolConfig`)."""

    @property
    def max_data_bytes(self) -> int: ...

    def owned_files(self, data_dir: Path) -> OwnedFiles: ...


class FileInbox:
    """The inbox of one data directory, with the quota of `tools.files.max_data_bytes`
    (`owned` tells Ganglion's own files, which the quota does not count)."""

    def __init__(self, data_dir: Path, owned: OwnedFiles, max_data_bytes: int | None) -> None:
        self.data_dir = data_dir
        self._owned = owned
        self._limit = max_data_bytes

    @classmethod
    def of(cls, data_dir: Path, files: FilesQuota) -> FileInbox:
        """The inbox of `data_dir` under the file tools' quota (`tools.files`)."""
        return cls(data_dir, files.owned_files(data_dir), files.max_data_bytes)

    async def room_left(self) -> int | None:
        """What the quota still allows (None: no quota)."""
        if self._limit is None:
            return None
        used = await trio.to_thread.run_sync(data_dir_usage, self._owned)
        return max(0, self._limit - used)

    async def store(
        self, thread_id: str, name: str | None, mimetype: str, data: bytes, *, voice: bool = False
    ) -> Attachment:
        """Keep `data` in the inbox of `thread_id`. Error handling: `InboxError`."""
        return await store_file(
            self.data_dir,
            thread_id,
            name,
            mimetype,
            data,
            room_left=await self.room_left(),
            voice=voice,
        )

    async def read(self, path: str, *, limit: int) -> bytes:
        """The bytes of an inbox file (`path` as an `Attachment` names it), at most `limit`.
        Error handling: `InboxError` for a path outside the inbox, missing or unreadable."""
        return await trio.to_thread.run_sync(_read, self.data_dir, path, limit)

    async def size(self, path: str) -> int:
        """The size of the regular inbox file `path`. Error handling: `InboxError`."""
        return await trio.to_thread.run_sync(_size, self.data_dir, path)

    async def remove(self, thread_id: str) -> int:
        return await remove_conversation(self.data_dir, thread_id)


async def store_file(
    data_dir: Path,
    thread_id: str,
    name: str | None,
    mimetype: str,
    data: bytes,
    *,
    room_left: int | None = None,
    voice: bool = False,
) -> Attachment:
    """Keep `data` in the inbox of `thread_id`; `room_left` is what the data directory's
    quota still allows (None: no quota). Error handling: `InboxError`."""
    if room_left is not None and len(data) > room_left:
        raise InboxError(
            f"the file ({describe_size(len(data))}) would take the data directory past "
            "its quota (tools.files.max_data_bytes); make room or raise it"
        )
    return await trio.to_thread.run_sync(
        partial(_store, data_dir, thread_id, name, mimetype, data, voice=voice)
    )


async def remove_conversation(data_dir: Path, thread_id: str) -> int:
    """Remove the inbox of `thread_id`; how many files it held (0 when none)."""
    return await trio.to_thread.run_sync(_remove, data_dir, thread_id)


def file_path(thread_id: str, filename: str) -> str:
    """The path (relative to the data directory) of `filename` in `thread_id`'s inbox."""
    return f"{INBOX_DIR}/{conversation_segment(thread_id)}/{filename}"


def sent_name(filename: str) -> str:
    """The name a kept file was sent with: its inbox name without the arrival stamp."""
    return _STAMPED.sub("", filename, count=1)


def inbox_path(path: str) -> bool:
    """Whether `path` (relative to the data directory) names a file in an inbox."""
    parts = path.split("/")
    return (
        len(parts) == 3
        and parts[0] == INBOX_DIR
        and all(part and not part.startswith(".") for part in parts[1:])
    )


def _store(
    data_dir: Path,
    thread_id: str,
    name: str | None,
    mimetype: str,
    data: bytes,
    *,
    voice: bool,
) -> Attachment:
    kept = safe_filename(name)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    filename = f"{stamp}-{secrets.token_hex(3)}-{kept}"
    segment = conversation_segment(thread_id)
    try:
        with open_dir(data_dir) as root:
            root.mkdir(f"{INBOX_DIR}/{segment}", parents=True)
            root.write_atomic(f"{INBOX_DIR}/{segment}/{filename}", data)
    except SafePathError as exc:
        raise InboxError(f"the file could not be kept in the inbox ({exc})") from None
    kind = attachment_kind(mimetype, voice=voice)
    return Attachment(f"{INBOX_DIR}/{segment}/{filename}", kept, mimetype, len(data), kind)


def _read(data_dir: Path, path: str, limit: int) -> bytes:
    if not inbox_path(path):
        raise InboxError(f"{path!r} is not a file of the inbox")
    try:
        with open_dir(data_dir) as root:
            data, _ = root.read_bytes(path, offset=0, limit=limit)
    except SafePathError as exc:
        raise InboxError(f"the file {path} cannot be read ({exc})") from None
    return data


def _size(data_dir: Path, path: str) -> int:
    if not inbox_path(path):
        raise InboxError(f"{path!r} is not a file of the inbox")
    try:
        with open_dir(data_dir) as root:
            st = root.stat(path)
    except SafePathError as exc:
        raise InboxError(f"the file {path} cannot be found ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InboxError(f"{path} is not a file")
    return st.st_size


def _remove(data_dir: Path, thread_id: str) -> int:
    path = data_dir / INBOX_DIR / conversation_segment(thread_id)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return 0
    count = sum(len(files) for _, _, files in os.walk(path))
    # rmtree never follows a link it meets (it removes the link itself).
    shutil.rmtree(path)
    return count
