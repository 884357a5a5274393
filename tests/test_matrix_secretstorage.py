"""Secret storage: the recovery key format against matrix-rust-sdk's vectors, the key
check against a key description Element made, round trips, and tampering refused."""

from __future__ import annotations

from typing import Any

import pytest

from ganglion.matrix.errors import SecretStorageError
from ganglion.matrix.secretstorage import (
    ALGORITHM,
    EncryptedSecret,
    check_key,
    decode_recovery_key,
    decrypt_secret,
    encode_recovery_key,
    encrypt_secret,
    key_description,
    new_key,
    new_key_id,
)

# matrix-rust-sdk's secret_storage tests: a recovery key and the bytes behind it.
RUST_KEY = bytes(
    [159, 189, 70, 187, 52, 81, 113, 198, 246, 2, 44, 154, 37, 213, 104, 27, 165, 78, 236,
     106, 108, 73, 83, 243, 173, 192, 185, 110, 157, 145, 173, 163]
)  # fmt: skip
RUST_RECOVERY = "EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRK"
# The same tests: a recovery key with the description Element (matrix-js-sdk, which
# writes padded base64) stored for it.
ELEMENT_RECOVERY = "EsTj 3yST y93F SLpB jJsz eAXc 2XzA ygD3 w69H fGaN TKBj jXEd"
ELEMENT_DESCRIPTION = {
    "algorithm": ALGORITHM,
    "iv": "xv5b6/p3ExEw++wTyfSHEg==",
    "mac": "ujBBbXahnTAMkmPUX2/0+VTfUh63pGyVRuBcDMgmJC8=",
}
NAME = "m.cross_signing.master"


def test_a_known_recovery_key_decodes_to_its_bytes_whatever_the_spaces() -> None:
    assert decode_recovery_key(RUST_RECOVERY) == RUST_KEY
    spaced = "EsT           pRvZTnjck8    YrhRAtw XLS84Nr2r9S9LGAWDaExVAPBvLRK   "
    assert decode_recovery_key(spaced) == RUST_KEY
    assert decode_recovery_key("\n" + ELEMENT_RECOVERY.replace(" ", "\t") + "\n")


def test_a_recovery_key_is_shown_in_groups_of_four_as_element_shows_it() -> None:
    shown = encode_recovery_key(RUST_KEY)
    assert shown == "EsTp RvZT njck 8Yrh RAtw XLS8 4Nr2 r9S9 LGAW DaEx VAPB vLRK"
    assert shown.replace(" ", "") == RUST_RECOVERY
    key = new_key()
    assert decode_recovery_key(encode_recovery_key(key)) == key


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("EsTpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk", "check digit"),
        ("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9LGAWDaExVAPBvLRk", "does not start like"),
        ("AATpRvZTnjck8YrhRAtwXLS84Nr2r9S9", "too short or too long"),
        ("AATpRvZTnjck8YrhRAtwXLS84Nr0OIl", "characters"),
    ],
    ids=["parity", "prefix", "length", "not-base58"],
)
def test_a_recovery_key_that_is_not_one_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(SecretStorageError, match=problem):
        decode_recovery_key(text)


def test_the_key_check_accepts_the_right_key_of_an_element_description() -> None:
    assert check_key(decode_recovery_key(ELEMENT_RECOVERY), ELEMENT_DESCRIPTION)
    assert not check_key(RUST_KEY, ELEMENT_DESCRIPTION)
    unpadded = {k: v.rstrip("=") for k, v in ELEMENT_DESCRIPTION.items()}
    assert check_key(decode_recovery_key(ELEMENT_RECOVERY), unpadded)


def test_our_key_description_is_unpadded_and_checks_only_its_key() -> None:
    key = new_key()
    description = key_description(key)
    assert description["algorithm"] == ALGORITHM
    assert "=" not in description["iv"] + description["mac"]
    assert check_key(key, description)
    assert not check_key(new_key(), description)
    # The description Element would make for the same key and iv is the same check.
    fixed = key_description(decode_recovery_key(ELEMENT_RECOVERY), iv=bytes(16))
    assert check_key(decode_recovery_key(ELEMENT_RECOVERY), fixed)


@pytest.mark.parametrize(
    "description",
    [{"algorithm": "m.secret_storage.custom"}, None, {"algorithm": ALGORITHM, "iv": "%"}],
)
def test_a_description_of_another_algorithm_or_damaged_is_refused(description: Any) -> None:
    with pytest.raises(SecretStorageError):
        check_key(new_key(), description)


def test_a_description_without_iv_and_mac_accepts_any_key_as_the_spec_says() -> None:
    assert check_key(new_key(), {"algorithm": ALGORITHM})


def test_a_secret_round_trips_through_its_json() -> None:
    key = new_key()
    seed = "c2VjcmV0IHNlZWQgb2YgdGhlIG1hc3RlciBrZXkgISE"
    stored = encrypt_secret(key, NAME, seed).as_json()
    assert "=" not in "".join(stored.values())
    assert decrypt_secret(key, NAME, EncryptedSecret.from_json(stored)) == seed


def test_the_iv_has_bit_63_cleared() -> None:
    for _ in range(32):
        assert encrypt_secret(new_key(), NAME, "x").iv[8] & 0x80 == 0


def test_a_padded_secret_as_matrix_js_sdk_writes_it_opens() -> None:
    key = new_key()
    stored = encrypt_secret(key, NAME, "seed").as_json()
    padded = {k: v + "=" * (-len(v) % 4) for k, v in stored.items()}
    assert decrypt_secret(key, NAME, EncryptedSecret.from_json(padded)) == "seed"


def test_a_wrong_key_a_wrong_name_or_a_changed_secret_is_refused() -> None:
    key = new_key()
    stored = encrypt_secret(key, NAME, "seed")
    with pytest.raises(SecretStorageError, match="does not open"):
        decrypt_secret(new_key(), NAME, stored)
    with pytest.raises(SecretStorageError, match="does not open"):
        decrypt_secret(key, "m.cross_signing.self_signing", stored)
    flipped = bytes([stored.ciphertext[0] ^ 1]) + stored.ciphertext[1:]
    with pytest.raises(SecretStorageError, match="does not open"):
        decrypt_secret(key, NAME, EncryptedSecret(stored.iv, flipped, stored.mac))


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"iv": "AA", "ciphertext": "AA", "mac": "AA"},
        {"iv": 1, "ciphertext": "", "mac": ""},
        None,
    ],
)
def test_a_damaged_stored_secret_is_refused(value: Any) -> None:
    with pytest.raises(SecretStorageError, match="damaged"):
        EncryptedSecret.from_json(value)


def test_key_ids_are_fresh_letters_and_digits() -> None:
    ids = {new_key_id() for _ in range(10)}
    assert len(ids) == 10
    assert all(len(i) == 32 and i.isalnum() for i in ids)
