"""The cross-signing keys at rest: sealed with the pickle key for one account, owner-only,
and anything that does not open is "not held here", never a crash."""

from __future__ import annotations

from pathlib import Path

from ganglion.datadir import MATRIX_RECOVERY_KEY_FILE
from ganglion.matrix.keyfile import keys_file, load_keys, open_keys, save_keys, seal_keys
from ganglion.matrix.signing import CrossSigningKeys
from ganglion.owned import OwnedFiles

USER = "@bot:hs.example"


def test_kept_keys_come_back_with_the_same_pickle_key(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate()
    save_keys(tmp_path, USER, "pickle", keys)
    assert load_keys(tmp_path, USER, "pickle") == keys
    path = tmp_path / keys_file(USER)
    assert path.stat().st_mode & 0o077 == 0
    text = path.read_text()
    assert keys.master.seed_base64 not in text and keys.self_signing.seed_base64 not in text


def test_another_pickle_key_or_account_or_damage_means_not_held(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate()
    sealed = seal_keys(keys, USER, "pickle")
    assert open_keys(sealed, USER, "another pickle") is None
    assert open_keys(sealed, "@other:hs.example", "pickle") is None
    assert open_keys(sealed.replace('"sealed": "', '"sealed": "AAAA'), USER, "pickle") is None
    assert open_keys("not json", USER, "pickle") is None
    save_keys(tmp_path, USER, "pickle", keys)
    assert load_keys(tmp_path, USER, "another pickle") is None
    assert load_keys(tmp_path / "missing", USER, "pickle") is None


def test_the_handed_out_recovery_key_is_private_to_the_daemon(tmp_path: Path) -> None:
    assert OwnedFiles.of(tmp_path).owns(tmp_path.resolve() / MATRIX_RECOVERY_KEY_FILE)
