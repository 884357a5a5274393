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
- Deleting a conversation removes its directory (`remove`); `/new` keeps it.

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
from dataclasses import dataclass
from pathlib import Path

import trio

from ganglion.errors import GanglionError
from ganglion.safefs import SafePathError, open_dir

__all__ = [
    "INBOX_DIR",
    "MAX_NAME",
    "InboxError",
    "InboxFile",
    "conversation_segment",
    "describe_size",
    "remove_conversation",
    "safe_filename",
    "store_file",
]

INBOX_DIR = "inbox"
MAX_NAME = 100
_KEPT = re.compile(r"[A-Za-z0-9._-]")


class InboxError(GanglionError):
    """A file could not be kept; the message says why and may be shown to the owner."""


@dataclass(frozen=True, slots=True)
class InboxFile:
    """A file kept in a conversation's inbox: `path` relative to the data directory
    (what the file tools take), the name it was sent with, its type and size."""

    path: str
    name: str
    mimetype: str
    size: int

    def described(self) -> str:
        """One line for the model: what came and where it is."""
        return f"{self.name} ({self.mimetype}, {describe_size(self.size)}), saved as {self.path}"


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


def describe_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


async def store_file(
    data_dir: Path,
    thread_id: str,
    name: str | None,
    mimetype: str,
    data: bytes,
    *,
    room_left: int | None = None,
) -> InboxFile:
    """Keep `data` in the inbox of `thread_id`; `room_left` is what the data directory's
    quota still allows (None: no quota). Error handling: `InboxError`."""
    if room_left is not None and len(data) > room_left:
        raise InboxError(
            f"the file ({describe_size(len(data))}) would take the data directory past "
            "its quota (tools.files.max_data_bytes); make room or raise it"
        )
    return await trio.to_thread.run_sync(_store, data_dir, thread_id, name, mimetype, data)


async def remove_conversation(data_dir: Path, thread_id: str) -> int:
    """Remove the inbox of `thread_id`; how many files it held (0 when none)."""
    return await trio.to_thread.run_sync(_remove, data_dir, thread_id)


def _store(
    data_dir: Path, thread_id: str, name: str | None, mimetype: str, data: bytes
) -> InboxFile:
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
    return InboxFile(f"{INBOX_DIR}/{segment}/{filename}", kept, mimetype, len(data))


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
