"""The encryption store as it lies on disk, read without changing it (for `ganglion
check`): whose device it holds and that device's identity keys.

nio keeps one SQLite database per device, `<store_dir>/<user_id>_<device_id>.db`, whose
`accounts` table holds the Olm account (pickled, encrypted with the pickle key). It is
opened here read-only with `sqlite3`, not through nio's store (which creates tables and
rewrites old pickles when it opens one), so a check leaves the store as it found it.

Error handling: nothing raises; what cannot be read is described in `StoredDevice.problem`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoredDevice", "read_store", "store_file", "stored_devices"]


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """What one store file holds: the account's user and device, and its identity keys
    when the pickle key opened it. `problem` says why something could not be read;
    `user_id` None means the store holds no account yet."""

    path: Path
    user_id: str | None = None
    device_id: str | None = None
    ed25519: str | None = None
    curve25519: str | None = None
    problem: str | None = None


def store_file(store_dir: Path, user_id: str, device_id: str) -> Path:
    """Where nio keeps the store of `device_id`."""
    return store_dir / f"{user_id}_{device_id}.db"


def stored_devices(store_dir: Path, user_id: str) -> list[str]:
    """The device ids of `user_id` that `store_dir` holds a store file for."""
    prefix = f"{user_id}_"
    if not store_dir.is_dir():
        return []
    return sorted(
        path.name.removeprefix(prefix).removesuffix(".db")
        for path in store_dir.glob("*.db")
        if path.name.startswith(prefix)
    )


def read_store(path: Path, pickle_key: str | None) -> StoredDevice | None:
    """The account in the store file `path` (None when there is no such file), its keys
    unpickled with `pickle_key` (None: the key is missing, so they cannot be)."""
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT user_id, device_id, account FROM accounts").fetchall()
    except sqlite3.Error as exc:
        return StoredDevice(path, problem=f"not a readable encryption store ({exc})")
    if not rows:
        return StoredDevice(path)
    user_id, device_id, pickled = rows[0]
    if pickle_key is None:
        return StoredDevice(path, user_id, device_id, problem="its pickle key is missing")
    keys = _identity_keys(bytes(pickled), pickle_key)
    if keys is None:
        return StoredDevice(
            path, user_id, device_id, problem="it cannot be opened with the pickle key"
        )
    return StoredDevice(path, user_id, device_id, keys["ed25519"], keys["curve25519"])


def _identity_keys(pickled: bytes, pickle_key: str) -> dict[str, str] | None:
    from nio.crypto import OlmAccount

    try:
        account = OlmAccount.from_pickle(pickled, pickle_key)
    except Exception:  # vodozemac raises its own kinds for a wrong key or a damaged pickle
        return None
    return dict(account.identity_keys)
