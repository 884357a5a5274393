"""What the Matrix interface says of itself, for `ganglion status` and `/metrics`.

`MatrixStatistics` lives as long as the daemon (`Services.matrix`) and is written by the
Matrix actor alone: every incarnation of `serve_matrix` updates the same object, so the
totals survive a restart of the interface, and the readers (`ops.status`,
`ops.metrics`) only read it, on the same Trio thread.

Rules:

1. A sync error is any failure of the connection loop (connecting, syncing, the key
   work and the outbox sweep after a sync), counted by kind: `unavailable` (network,
   timeout, 5xx), `auth` (the token does not work), `refused` (another refusal), `setup`
   (configuration or encryption store). `consecutive_errors` is reset by the next
   successful sync; `last_error` is kept, with its time, after recovery.
2. `last_error` is one line of at most `MAX_ERROR_CHARS`, with the access token (should
   it ever appear) replaced: it is shown on a terminal and served over HTTP.
3. Times are wall-clock seconds (`clock`, `time.time` unless a test gives another).
4. `identity` is the bot's cross-signing state as the last start-up found it (None
   until the interface got that far); its `problem` is one line for the operator.
5. `refused_by_trust` counts events not answered under `matrix.verified_devices_only`,
   by the kinds of `ganglion.matrix.trust.REFUSALS` (a closed set: /metrics labels);
   `pinned_identities` is the number of users whose identity is pinned (None until a
   decision read the pins); `late_key_notices` counts the rooms told that a message's
   keys did not come.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixError,
    MatrixRequestError,
    MatrixSetupError,
)

__all__ = ["ERROR_KINDS", "IdentityState", "MatrixStatistics", "SyncState", "error_kind"]

ERROR_KINDS: Final = ("unavailable", "auth", "refused", "setup")
MAX_ERROR_CHARS: Final = 240
HIDDEN: Final = "[access token]"

SyncState = Literal["starting", "syncing", "retrying", "stopped"]


def error_kind(error: MatrixError) -> str:
    """The label a sync error is counted under (one of `ERROR_KINDS`)."""
    match error:
        case MatrixSetupError():
            return "setup"
        case MatrixAuthError():
            return "auth"
        case MatrixRequestError():
            return "refused"
        case _:
            return "unavailable"


@dataclass(frozen=True, slots=True)
class IdentityState:
    """The bot's cross-signing identity: whether the account publishes one
    (`published`, with its `master_key`), whether this device is signed by its
    self-signing key, whether secret storage holds its keys under a recovery key, and
    what keeps any of that from being true (`problem`, None when nothing does)."""

    published: bool = False
    device_signed: bool = False
    recovery_key_set: bool = False
    master_key: str | None = None
    problem: str | None = None


@dataclass(eq=False)
class MatrixStatistics:
    """The Matrix interface's state and totals since the daemon started (see the module
    docstring for the rules)."""

    clock: Callable[[], float] = field(default=time.time, repr=False)
    running: bool = False
    device_id: str | None = None
    ed25519_key: str | None = None  # the device's public signing key, once the store is open
    one_time_keys: int | None = None  # on the homeserver, as the last sync counted them
    syncs: int = 0
    last_sync_at: float | None = None
    consecutive_errors: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    last_error_at: float | None = None
    joined_rooms: int = 0
    submitted: int = 0
    skipped: int = 0
    undecryptable: int = 0
    decrypted_late: int = 0
    media_received: int = 0  # files kept in the inbox
    media_refused: int = 0  # files that could not be had (their senders were told)
    invites_accepted: int = 0
    invites_refused: int = 0
    identity: IdentityState | None = None
    verified_devices_only: bool = True
    refused_by_trust: Counter[str] = field(default_factory=Counter)
    pinned_identities: int | None = None
    late_key_notices: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # to the homeserver, by endpoint

    @property
    def state(self) -> SyncState:
        if not self.running:
            return "stopped"
        if self.consecutive_errors:
            return "retrying"
        return "syncing" if self.last_sync_at is not None else "starting"

    def started(self, device_id: str) -> None:
        """A new incarnation of the interface runs for `device_id`."""
        self.running = True
        self.device_id = device_id
        self.consecutive_errors = 0

    def stopped(self) -> None:
        self.running = False

    def synced(self, *, joined_rooms: int, one_time_keys: int | None) -> None:
        """A sync and what it called for succeeded."""
        self.syncs += 1
        self.last_sync_at = self.clock()
        self.consecutive_errors = 0
        self.joined_rooms = joined_rooms
        if one_time_keys is not None:
            self.one_time_keys = one_time_keys

    def failed(self, error: MatrixError, *, access_token: str) -> None:
        """The connection loop failed with `error` (rule 1)."""
        self.errors[error_kind(error)] += 1
        self.consecutive_errors += 1
        self.last_error = _one_line(str(error), access_token)
        self.last_error_at = self.clock()


def _one_line(text: str, secret: str) -> str:
    if secret:
        text = text.replace(secret, HIDDEN)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
