"""Which devices the bot trusts: the rule of `matrix.verified_devices_only` (pure, no I/O).

    keys = user_keys(answer, user_id)                  # from a /keys/query answer
    verdict = decide(keys, Sender(user_id, curve25519, ed25519), pinned=...)

Rules (each test in tests/test_matrix_trust.py names one):

1. A device is trusted when, and only when, all of these hold:
   a. it is one of its user's devices as `/keys/query` publishes them, found by its
      Curve25519 key (the key its Olm session, and so every room key it sends, is bound
      to; the `device_id` an event claims is not authenticated);
   b. its device keys are signed by the device itself, and the Ed25519 key a room key
      came with (when known) is the device's;
   c. the user publishes a master key and a self-signing key signed by it;
   d. the device keys are signed by that self-signing key;
   e. the master key is the one pinned for the user, or none is pinned yet (trust on
      first use: the verdict then says to pin it).
2. An unencrypted event has no device anyone can check: refused (`unencrypted`).
3. Every refusal has a kind from the closed set `REFUSALS` (it labels a metric and
   picks the notice) and a `subject`, what the owner is told about once: a device
   (its id and Curve25519 key) or an identity (its master key).
4. Key ids and keys are compared as the spec writes them (unpadded base64); the
   signatures are checked with `ganglion.matrix.signing.verify_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ganglion.matrix.signing import ED25519, published_key, verify_json

__all__ = [
    "REFUSALS",
    "Refusal",
    "Sender",
    "UserKeys",
    "Verdict",
    "decide",
    "device_sender",
    "refusal_notice",
    "user_keys",
]

Refusal = Literal[
    "unencrypted", "unknown_device", "no_identity", "identity_changed", "unsigned_device"
]
REFUSALS: Final[tuple[Refusal, ...]] = (
    "unencrypted",
    "unknown_device",
    "no_identity",
    "identity_changed",
    "unsigned_device",
)


@dataclass(frozen=True, slots=True)
class UserKeys:
    """What `/keys/query` publishes of one user: the master key, the self-signing key
    when it is signed by that master key (None otherwise), and the device keys by
    device id."""

    user_id: str
    master: str | None
    self_signing: str | None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def device_by_curve25519(self, curve25519: str) -> tuple[str, dict[str, Any]] | None:
        for device_id, device in self.devices.items():
            keys = device.get("keys")
            if isinstance(keys, dict) and keys.get(f"curve25519:{device_id}") == curve25519:
                return device_id, device
        return None


@dataclass(frozen=True, slots=True)
class Sender:
    """The device that acted, as far as the event shows it: its user, the Curve25519
    key its room key is bound to (None: the event was not encrypted), the Ed25519 key
    the room key came with (None: not known) and the device id the event claims."""

    user_id: str
    curve25519: str | None
    ed25519: str | None = None
    claimed_device: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Trusted or not, and why. `refusal` is None for a trusted device; `pin` is the
    master key to pin for the user when none was (rule 1e); `subject` is what a notice
    is about (rule 3)."""

    trusted: bool
    reason: str
    refusal: Refusal | None = None
    device_id: str | None = None
    master: str | None = None
    pin: str | None = None
    subject: str = ""


def user_keys(answer: dict[str, Any], user_id: str) -> UserKeys:
    """`user_id`'s keys in a `/keys/query` answer (rule 1c: a self-signing key not
    signed by the master key is as good as none)."""

    def of(field_name: str) -> Any:
        by_user = answer.get(field_name)
        return by_user.get(user_id) if isinstance(by_user, dict) else None

    master = published_key(of("master_keys"))
    self_signing_object = of("self_signing_keys")
    self_signing = published_key(self_signing_object)
    if (
        master is None
        or self_signing is None
        or not verify_json(self_signing_object, user_id, f"{ED25519}:{master}", master)
    ):
        self_signing = None
    devices = of("device_keys")
    found = (
        {d: keys for d, keys in devices.items() if isinstance(keys, dict)}
        if isinstance(devices, dict)
        else {}
    )
    return UserKeys(user_id, master, self_signing, found)


def decide(keys: UserKeys | None, sender: Sender, pinned: str | None) -> Verdict:
    """The verdict on `sender` given its user's published `keys` (None: none could be
    had) and the master key `pinned` for that user (None: none yet). See the rules."""
    user = sender.user_id
    if sender.curve25519 is None:
        return Verdict(
            False,
            "the message was not encrypted, so no device can be checked",
            "unencrypted",
            subject="unencrypted",
        )
    found = keys.device_by_curve25519(sender.curve25519) if keys is not None else None
    if found is None:
        name = sender.claimed_device or sender.curve25519
        return Verdict(
            False,
            f"device {name} is not one of the devices {user} publishes",
            "unknown_device",
            device_id=sender.claimed_device,
            subject=f"device:{name}",
        )
    assert keys is not None
    device_id, device = found
    subject = f"device:{device_id}:{sender.curve25519}"
    own_key = _device_ed25519(device, device_id)
    if (
        own_key is None
        or not verify_json(device, user, f"{ED25519}:{device_id}", own_key)
        or (sender.ed25519 is not None and sender.ed25519 != own_key)
    ):
        return Verdict(
            False,
            f"the keys of device {device_id} are not signed by the device itself",
            "unsigned_device",
            device_id=device_id,
            subject=subject,
        )
    if keys.master is None or keys.self_signing is None:
        return Verdict(
            False,
            f"{user} has no cross-signing identity, so none of their devices is verified",
            "no_identity",
            device_id=device_id,
            subject="no-identity",
        )
    if pinned is not None and pinned != keys.master:
        return Verdict(
            False,
            f"{user}'s cross-signing identity changed (master key {keys.master}; the one "
            f"trusted is {pinned})",
            "identity_changed",
            device_id=device_id,
            master=keys.master,
            subject=f"identity:{keys.master}",
        )
    signing = keys.self_signing
    if not verify_json(device, user, f"{ED25519}:{signing}", signing):
        return Verdict(
            False,
            f"device {device_id} is not verified: {user}'s identity has not signed it",
            "unsigned_device",
            device_id=device_id,
            master=keys.master,
            subject=subject,
        )
    return Verdict(
        True,
        f"device {device_id} is signed by {user}'s identity",
        device_id=device_id,
        master=keys.master,
        pin=keys.master if pinned is None else None,
    )


def device_sender(keys: UserKeys, device_id: str) -> Sender:
    """One of the user's published devices as the sender of an event would show it."""
    device = keys.devices.get(device_id, {})
    found = device.get("keys")
    curve = found.get(f"curve25519:{device_id}") if isinstance(found, dict) else None
    return Sender(keys.user_id, curve if isinstance(curve, str) else None, None, device_id)


def _device_ed25519(device: dict[str, Any], device_id: str) -> str | None:
    keys = device.get("keys")
    key = keys.get(f"{ED25519}:{device_id}") if isinstance(keys, dict) else None
    return key if isinstance(key, str) else None


TRUST_COMMAND: Final = "ganglion matrix trust"


def refusal_notice(verdict: Verdict, user_id: str) -> str:
    """What the room is told, once, about a refused device or identity: what happened
    and how to accept it (rule 3)."""
    assert verdict.refusal is not None
    device = f"device {verdict.device_id}" if verdict.device_id else "a device"
    match verdict.refusal:
        case "unencrypted":
            return (
                f"I did not answer {user_id}: this room is not encrypted, so I cannot tell "
                "which device sent the message, and I answer only verified devices. Turn "
                "on encryption for the room (or start an encrypted one)."
            )
        case "unknown_device":
            return (
                f"I did not answer a message from {device} of {user_id}: it is not one of "
                "the devices the account publishes. If it is yours, sign in again on it; "
                "if it is not, change your password."
            )
        case "no_identity":
            return (
                f"I did not answer {user_id}: the account has no cross-signing identity, "
                "so none of its devices is verified. Set up cross-signing in Element "
                "(Settings > Encryption), then write again."
            )
        case "identity_changed":
            return (
                f"I did not answer {user_id}: the account's cross-signing identity changed "
                f"(new master key {verdict.master}). If you reset it yourself, accept it on "
                f"the bot's machine with `{TRUST_COMMAND} {user_id}`; if you did not, "
                "someone else may control the account: change your password."
            )
        case "unsigned_device":
            return (
                f"I did not answer a message from {device} of {user_id}: that device is "
                "not verified by the account's identity. If it is yours, verify it from a "
                "verified session in Element (Settings > Sessions); if it is not, sign it "
                "out and change your password."
            )
