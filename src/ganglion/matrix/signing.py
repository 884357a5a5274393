"""Signed JSON and the cross-signing keys, as the Matrix spec defines them (pure, no I/O).

    keys = CrossSigningKeys.generate()
    body = device_signing_upload(user_id, keys)        # POST /keys/device_signing/upload
    body = signatures_upload(user_id, device, keys.self_signing)   # POST /keys/signatures/upload

matrix-nio 0.26 signs only with the device's own Olm key; the bot's cross-signing
identity (master, self-signing and user-signing Ed25519 keys) is built here on
`cryptography`.

Rules:

1. Canonical JSON is the spec's: keys sorted by code point, no insignificant
   whitespace, UTF-8 without escapes, integers only (a float is refused, the spec has
   none and signatures over one would not verify elsewhere).
2. Base64 is written unpadded, standard alphabet, everywhere: key ids, public keys and
   signatures. The Rust SDK (Element's crypto) silently drops cross-signing keys whose
   ids or keys are padded, although their signatures verify. Reading accepts padded,
   unpadded and URL-safe input, as the spec asks.
3. Signing follows the spec's algorithm: `signatures` and `unsigned` are left out of
   what is signed, the new signature is merged into the signatures already there, and
   `unsigned` is kept as it was. Nothing is changed in place.
4. A cross-signing key object carries exactly one key, `ed25519:<public>` ->
   `<public>`; the self-signing and user-signing keys are signed by the master key.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ED25519",
    "USAGES",
    "CrossSigningKeys",
    "SigningKey",
    "Usage",
    "canonical_json",
    "cross_signing_key",
    "decode_base64",
    "device_signing_upload",
    "encode_base64",
    "published_key",
    "sign_json",
    "signatures_upload",
    "verify_json",
]

ED25519: Final = "ed25519"
SEED_BYTES: Final = 32
Usage = Literal["master", "self_signing", "user_signing"]
USAGES: Final[tuple[Usage, ...]] = ("master", "self_signing", "user_signing")


def canonical_json(value: Any) -> bytes:
    """`value` as the spec's canonical JSON (rule 1).

    Error handling: `ValueError` for a float or anything JSON cannot hold.
    """
    _refuse_floats(value)
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError(f"canonical JSON holds no floats ({value!r})")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def encode_base64(data: bytes) -> str:
    """Unpadded standard base64 (rule 2)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    """Bytes from base64 with or without padding, standard or URL-safe alphabet.

    Error handling: `ValueError` for anything else.
    """
    stripped = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    if len(stripped) % 4 == 1:
        raise ValueError("not base64: impossible length")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key pair made from its 32-byte seed (the private key as Matrix
    exchanges it, in secret storage and between devices)."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed has {SEED_BYTES} bytes, not {len(self.seed)}")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(SEED_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> SigningKey:
        """The key whose seed is `text` (padded or not). Error handling: `ValueError`."""
        return cls(decode_base64(text))

    @property
    def seed_base64(self) -> str:
        return encode_base64(self.seed)

    @property
    def public_key(self) -> str:
        """The public key, unpadded base64: also the key's id after `ed25519:`."""
        raw = self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return encode_base64(raw)

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.public_key}"

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of `message`, unpadded base64."""
        return encode_base64(self._private().sign(message))

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)


def sign_json(
    value: dict[str, Any], user_id: str, key: SigningKey, key_id: str | None = None
) -> dict[str, Any]:
    """A copy of `value` with `key`'s signature added under `user_id` (rule 3);
    `key_id` defaults to `ed25519:<public key>`, a device signs as `ed25519:<device>`."""
    signed = copy.deepcopy(value)
    signatures = signed.pop("signatures", {})
    unsigned = signed.pop("unsigned", None)
    signature = key.sign(canonical_json(signed))
    signatures.setdefault(user_id, {})[key_id or key.key_id] = signature
    signed["signatures"] = signatures
    if unsigned is not None:
        signed["unsigned"] = unsigned
    return signed


def verify_json(value: dict[str, Any], user_id: str, key_id: str, public_key: str) -> bool:
    """Whether `value` carries a valid signature by `public_key` under `user_id` and
    `key_id`. Never raises: a missing, malformed or wrong signature is False."""
    try:
        signature = decode_base64(value["signatures"][user_id][key_id])
        verifier = Ed25519PublicKey.from_public_bytes(decode_base64(public_key))
        unsigned = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
        verifier.verify(signature, canonical_json(unsigned))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class CrossSigningKeys:
    """A user's cross-signing identity: the master key, and the self-signing (signs
    the user's devices) and user-signing (signs other users' master keys) keys."""

    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def key(self, usage: Usage) -> SigningKey:
        match usage:
            case "master":
                return self.master
            case "self_signing":
                return self.self_signing
            case "user_signing":
                return self.user_signing


def cross_signing_key(user_id: str, usage: Usage, keys: CrossSigningKeys) -> dict[str, Any]:
    """The published object of one of `keys` (rule 4): the master key's is unsigned
    (a device may sign it later), the other two are signed by the master key."""
    key = keys.key(usage)
    published: dict[str, Any] = {
        "user_id": user_id,
        "usage": [usage],
        "keys": {key.key_id: key.public_key},
    }
    if usage == "master":
        return published
    return sign_json(published, user_id, keys.master)


def device_signing_upload(user_id: str, keys: CrossSigningKeys) -> dict[str, Any]:
    """The body of `POST /_matrix/client/v3/keys/device_signing/upload` (without the
    `auth` a server may ask for)."""
    return {f"{usage}_key": cross_signing_key(user_id, usage, keys) for usage in USAGES}


def signatures_upload(
    user_id: str, device_keys: dict[str, Any], self_signing: SigningKey
) -> dict[str, Any]:
    """The body of `POST /_matrix/client/v3/keys/signatures/upload` that signs one of
    the user's devices: its device keys as the homeserver published them (`unsigned`
    left out: the server compares the rest with what it holds), with the self-signing
    key's signature added."""
    device = {k: v for k, v in device_keys.items() if k != "unsigned"}
    return {user_id: {device["device_id"]: sign_json(device, user_id, self_signing)}}


def published_key(key_object: Any) -> str | None:
    """The one Ed25519 public key of a published cross-signing key object (as
    `/keys/query` answers it), or None for an object that does not hold exactly one
    whose id matches it."""
    keys = key_object.get("keys") if isinstance(key_object, dict) else None
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    [(key_id, public)] = keys.items()
    if not isinstance(public, str) or key_id != f"{ED25519}:{public}":
        return None
    return public
