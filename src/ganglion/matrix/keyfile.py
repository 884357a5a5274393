"""The bot's cross-signing private keys at rest, sealed with the pickle key.

    save_keys(store_dir, user_id, pickle_key, keys)
    keys = load_keys(store_dir, user_id, pickle_key)     # None: not held here

They live beside nio's encryption store, in `<store_dir>/<user_id>_cross_signing.json`
(owner-only, written through `ganglion.private`): one file per account, not per
device, so a new login on the same store keeps the identity. The file holds the three
32-byte seeds as JSON, sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
the pickle key that also seals nio's Olm account; the user id is authenticated with
them, so a file copied to another account does not open.

Blocking: these are small file reads and writes; the async caller runs them in a
worker thread.

Error handling: `save_keys` raises `OSError` or `safefs.SafePathError`. `load_keys`
never raises for what it finds: no file, a damaged one or one sealed with another
pickle key all mean the keys are not held here (logged as a warning when a file was
there), and the identity is then restored from the recovery key instead.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ganglion.matrix.signing import (
    USAGES,
    CrossSigningKeys,
    SigningKey,
    decode_base64,
    encode_base64,
)
from ganglion.private import keep_secret, read_secret
from ganglion.safefs import SafePathError

__all__ = ["keys_file", "load_keys", "open_keys", "save_keys", "seal_keys"]

log = logging.getLogger(__name__)

VERSION: Final = 1
NONCE_BYTES: Final = 12
INFO: Final = b"ganglion matrix cross-signing keys v1"


def keys_file(user_id: str) -> str:
    """The name of the file, inside the store directory, that keeps `user_id`'s keys."""
    return f"{user_id}_cross_signing.json"


def seal_keys(keys: CrossSigningKeys, user_id: str, pickle_key: str) -> str:
    """`keys` as the file's text, sealed with `pickle_key` for `user_id`."""
    plain = json.dumps({usage: keys.key(usage).seed_base64 for usage in USAGES}).encode()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(_key(pickle_key)).encrypt(nonce, plain, user_id.encode())
    return json.dumps(
        {
            "version": VERSION,
            "user_id": user_id,
            "nonce": encode_base64(nonce),
            "sealed": encode_base64(sealed),
        }
    )


def open_keys(text: str, user_id: str, pickle_key: str) -> CrossSigningKeys | None:
    """The keys `seal_keys` made `text` of, or None when it does not open for
    `user_id` with `pickle_key` (or is not such a file)."""
    try:
        stored = json.loads(text)
        nonce, sealed = decode_base64(stored["nonce"]), decode_base64(stored["sealed"])
        plain = AESGCM(_key(pickle_key)).decrypt(nonce, sealed, user_id.encode())
        seeds = json.loads(plain)
        return CrossSigningKeys(*(SigningKey.from_base64(seeds[usage]) for usage in USAGES))
    except (ValueError, KeyError, TypeError, InvalidTag):
        return None


def save_keys(store_dir: Path, user_id: str, pickle_key: str, keys: CrossSigningKeys) -> None:
    """Keep `keys` in the store directory (see the module docstring)."""
    keep_secret(store_dir, keys_file(user_id), seal_keys(keys, user_id, pickle_key))


def load_keys(store_dir: Path, user_id: str, pickle_key: str) -> CrossSigningKeys | None:
    """The keys kept in the store directory, or None (see the module docstring)."""
    try:
        text = read_secret(store_dir, keys_file(user_id))
    except (OSError, SafePathError) as exc:
        log.warning("Matrix: cannot read the cross-signing keys in %s: %s", store_dir, exc)
        return None
    if text is None:
        return None
    keys = open_keys(text, user_id, pickle_key)
    if keys is None:
        log.warning(
            "Matrix: the cross-signing keys in %s do not open with the pickle key "
            "(it changed, or the file is damaged): they are not used",
            store_dir / keys_file(user_id),
        )
    return keys


def _key(pickle_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO)
    return hkdf.derive(pickle_key.encode("utf-8"))
