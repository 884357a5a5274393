"""`ganglion check` for the bot's cross-signing identity and the trust rule.

    Matrix identity        the account publishes a master and a self-signing key
    Matrix device signed   the bot's device is signed by that self-signing key
    Matrix recovery key    secret storage exists, and the recovery key (configured, or
                           still in the file it was handed out in) passes its key
                           description's MAC and opens the published identity
    Matrix trust           `matrix.verified_devices_only`, and how many are pinned

Each line carries its fix. `identity_findings` asks the homeserver with the bot's token
and reads the local files; `recovery_finding` decides from what was found (pure).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import trio

from ganglion.config import Config
from ganglion.datadir import MATRIX_RECOVERY_KEY_FILE
from ganglion.matrix.errors import SecretStorageError
from ganglion.matrix.pins import PinStore
from ganglion.matrix.secretstorage import (
    DEFAULT_KEY_TYPE,
    EncryptedSecret,
    check_key,
    decode_recovery_key,
    decrypt_secret,
    key_type,
)
from ganglion.matrix.signing import SigningKey
from ganglion.matrix.trust import decide, device_sender, user_keys
from ganglion.ops.findings import Finding
from ganglion.private import read_secret
from ganglion.safefs import SafePathError

__all__ = ["SecretStorage", "identity_findings", "recovery_finding", "trust_finding"]

IDENTITY = "Matrix identity"
SIGNED = "Matrix device signed"
RECOVERY = "Matrix recovery key"
TRUST = "Matrix trust"
MASTER_SECRET = "m.cross_signing.master"
RESET = "ganglion matrix reset-identity"


@dataclass(frozen=True, slots=True)
class SecretStorage:
    """The account's secret storage as far as a check needs it: the default key's
    description (None: no secret storage) and the master key's encrypted secret."""

    key_id: str | None
    description: dict[str, Any] | None
    master_secret: dict[str, Any] | None


async def identity_findings(config: Config, http: httpx.AsyncClient) -> list[Finding]:
    """The identity, device, recovery key and trust lines (see the module docstring)."""
    matrix = config.matrix
    assert matrix.user_id is not None
    assert matrix.device_id is not None
    user = matrix.user_id
    reply = await http.post("/_matrix/client/v3/keys/query", json={"device_keys": {user: []}})
    answer = reply.json() if reply.status_code == 200 else {}
    keys = user_keys(answer if isinstance(answer, dict) else {}, user)
    found: list[Finding] = []
    if keys.master is None or keys.self_signing is None:
        found.append(
            Finding(
                IDENTITY,
                "fail",
                f"{user} publishes no (complete) cross-signing identity: Element shows the "
                "bot's messages as from a device not verified by its owner",
                "start the daemon: it publishes one at start-up (where the homeserver asks "
                "for the bot's password, set matrix.password)",
            )
        )
    else:
        found.append(Finding(IDENTITY, "ok", f"published (master key {keys.master})"))
        sender = device_sender(keys, matrix.device_id)
        if decide(keys, sender, keys.master).trusted:
            found.append(Finding(SIGNED, "ok", f"device {matrix.device_id} is cross-signed"))
        else:
            found.append(
                Finding(
                    SIGNED,
                    "fail",
                    f"device {matrix.device_id} is not signed by the bot's identity",
                    "restart the daemon: it signs its device at start-up; if it says it "
                    "does not hold the identity's keys, set matrix.recovery_key (or run "
                    f"`{RESET}`)",
                )
            )
    storage = await _secret_storage(http, user)
    candidates = await trio.to_thread.run_sync(_recovery_keys, config)
    found.append(recovery_finding(storage, candidates, keys.master))
    found.append(await trio.to_thread.run_sync(trust_finding, config))
    return found


def recovery_finding(
    storage: SecretStorage, candidates: list[tuple[str, str]], master: str | None
) -> Finding:
    """The recovery key's line: `candidates` are (where, key) pairs, the configured key
    first, then the one still in the hand-out file; `master` the published master key."""
    if storage.description is None:
        return Finding(
            RECOVERY,
            "warn",
            "the account has no secret storage: the identity cannot be restored on a new "
            "device or after losing the store",
            "start the daemon: it stores the identity under a new recovery key",
        )
    if not candidates:
        return Finding(
            RECOVERY,
            "warn",
            "secret storage is set up, but no recovery key is configured: fine while the "
            "store keeps the identity's keys",
            "keep the recovery key handed out at first start; give it in "
            "matrix.recovery_key (or GANGLION_MATRIX_RECOVERY_KEY) on a new device",
        )
    where, text = candidates[0]
    try:
        key = decode_recovery_key(text)
        if not check_key(key, storage.description):
            return Finding(
                RECOVERY,
                "fail",
                f"the recovery key in {where} is not this account's (its key "
                "description's MAC does not match)",
                f"give the key handed out when the identity was made, or run `{RESET}`",
            )
        if storage.master_secret is not None and master is not None:
            seed = decrypt_secret(
                key, MASTER_SECRET, EncryptedSecret.from_json(storage.master_secret)
            )
            if SigningKey.from_base64(seed).public_key != master:
                return Finding(
                    RECOVERY,
                    "fail",
                    "the recovery key opens secret storage, but it holds another identity "
                    "than the published one",
                    f"run `{RESET}`",
                )
    except (SecretStorageError, ValueError) as exc:
        return Finding(RECOVERY, "fail", f"the recovery key in {where}: {exc}", f"run `{RESET}`")
    if where != "matrix.recovery_key":
        return Finding(
            RECOVERY,
            "warn",
            f"the recovery key matches, but it is still in {where}",
            "keep it in a password manager, delete that file, and give it in "
            "matrix.recovery_key when the bot needs it",
        )
    return Finding(RECOVERY, "ok", "matrix.recovery_key matches the stored secret")


def trust_finding(config: Config) -> Finding:
    """The trust setting's line, with the number of pinned identities."""
    from ganglion.matrix.actor import store_dir_for

    if not config.matrix.verified_devices_only:
        return Finding(
            TRUST,
            "warn",
            "matrix.verified_devices_only is off: any device of an allowed user is "
            "answered, so whoever logs in with a stolen password can use the bot (and its "
            "shell)",
            "set matrix.verified_devices_only: true",
        )
    pins = PinStore(store_dir_for(config.matrix, config.data_dir))
    try:
        pinned = len(pins.all())
    except (OSError, sqlite3.Error) as exc:
        return Finding(TRUST, "warn", f"cannot read {pins.path}: {exc}", "check its permissions")
    return Finding(
        TRUST,
        "ok",
        f"only devices cross-signed by their user's pinned identity are answered "
        f"({pinned} pinned; `ganglion matrix trust @user:server` accepts a new one)",
    )


def _recovery_keys(config: Config) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if config.matrix.recovery_key is not None:
        found.append(("matrix.recovery_key", config.matrix.recovery_key.get_secret_value()))
    try:
        handed_out = read_secret(config.data_dir, MATRIX_RECOVERY_KEY_FILE)
    except SafePathError:
        handed_out = None
    if handed_out is not None:
        found.append((str(config.data_dir / MATRIX_RECOVERY_KEY_FILE), handed_out.strip()))
    return found


async def _secret_storage(http: httpx.AsyncClient, user_id: str) -> SecretStorage:
    default = await _account_data(http, user_id, DEFAULT_KEY_TYPE)
    key_id = default.get("key") if default is not None else None
    if not isinstance(key_id, str):
        return SecretStorage(None, None, None)
    description = await _account_data(http, user_id, key_type(key_id))
    master = await _account_data(http, user_id, MASTER_SECRET)
    encrypted = master.get("encrypted") if master is not None else None
    secret = encrypted.get(key_id) if isinstance(encrypted, dict) else None
    return SecretStorage(key_id, description, secret if isinstance(secret, dict) else None)


async def _account_data(
    http: httpx.AsyncClient, user_id: str, event_type: str
) -> dict[str, Any] | None:
    path = (
        f"/_matrix/client/v3/user/{quote(user_id, safe='')}/account_data/"
        f"{quote(event_type, safe='')}"
    )
    reply = await http.get(path)
    if reply.status_code != 200:
        return None
    found = reply.json()
    return found if isinstance(found, dict) else None
