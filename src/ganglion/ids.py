"""Thread ids say where a conversation lives.

web_<hex>          a browser tab (kept in the tab's sessionStorage)
!room:server       a Matrix room (its main timeline)
!room:server/$root an Element thread of that room, named by its root event
system:<name>      autonomous work: system reminders, the global heartbeat
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "SYSTEM_PREFIX",
    "WEB_PREFIX",
    "WEB_THREAD_PATTERN",
    "interface_for",
    "is_valid_thread_id",
    "matrix_room_of",
    "matrix_thread_id",
    "new_web_thread_id",
]

WEB_PREFIX = "web_"
SYSTEM_PREFIX = "system:"

WEB_THREAD_PATTERN = r"^web_[0-9a-f]{8,64}$"
_WEB = re.compile(WEB_THREAD_PATTERN)
_MATRIX = re.compile(r"^![^\s:/]+:[^\s/]+(?:/\$\S+)?$")
_SYSTEM = re.compile(r"^system:[a-z0-9_.-]{1,64}$")


def interface_for(thread_id: str) -> str:
    if thread_id.startswith(WEB_PREFIX):
        return "web"
    if thread_id.startswith("!"):
        return "matrix"
    return "system"


def is_valid_thread_id(thread_id: str) -> bool:
    return bool(
        len(thread_id) <= 255
        and (_WEB.match(thread_id) or _MATRIX.match(thread_id) or _SYSTEM.match(thread_id))
    )


def new_web_thread_id() -> str:
    return WEB_PREFIX + secrets.token_hex(8)


def matrix_thread_id(room_id: str, thread_root: str | None = None) -> str:
    """The conversation of a Matrix room's main timeline, or of one of its threads."""
    return room_id if thread_root is None else f"{room_id}/{thread_root}"


def matrix_room_of(thread_id: str) -> tuple[str, str | None]:
    """The room and the thread root (None: the main timeline) of a Matrix conversation."""
    room_id, _, root = thread_id.partition("/")
    return room_id, root or None
