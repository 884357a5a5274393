"""Thread ids say where a conversation lives.

web_<hex>          a browser tab (kept in the tab's sessionStorage)
!room:server       a Matrix room
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
    "new_web_thread_id",
]

WEB_PREFIX = "web_"
SYSTEM_PREFIX = "system:"

WEB_THREAD_PATTERN = r"^web_[0-9a-f]{8,64}$"
_WEB = re.compile(WEB_THREAD_PATTERN)
_MATRIX = re.compile(r"^![^\s:]+:\S+$")
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
