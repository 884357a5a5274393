"""The trust rule at work (`matrix.verified_devices_only`): every device that acts on
the bot, and every device that gets the bot's room keys, passes `TrustGate` first.

    gate = TrustGate(homeserver, PinStore(store_dir), stats)
    gate.devices_changed(sync.device_list.changed)     # their keys are asked again
    verdict = await gate.check(room_id, sender)        # an event: answered or not
    verdicts = await gate.verdicts(senders)            # room key sharing

matrix-nio 0.26 keeps no cross-signing keys, so the gate asks `/keys/query` itself and
keeps each user's answer (`trust.UserKeys`) until the sync says the user's devices
changed (`device_lists.changed`). The decision is `trust.decide`; the pins are
`pins.PinStore`'s, read afresh for each decision, so `ganglion matrix trust` counts
from the next message on.

Rules:

1. A refusal is given only on keys fetched for it: a refusal from kept keys asks
   `/keys/query` again first (a device signed a moment ago may not have reached the
   sync yet). Refusals are rare; trusted devices cost nothing but a pin lookup.
2. A trusted device of a user with no pin pins that user's master key (trust on first
   use), for events and key sharing alike.
3. A refused event is counted by kind (`MatrixStatistics.refused_by_trust`) and logged;
   the owner is told once per subject (`PinStore.first_notice`), in the room: the
   notice waits in `notices` until the caller sends it (after the sync: nothing is sent
   before the first sync of a run), readable by the refused device too (when the
   identity changed, the owner has no other device that could read it).

Error handling: a `/keys/query` that fails raises its `MatrixError` (the caller retries
the whole sync or send); the pin store's failures become `MatrixSetupError`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import trio

from ganglion.matrix.errors import MatrixSetupError
from ganglion.matrix.http import Homeserver
from ganglion.matrix.pins import PinStore
from ganglion.matrix.stats import MatrixStatistics
from ganglion.matrix.trust import Sender, UserKeys, Verdict, decide, refusal_notice, user_keys

__all__ = ["TrustGate"]

log = logging.getLogger(__name__)

KEYS_QUERY: Final = "/_matrix/client/v3/keys/query"
MAX_VERDICTS: Final = 4096  # remembered verdicts (senders x pins); forgotten all at once past it
PINS_FRESH: Final = 30.0  # seconds the pins read last are used before they are read again
T = TypeVar("T")


class TrustGate:
    """Decides about devices for one logged-in bot (see the module docstring)."""

    def __init__(self, homeserver: Homeserver, pins: PinStore, stats: MatrixStatistics) -> None:
        self._homeserver = homeserver
        self._pins = pins
        self._stats = stats
        self._keys: dict[str, UserKeys] = {}
        self._stale: set[str] = set()
        # The pins as last read, and when (trio's clock): read again after PINS_FRESH
        # seconds, and whenever a device would be refused (`ganglion matrix trust` may
        # have pinned a key since).
        self._pins_read: tuple[float, dict[str, str]] | None = None
        # Verdicts as decided, by sender and pin, with the keys they were decided on: a
        # signature is checked once per device and key set, not once per message.
        self._verdicts: dict[tuple[Sender, str | None], tuple[UserKeys | None, Verdict]] = {}
        # (room, text, the refused device) to send after the sync
        self.notices: list[tuple[str, str, tuple[str, str] | None]] = []

    def devices_changed(self, users: Iterable[str]) -> None:
        """The sync says these users' devices or keys changed: ask again when needed."""
        self._stale.update(users)

    async def check(self, room_id: str, sender: Sender) -> Verdict:
        """The verdict on one event's sending device (rules 1-3)."""
        user = sender.user_id
        verdict = await self._decide([sender], fresh=False)
        if not verdict[0].trusted and sender.curve25519 is not None:
            verdict = await self._decide([sender], fresh=True)
        found = verdict[0]
        if found.trusted:
            return found
        assert found.refusal is not None
        self._stats.refused_by_trust[found.refusal] += 1
        log.warning("Matrix: not answering %s in %s: %s", user, room_id, found.reason)
        if await self._store(self._pins.first_notice, user, found.subject):
            reader = (user, found.device_id) if found.device_id is not None else None
            self.notices.append((room_id, refusal_notice(found, user), reader))
        return found

    async def verdicts(self, senders: Sequence[Sender]) -> list[Verdict]:
        """The verdicts on devices the bot may share a room key with (rules 1-2)."""
        return await self._decide(senders, fresh=False)

    async def _decide(self, senders: Sequence[Sender], *, fresh: bool) -> list[Verdict]:
        users = {s.user_id for s in senders if s.curve25519 is not None}
        await self._fetch(users if fresh else (users - self._keys.keys()) | (users & self._stale))
        pins = await self._current_pins(fresh)
        verdicts = []
        for sender in senders:
            user = sender.user_id
            verdict = self._verdict(sender, pins.get(user))
            if verdict.pin is not None:
                pins[user] = await self._store(self._pins.pin_first, user, verdict.pin)
                log.info("Matrix: trusting %s's identity %s (first seen)", user, verdict.pin)
                verdict = decide(self._keys.get(user), sender, pins[user])
            verdicts.append(verdict)
        self._stats.pinned_identities = len(pins)
        return verdicts

    def _verdict(self, sender: Sender, pinned: str | None) -> Verdict:
        """`decide`, remembered while the user's keys are the same ones (a fetch replaces
        them) and the pin is the same."""
        keys = self._keys.get(sender.user_id)
        known = self._verdicts.get((sender, pinned))
        if known is not None and known[0] is keys:
            return known[1]
        verdict = decide(keys, sender, pinned)
        if verdict.pin is None:  # a first pin is stored, then decided on again
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[sender, pinned] = (keys, verdict)
        return verdict

    async def _current_pins(self, fresh: bool) -> dict[str, str]:
        now = trio.current_time()
        if fresh or self._pins_read is None or now - self._pins_read[0] > PINS_FRESH:
            self._pins_read = (now, await self._store(self._pins.all))
        return self._pins_read[1]

    async def _fetch(self, users: set[str]) -> None:
        if not users:
            return
        answer = await self._homeserver.call(
            "POST", KEYS_QUERY, {"device_keys": {user: [] for user in sorted(users)}}
        )
        for user in users:
            self._keys[user] = user_keys(answer, user)
        self._stale -= users

    async def _store(self, call: Callable[..., T], *args: str) -> T:
        try:
            return await trio.to_thread.run_sync(call, *args)
        except (OSError, sqlite3.Error) as exc:
            raise MatrixSetupError(
                f"cannot use the pinned identities in {self._pins.path} ({exc}): check "
                "its permissions"
            ) from None
