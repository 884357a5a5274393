"""Signed JSON and cross-signing keys: the spec's canonical JSON and signing vectors,
unpadded base64 everywhere, and that what is built for upload verifies."""

from __future__ import annotations

from typing import Any

import pytest

from ganglion.matrix.signing import (
    USAGES,
    CrossSigningKeys,
    SigningKey,
    canonical_json,
    decode_base64,
    device_signing_upload,
    encode_base64,
    published_key,
    sign_json,
    signatures_upload,
    verify_json,
)

# The spec's appendix ("Signing JSON") signs with this seed as `ed25519:1` of "domain".
SPEC_KEY = SigningKey.from_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
USER = "@bot:hs.example"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "{}"),
        ({"one": 1, "two": "Two"}, '{"one":1,"two":"Two"}'),
        ({"b": "2", "a": "1"}, '{"a":"1","b":"2"}'),
        (
            {"auth": {"success": True, "mxid": "@john.doe:example.com"}},
            '{"auth":{"mxid":"@john.doe:example.com","success":true}}',
        ),
        ({"a": "日本語"}, '{"a":"日本語"}'),
        ({"本": 2, "日": 1}, '{"日":1,"本":2}'),
        ({"a": "\u65e5"}, '{"a":"日"}'),
        ({"a": None}, '{"a":null}'),
    ],
)
def test_canonical_json_matches_the_spec_examples(value: Any, expected: str) -> None:
    assert canonical_json(value) == expected.encode("utf-8")


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(ValueError, match="floats"):
        canonical_json({"a": [1, {"b": 1.5}]})


def test_base64_is_written_unpadded_and_read_padded_unpadded_or_url_safe() -> None:
    data = bytes(range(250, 256))  # '+' and '/' in standard base64
    assert encode_base64(b"\x00") == "AA"
    assert "=" not in encode_base64(data)
    for text in ("AA", "AA==", "AA="):
        assert decode_base64(text) == b"\x00"
    assert decode_base64(encode_base64(data)) == data
    assert decode_base64(encode_base64(data).replace("+", "-").replace("/", "_")) == data
    for bad in ("A", "A$AA", "AAAAA"):
        with pytest.raises(ValueError, match="not base64"):
            decode_base64(bad)


def test_signing_matches_the_spec_vectors() -> None:
    assert SPEC_KEY.public_key == "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    empty = sign_json({}, "domain", SPEC_KEY, "ed25519:1")
    assert empty["signatures"]["domain"]["ed25519:1"] == (
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    )
    two = sign_json({"one": 1, "two": "Two"}, "domain", SPEC_KEY, "ed25519:1")
    assert two["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def test_signing_leaves_out_unsigned_and_merges_into_existing_signatures() -> None:
    original = {
        "a": 1,
        "unsigned": {"age_ts": 5},
        "signatures": {"domain": {"ed25519:other": "kept"}},
    }
    signed = sign_json(original, "domain", SPEC_KEY, "ed25519:1")
    assert original["signatures"] == {"domain": {"ed25519:other": "kept"}}  # not in place
    assert signed["unsigned"] == {"age_ts": 5}
    assert signed["signatures"]["domain"]["ed25519:other"] == "kept"
    assert (
        signed["signatures"]["domain"]["ed25519:1"]
        == (
            sign_json({"a": 1}, "domain", SPEC_KEY, "ed25519:1")["signatures"]["domain"][
                "ed25519:1"
            ]
        )
    )
    # A change of `unsigned` does not break the signature; a change of the rest does.
    assert verify_json({**signed, "unsigned": {}}, "domain", "ed25519:1", SPEC_KEY.public_key)
    assert not verify_json({**signed, "a": 2}, "domain", "ed25519:1", SPEC_KEY.public_key)


def test_verification_is_false_for_missing_malformed_or_foreign_signatures() -> None:
    signed = sign_json({"a": 1}, USER, SPEC_KEY)
    other = SigningKey.generate()
    assert verify_json(signed, USER, SPEC_KEY.key_id, SPEC_KEY.public_key)
    assert not verify_json(signed, USER, SPEC_KEY.key_id, other.public_key)
    assert not verify_json(signed, "@else:hs", SPEC_KEY.key_id, SPEC_KEY.public_key)
    assert not verify_json({"a": 1}, USER, SPEC_KEY.key_id, SPEC_KEY.public_key)
    broken = {**signed, "signatures": {USER: {SPEC_KEY.key_id: "%%%"}}}
    assert not verify_json(broken, USER, SPEC_KEY.key_id, SPEC_KEY.public_key)


def test_a_seed_must_have_32_bytes_and_is_not_shown() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey(b"short")
    key = SigningKey.generate()
    assert key.seed_base64 not in repr(key)
    assert SigningKey.from_base64(key.seed_base64 + "=") == key


def test_the_device_signing_upload_is_unpadded_and_verifies_with_the_public_keys() -> None:
    keys = CrossSigningKeys.generate()
    body = device_signing_upload(USER, keys)
    assert set(body) == {"master_key", "self_signing_key", "user_signing_key"}
    master = keys.master
    for usage in USAGES:
        published = body[f"{usage}_key"]
        key = keys.key(usage)
        assert published["usage"] == [usage]
        assert published["user_id"] == USER
        assert published["keys"] == {f"ed25519:{key.public_key}": key.public_key}
        assert "=" not in key.key_id
        assert published_key(published) == key.public_key
    assert "signatures" not in body["master_key"]
    for usage in ("self_signing", "user_signing"):
        published = body[f"{usage}_key"]
        [signature] = published["signatures"][USER].values()
        assert "=" not in signature
        assert list(published["signatures"][USER]) == [master.key_id]
        assert verify_json(published, USER, master.key_id, master.public_key)


def test_the_device_signature_upload_verifies_with_the_self_signing_key() -> None:
    keys = CrossSigningKeys.generate()
    device = {
        "user_id": USER,
        "device_id": "BOTDEVICE",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"curve25519:BOTDEVICE": "c", "ed25519:BOTDEVICE": "e"},
        "signatures": {USER: {"ed25519:BOTDEVICE": "self"}},
        "unsigned": {"device_display_name": "Ganglion"},
    }
    body = signatures_upload(USER, device, keys.self_signing)
    signed = body[USER]["BOTDEVICE"]
    assert "unsigned" not in signed
    assert signed["signatures"][USER]["ed25519:BOTDEVICE"] == "self"
    ssk = keys.self_signing
    assert verify_json(signed, USER, ssk.key_id, ssk.public_key)
    assert verify_json(
        device | {"signatures": signed["signatures"]}, USER, ssk.key_id, ssk.public_key
    )


@pytest.mark.parametrize(
    "value",
    [None, {}, {"keys": {}}, {"keys": {"ed25519:a": "b"}}, {"keys": {"ed25519:a": "a", "x": "y"}}],
)
def test_a_published_key_object_that_is_not_one_key_is_none(value: Any) -> None:
    assert published_key(value) is None
