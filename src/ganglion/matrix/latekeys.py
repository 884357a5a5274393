"""Undecryptable events whose keys do not come: the room is told once.

    late = LateKeys(notify)                 # notify(room_id, text), an m.notice
    nursery.start_soon(late.serve)
    late.waiting(event_id, room_id, sender, device_id)   # sync: cannot decrypt it
    late.arrived(event_id)                               # sync: decrypted after all

An event that cannot be decrypted already has its keys asked for (`KeyKeeper`). If
they have not come `KEY_WAIT` seconds after the event was seen, the room gets one short
notice naming the sending device and what to do; one per device and room, however many
of its events wait. The notice is sent by the bot's own (cross-signed) device, so the
owner's verified devices can read it.

`serve` sleeps until the earliest deadline (Trio's clock: tested with MockClock), never
polls; a new event wakes it only when nothing was waiting, since every later deadline
comes after the ones already waiting.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, NoReturn

import trio

__all__ = ["KEY_WAIT", "LateKeys", "late_keys_notice"]

KEY_WAIT: Final = 60.0
REMEMBERED: Final = 1000


@dataclass(frozen=True, slots=True)
class _Waiting:
    room_id: str
    sender: str
    device_id: str
    deadline: float


def late_keys_notice(sender: str, device_id: str) -> str:
    """What the room is told about a device whose messages cannot be read."""
    return (
        f"I cannot read a message from {sender}'s device {device_id}: its keys have not "
        "reached me after a minute. If that device is not verified, verify it from a "
        "verified session (Element: Settings > Sessions), then send the message again; "
        "if Element excludes insecure devices, make sure it trusts this bot's device."
    )


class LateKeys:
    """See the module docstring."""

    def __init__(
        self,
        notify: Callable[[str, str], Awaitable[None]],
        *,
        wait: float = KEY_WAIT,
        told: Callable[[], None] | None = None,
    ) -> None:
        self._notify = notify
        self._wait = wait
        self._told_hook = told
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()
        self._told: set[tuple[str, str, str]] = set()
        self._added = trio.Event()

    def waiting(self, event_id: str, room_id: str, sender: str, device_id: str) -> None:
        """An event of `sender`'s `device_id` in `room_id` cannot be decrypted."""
        if event_id in self._waiting:
            return
        deadline = trio.current_time() + self._wait
        self._waiting[event_id] = _Waiting(room_id, sender, device_id, deadline)
        while len(self._waiting) > REMEMBERED:
            self._waiting.popitem(last=False)
        self._added.set()

    def arrived(self, event_id: str) -> None:
        """The event's keys came: nothing to tell."""
        self._waiting.pop(event_id, None)

    async def serve(self) -> NoReturn:
        """Tell the rooms whose keys did not come, for ever."""
        while True:
            if not self._waiting:
                self._added = trio.Event()
                await self._added.wait()
                continue
            event_id, first = next(iter(self._waiting.items()))
            await trio.sleep_until(first.deadline)
            if self._waiting.pop(event_id, None) is None:
                continue  # the keys came meanwhile
            told = (first.room_id, first.sender, first.device_id)
            if told in self._told:
                continue
            self._told.add(told)
            if self._told_hook is not None:
                self._told_hook()
            await self._notify(first.room_id, late_keys_notice(first.sender, first.device_id))
