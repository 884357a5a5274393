"""Secret storage (SSSS), `m.secret_storage.v1.aes-hmac-sha2`, and the recovery key
Element shows and accepts (pure, no I/O).

    key = new_key()
    recovery = encode_recovery_key(key)          # "EsTj 3yST y93F ..." for the owner
    description = key_description(key)          # account data m.secret_storage.key.<id>
    stored = encrypt_secret(key, "m.cross_signing.master", seed_base64)
    assert decrypt_secret(decode_recovery_key(recovery), "m.cross_signing.master", stored)

Rules:

1. The recovery key is the 32-byte key behind the prefix 0x8B 0x01 and followed by a
   parity byte (the XOR of every byte before it), in Bitcoin's base58, in groups of
   four characters separated by spaces. Whitespace in what the owner types is ignored.
2. A secret named N is encrypted with keys from HKDF-SHA256 over the storage key (salt:
   32 zero bytes, info: N, 64 bytes): the first 32 for AES-256-CTR, the last 32 for
   HMAC-SHA256 over the ciphertext. The 16-byte IV is random with bit 63 cleared, so a
   64-bit counter never wraps (Android's AES-CTR counts in 64 bits).
3. A key description's `mac` is that of 32 zero bytes encrypted as the secret named ""
   with its `iv`: it tells whether a key is the right one without any secret.
4. Base64 is written unpadded (the spec's convention, what matrix-rust-sdk writes);
   read padded, unpadded or URL-safe, since matrix-js-sdk writes padded base64 for
   `iv`, `ciphertext` and `mac` (and compares MACs with the padding stripped).
5. A MAC is checked, in constant time, before anything is decrypted; any failure is a
   `SecretStorageError` that names the problem, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ganglion.matrix.errors import SecretStorageError
from ganglion.matrix.signing import decode_base64, encode_base64

__all__ = [
    "ALGORITHM",
    "DEFAULT_KEY_TYPE",
    "EncryptedSecret",
    "check_key",
    "decode_recovery_key",
    "decrypt_secret",
    "encode_recovery_key",
    "encrypt_secret",
    "key_description",
    "key_type",
    "new_key",
    "new_key_id",
]

ALGORITHM: Final = "m.secret_storage.v1.aes-hmac-sha2"
DEFAULT_KEY_TYPE: Final = "m.secret_storage.default_key"
KEY_BYTES: Final = 32
IV_BYTES: Final = 16
MAC_BYTES: Final = 32
KEY_ID_CHARS: Final = 32
PREFIX: Final = b"\x8b\x01"
BASE58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
GROUP: Final = 4


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_key_id() -> str:
    """A fresh key id, 32 letters and digits, like Element's."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(KEY_ID_CHARS))


def key_type(key_id: str) -> str:
    """The account data type that holds the description of `key_id`."""
    return f"m.secret_storage.key.{key_id}"


def encode_recovery_key(key: bytes) -> str:
    """The recovery key of `key` as Element shows it (rule 1)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a secret storage key has {KEY_BYTES} bytes")
    raw = PREFIX + key
    text = _base58_encode(raw + bytes([_parity(raw)]))
    return " ".join(text[i : i + GROUP] for i in range(0, len(text), GROUP))


def decode_recovery_key(text: str) -> bytes:
    """The key behind a recovery key as the owner typed it (rule 1).

    Error handling: `SecretStorageError` saying what is wrong with it.
    """
    compact = "".join(text.split())
    try:
        raw = _base58_decode(compact)
    except ValueError:
        raise SecretStorageError(
            "the recovery key is not one: it holds characters a recovery key never has "
            "(check matrix.recovery_key for a typo)"
        ) from None
    if len(raw) != len(PREFIX) + KEY_BYTES + 1:
        raise SecretStorageError(
            "the recovery key is not one: it is too short or too long "
            "(check matrix.recovery_key; it has 48 characters besides the spaces)"
        )
    if raw[: len(PREFIX)] != PREFIX:
        raise SecretStorageError(
            "the recovery key is not one: it does not start like a recovery key "
            "(check matrix.recovery_key)"
        )
    if _parity(raw[:-1]) != raw[-1]:
        raise SecretStorageError(
            "the recovery key has a typo: its check digit does not match "
            "(check matrix.recovery_key)"
        )
    return raw[len(PREFIX) : -1]


@dataclass(frozen=True, slots=True)
class EncryptedSecret:
    """One secret encrypted under one storage key, as account data holds it under
    `encrypted.<key id>`."""

    iv: bytes
    ciphertext: bytes
    mac: bytes

    def as_json(self) -> dict[str, str]:
        return {
            "iv": encode_base64(self.iv),
            "ciphertext": encode_base64(self.ciphertext),
            "mac": encode_base64(self.mac),
        }

    @classmethod
    def from_json(cls, value: Any) -> EncryptedSecret:
        """Error handling: `SecretStorageError` for anything but the three fields in
        base64 with the right lengths."""
        try:
            iv, ciphertext, mac = (decode_base64(value[k]) for k in ("iv", "ciphertext", "mac"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SecretStorageError(
                "a stored secret is damaged: it is not iv, ciphertext and mac in base64"
            ) from None
        if len(iv) != IV_BYTES or len(mac) != MAC_BYTES:
            raise SecretStorageError("a stored secret is damaged: its iv or mac has a wrong size")
        return cls(iv, ciphertext, mac)


def encrypt_secret(
    key: bytes, name: str, secret: str, *, iv: bytes | None = None
) -> EncryptedSecret:
    """`secret` encrypted under `key` as the secret named `name` (rule 2); `iv` is for
    tests, which need a fixed one."""
    if iv is None:
        fresh = bytearray(secrets.token_bytes(IV_BYTES))
        fresh[8] &= 0x7F  # bit 63 (rule 2)
        iv = bytes(fresh)
    aes_key, mac_key = _derive(key, name)
    ciphertext = _aes_ctr(aes_key, iv, secret.encode("utf-8"))
    return EncryptedSecret(iv, ciphertext, _mac(mac_key, ciphertext))


def decrypt_secret(key: bytes, name: str, encrypted: EncryptedSecret) -> str:
    """The secret named `name` that `encrypted` holds (rule 5).

    Error handling: `SecretStorageError` when its MAC does not match: a wrong key, or a
    secret changed since it was stored.
    """
    aes_key, mac_key = _derive(key, name)
    if not hmac.compare_digest(_mac(mac_key, encrypted.ciphertext), encrypted.mac):
        raise SecretStorageError(
            f"the secret {name} does not open with this key: the key is wrong or the "
            "secret was changed on the server"
        )
    try:
        return _aes_ctr(aes_key, encrypted.iv, encrypted.ciphertext).decode("utf-8")
    except UnicodeDecodeError:
        raise SecretStorageError(f"the secret {name} is not text once decrypted") from None


def key_description(key: bytes, *, iv: bytes | None = None) -> dict[str, Any]:
    """The account data content that describes `key` (rule 3)."""
    check = encrypt_secret(key, "", "\0" * KEY_BYTES, iv=iv)
    return {"algorithm": ALGORITHM, "iv": encode_base64(check.iv), "mac": encode_base64(check.mac)}


def check_key(key: bytes, description: Any) -> bool:
    """Whether `key` is the key `description` describes (rule 3). A description of
    this algorithm without `iv` and `mac` cannot tell: the spec says to assume yes.

    Error handling: `SecretStorageError` for a description of another algorithm or a
    damaged one.
    """
    if not isinstance(description, dict) or description.get("algorithm") != ALGORITHM:
        algorithm = description.get("algorithm") if isinstance(description, dict) else None
        raise SecretStorageError(
            f"the account's secret storage key uses {algorithm or 'no known algorithm'}, "
            f"not {ALGORITHM}"
        )
    if "iv" not in description and "mac" not in description:
        return True
    try:
        iv, expected = decode_base64(description["iv"]), decode_base64(description["mac"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SecretStorageError(
            "the account's secret storage key description is damaged (iv and mac)"
        ) from None
    if len(iv) != IV_BYTES:
        raise SecretStorageError("the account's secret storage key description has a bad iv")
    check = encrypt_secret(key, "", "\0" * KEY_BYTES, iv=iv)
    return hmac.compare_digest(check.mac, expected)


def _derive(key: bytes, name: str) -> tuple[bytes, bytes]:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=64, salt=bytes(32), info=name.encode("utf-8"))
    derived = hkdf.derive(key)
    return derived[:32], derived[32:]


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # CTR is its own inverse: the same call encrypts and decrypts.
    transform = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return transform.update(data) + transform.finalize()


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _parity(data: bytes) -> int:
    parity = 0
    for byte in data:
        parity ^= byte
    return parity


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(BASE58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = BASE58.find(char)
        if digit < 0:
            raise ValueError(f"{char!r} is not a base58 digit")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body
