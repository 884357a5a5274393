"""`ganglion check`'s recovery key line (`ops.identitycheck.recovery_finding`): the key
is checked against the key description's MAC and must open the published identity."""

from __future__ import annotations

from ganglion.matrix.secretstorage import (
    encode_recovery_key,
    encrypt_secret,
    key_description,
    new_key,
)
from ganglion.matrix.signing import SigningKey
from ganglion.ops.identitycheck import SecretStorage, recovery_finding

MASTER = SigningKey.generate()


def storage(key: bytes, master: SigningKey = MASTER) -> SecretStorage:
    secret = encrypt_secret(key, "m.cross_signing.master", master.seed_base64)
    return SecretStorage("KEYID", key_description(key), secret.as_json())


def test_the_configured_key_that_opens_the_published_identity_is_ok() -> None:
    key = new_key()
    found = recovery_finding(
        storage(key), [("matrix.recovery_key", encode_recovery_key(key))], MASTER.public_key
    )
    assert found.status == "ok"


def test_another_accounts_key_fails_its_mac_check() -> None:
    found = recovery_finding(
        storage(new_key()),
        [("matrix.recovery_key", encode_recovery_key(new_key()))],
        MASTER.public_key,
    )
    assert (found.status, "MAC" in found.detail) == ("fail", True)
    assert "reset-identity" in found.fix


def test_a_key_whose_storage_holds_another_identity_fails() -> None:
    key = new_key()
    found = recovery_finding(
        storage(key, SigningKey.generate()),
        [("matrix.recovery_key", encode_recovery_key(key))],
        MASTER.public_key,
    )
    assert (found.status, "another identity" in found.detail) == ("fail", True)


def test_a_key_left_in_the_hand_out_file_is_a_warning() -> None:
    key = new_key()
    found = recovery_finding(
        storage(key), [("data/matrix_recovery_key", encode_recovery_key(key))], MASTER.public_key
    )
    assert (found.status, "delete that file" in found.fix) == ("warn", True)


def test_no_secret_storage_or_no_key_is_a_warning_with_its_fix() -> None:
    none = recovery_finding(SecretStorage(None, None, None), [], None)
    assert (none.status, "start the daemon" in none.fix) == ("warn", True)
    unset = recovery_finding(storage(new_key()), [], MASTER.public_key)
    assert (unset.status, "matrix.recovery_key" in unset.fix) == ("warn", True)
