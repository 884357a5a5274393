"""The trust rule (`ganglion.matrix.trust`), the pin store and the late-key notices:
pure decisions, a real SQLite file, Trio's MockClock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ganglion.matrix.latekeys import KEY_WAIT, LateKeys
from ganglion.matrix.pins import PinStore
from ganglion.matrix.signing import CrossSigningKeys, SigningKey, cross_signing_key, sign_json
from ganglion.matrix.trust import Sender, UserKeys, decide, refusal_notice, user_keys

USER = "@owner:hs.example"
CURVE = "CURVEOFPHONE"


def device_keys(device: SigningKey, device_id: str = "PHONE") -> dict[str, Any]:
    unsigned = {
        "user_id": USER,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": CURVE, f"ed25519:{device_id}": device.public_key},
    }
    return sign_json(unsigned, USER, device, f"ed25519:{device_id}")


def answer(identity: CrossSigningKeys | None, device: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"device_keys": {USER: {device["device_id"]: device}}}
    if identity is not None:
        found["master_keys"] = {USER: cross_signing_key(USER, "master", identity)}
        found["self_signing_keys"] = {USER: cross_signing_key(USER, "self_signing", identity)}
    return found


def signed_setup() -> tuple[CrossSigningKeys, SigningKey, UserKeys]:
    identity, device = CrossSigningKeys.generate(), SigningKey.generate()
    signed = sign_json(device_keys(device), USER, identity.self_signing)
    return identity, device, user_keys(answer(identity, signed), USER)


def test_rule_1_a_device_signed_by_its_users_identity_is_trusted_and_pinned_on_first_use() -> None:
    identity, device, keys = signed_setup()
    verdict = decide(keys, Sender(USER, CURVE, device.public_key), None)
    assert (verdict.trusted, verdict.device_id, verdict.pin) == (
        True,
        "PHONE",
        identity.master.public_key,
    )
    again = decide(keys, Sender(USER, CURVE), identity.master.public_key)
    assert again.trusted and again.pin is None


def test_rule_1a_a_device_the_user_does_not_publish_is_refused() -> None:
    _, _, keys = signed_setup()
    verdict = decide(keys, Sender(USER, "ANOTHERCURVE", claimed_device="PHONE"), None)
    assert (verdict.trusted, verdict.refusal) == (False, "unknown_device")


def test_rule_1b_a_room_key_from_another_ed25519_key_is_refused() -> None:
    _, _, keys = signed_setup()
    verdict = decide(keys, Sender(USER, CURVE, SigningKey.generate().public_key), None)
    assert verdict.refusal == "unsigned_device"


def test_rule_1c_no_identity_or_a_self_signing_key_the_master_did_not_sign_is_refused() -> None:
    device = SigningKey.generate()
    none = user_keys(answer(None, device_keys(device)), USER)
    assert decide(none, Sender(USER, CURVE), None).refusal == "no_identity"
    identity, forged = CrossSigningKeys.generate(), CrossSigningKeys.generate()
    found = answer(identity, sign_json(device_keys(device), USER, forged.self_signing))
    found["self_signing_keys"] = {USER: cross_signing_key(USER, "self_signing", forged)}
    assert user_keys(found, USER).self_signing is None
    assert decide(user_keys(found, USER), Sender(USER, CURVE), None).refusal == "no_identity"


def test_rule_1d_a_device_its_identity_has_not_signed_is_refused() -> None:
    identity, device = CrossSigningKeys.generate(), SigningKey.generate()
    keys = user_keys(answer(identity, device_keys(device)), USER)
    verdict = decide(keys, Sender(USER, CURVE), None)
    assert (verdict.refusal, verdict.subject) == ("unsigned_device", f"device:PHONE:{CURVE}")
    assert verdict.pin is None  # nothing is pinned from a refusal


def test_rule_1e_an_identity_other_than_the_pinned_one_is_refused() -> None:
    identity, _, keys = signed_setup()
    verdict = decide(keys, Sender(USER, CURVE), "THEOLDMASTERKEY")
    assert (verdict.refusal, verdict.master) == ("identity_changed", identity.master.public_key)
    assert verdict.subject == f"identity:{identity.master.public_key}"
    notice = refusal_notice(verdict, USER)
    assert f"ganglion matrix trust {USER}" in notice and identity.master.public_key in notice


def test_rule_2_an_unencrypted_event_is_refused() -> None:
    _, _, keys = signed_setup()
    assert decide(keys, Sender(USER, None), None).refusal == "unencrypted"


def test_rule_3_every_refusal_has_a_notice_saying_what_to_do() -> None:
    _, _, keys = signed_setup()
    verdict = decide(keys, Sender(USER, "OTHER", claimed_device="TAB"), None)
    assert "device TAB" in refusal_notice(verdict, USER)


# -- the pin store ---------------------------------------------------------------------


def test_the_first_pin_wins_and_the_operator_replaces_it(tmp_path: Path) -> None:
    pins = PinStore(tmp_path)
    assert pins.all() == {}
    assert pins.pin_first(USER, "FIRST") == "FIRST"
    assert pins.pin_first(USER, "SECOND") == "FIRST"
    assert PinStore(tmp_path).get(USER) == "FIRST"  # kept on disk
    assert pins.pin(USER, "SECOND") == "FIRST"
    assert pins.all() == {USER: "SECOND"}
    assert (tmp_path / "trusted_identities.db").stat().st_mode & 0o077 == 0


def test_a_notice_is_given_once_until_the_user_is_pinned_again(tmp_path: Path) -> None:
    pins = PinStore(tmp_path)
    assert pins.first_notice(USER, "device:TAB")
    assert not pins.first_notice(USER, "device:TAB")
    assert not PinStore(tmp_path).first_notice(USER, "device:TAB")  # across restarts
    pins.pin(USER, "NEW")
    assert pins.first_notice(USER, "device:TAB")


# -- late keys -------------------------------------------------------------------------


async def test_a_room_is_told_once_when_keys_do_not_come_within_a_minute(
    autojump_clock: trio.testing.MockClock,
) -> None:
    told: list[tuple[str, str, float]] = []

    async def notify(room_id: str, text: str) -> None:
        told.append((room_id, text, trio.current_time()))

    late = LateKeys(notify)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(late.serve)
        start = trio.current_time()
        late.waiting("$e1", "!room:hs", USER, "TAB")
        await trio.sleep(10)
        late.waiting("$e2", "!room:hs", USER, "TAB")  # the same device: no second notice
        late.waiting("$e3", "!room:hs", USER, "PHONE")
        late.arrived("$e3")  # its keys came
        await trio.sleep(KEY_WAIT - 11)
        assert told == []
        await trio.sleep(2)
        assert [(room, at - start) for room, _, at in told] == [("!room:hs", KEY_WAIT)]
        assert "device TAB" in told[0][1]
        await trio.sleep(3 * KEY_WAIT)
        assert len(told) == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("arrive", [True, False])
async def test_nothing_is_told_when_the_keys_came(
    autojump_clock: trio.testing.MockClock, arrive: bool
) -> None:
    told: list[str] = []

    async def notify(room_id: str, text: str) -> None:
        told.append(room_id)

    late = LateKeys(notify)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(late.serve)
        late.waiting("$e1", "!room:hs", USER, "TAB")
        await trio.sleep(KEY_WAIT - 1)
        if arrive:
            late.arrived("$e1")
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert told == ([] if arrive else ["!room:hs"])
