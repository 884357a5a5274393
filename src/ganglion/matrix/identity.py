"""The bot's cross-signing identity, made or restored at start-up.

    identity = Identity(homeserver, config, store_dir=..., data_dir=..., pickle_key=...)
    state = await identity.ensure()      # an IdentityState; never raises for a problem

Run after the device keys are uploaded and before any room is joined, so the owner's
Element sees the bot's device signed by its owner from the first message. matrix-nio
has no cross-signing: the keys are `ganglion.matrix.signing`'s, secret storage is
`ganglion.matrix.secretstorage`'s, and the requests go through `Homeserver.call`.

What the account's published keys (`/keys/query` for the bot's own user) decide:

1. No identity: make one (master, self-signing, user-signing), keep it here (sealed
   with the pickle key, `ganglion.matrix.keyfile`) before publishing it, publish it
   (`keys/device_signing/upload`; Synapse takes the first upload without
   user-interactive auth, MSC3967; a server that asks gets `matrix.password`), sign
   this device with the self-signing key, store the three private keys in secret
   storage under a new recovery key, and hand that key out once.
2. An identity whose keys are kept here: sign this device if it is not signed yet (a
   new device id after a new login); put the keys into secret storage, with a new
   recovery key, if it does not hold them (a start cut off half-way).
3. An identity whose keys are not kept here, and `matrix.recovery_key`: restore the
   keys from secret storage (the key is checked against the key description first),
   check they are the published ones, keep them here, sign this device.
4. An identity whose keys are not kept here, and no recovery key: nothing is reset.
   The state names the two ways out; the interface carries on unsigned.

The recovery key goes to the terminal (stderr) when there is one, else into an
owner-only file in the data directory (`matrix_recovery_key`) whose path is logged;
the key itself is never logged.

Error handling: `MatrixUnavailable` and `MatrixAuthError` propagate (the connection
retries); every other `MatrixError` (setup, secret storage, a refusal) becomes the
state's `problem`, for the caller to report once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import trio

from ganglion.config import MatrixConfig
from ganglion.datadir import MATRIX_RECOVERY_KEY_FILE
from ganglion.matrix.errors import (
    MatrixAuthError,
    MatrixError,
    MatrixInteractiveAuth,
    MatrixRequestError,
    MatrixSetupError,
    MatrixUnavailable,
    SecretStorageError,
)
from ganglion.matrix.http import Homeserver
from ganglion.matrix.keyfile import load_keys, save_keys
from ganglion.matrix.secretstorage import (
    DEFAULT_KEY_TYPE,
    EncryptedSecret,
    check_key,
    decode_recovery_key,
    decrypt_secret,
    encode_recovery_key,
    encrypt_secret,
    key_description,
    key_type,
    new_key,
    new_key_id,
)
from ganglion.matrix.signing import (
    USAGES,
    CrossSigningKeys,
    SigningKey,
    Usage,
    device_signing_upload,
    published_key,
    signatures_upload,
    verify_json,
)
from ganglion.matrix.stats import IdentityState
from ganglion.private import keep_secret
from ganglion.safefs import SafePathError

__all__ = ["SECRET_NAMES", "Identity", "Published", "hand_out_recovery_key"]

log = logging.getLogger(__name__)

SECRET_NAMES: Final[dict[Usage, str]] = {
    "master": "m.cross_signing.master",
    "self_signing": "m.cross_signing.self_signing",
    "user_signing": "m.cross_signing.user_signing",
}
KEYS: Final = "/_matrix/client/v3/keys"
RESET_COMMAND: Final = "ganglion matrix reset-identity"


@dataclass(frozen=True, slots=True)
class Published:
    """What `/keys/query` says of the bot's own user: its cross-signing public keys
    (None: not published) and this device's keys as the server holds them."""

    master: str | None
    self_signing: str | None
    user_signing: str | None
    device: dict[str, Any] | None

    def matches(self, keys: CrossSigningKeys) -> bool:
        return (
            keys.master.public_key == self.master
            and keys.self_signing.public_key == self.self_signing
            and self.user_signing in (None, keys.user_signing.public_key)
        )


class Identity:
    """The cross-signing work of one logged-in device (see the module docstring)."""

    def __init__(
        self,
        homeserver: Homeserver,
        config: MatrixConfig,
        *,
        store_dir: Path,
        data_dir: Path,
        pickle_key: str,
        hand_out: Callable[[str], None] | None = None,
    ) -> None:
        assert config.user_id is not None
        assert config.device_id is not None
        self._homeserver = homeserver
        self._config = config
        self._user_id: str = config.user_id
        self._device_id: str = config.device_id
        self._store_dir = store_dir
        self._pickle_key = pickle_key
        self._hand_out = hand_out or (
            lambda key: hand_out_recovery_key(key, self._user_id, data_dir)
        )

    async def ensure(self) -> IdentityState:
        """Make, check or restore the identity and sign this device (rules 1-4)."""
        published: Published | None = None
        try:
            published = await self.query()
            return await self._ensure(published)
        except (MatrixUnavailable, MatrixAuthError):
            raise
        except MatrixError as exc:
            master = published.master if published is not None else None
            return IdentityState(published=master is not None, master_key=master, problem=str(exc))

    async def reset(self) -> IdentityState:
        """Make a new identity that replaces the published one (`ganglion matrix
        reset-identity`): kept, published (the server asks for `matrix.password`), this
        device signed, secret storage under a new recovery key, handed out.

        Error handling: every `MatrixError` propagates.
        """
        published = await self.query()
        return await self._create(None, published)

    async def query(self) -> Published:
        """The bot's own keys as the homeserver publishes them."""
        answer = await self._homeserver.call(
            "POST", f"{KEYS}/query", {"device_keys": {self._user_id: []}}
        )

        def key_of(field: str) -> str | None:
            by_user = answer.get(field)
            return published_key(by_user.get(self._user_id)) if isinstance(by_user, dict) else None

        by_user = answer.get("device_keys")
        devices = by_user.get(self._user_id) if isinstance(by_user, dict) else None
        device = devices.get(self._device_id) if isinstance(devices, dict) else None
        return Published(
            key_of("master_keys"),
            key_of("self_signing_keys"),
            key_of("user_signing_keys"),
            device if isinstance(device, dict) else None,
        )

    async def _ensure(self, published: Published) -> IdentityState:
        local = await trio.to_thread.run_sync(
            load_keys, self._store_dir, self._user_id, self._pickle_key
        )
        if published.master is None:
            return await self._create(local, published)
        if local is not None and published.matches(local):
            return await self._keep(local, published)
        if local is not None:
            log.warning(
                "Matrix: the cross-signing keys kept in %s are not the identity %s "
                "publishes (it was replaced elsewhere): they are not used",
                self._store_dir,
                self._user_id,
            )
        if self._config.recovery_key is not None:
            return await self._restore(self._config.recovery_key.get_secret_value(), published)
        raise MatrixSetupError(
            f"{self._user_id} already has a cross-signing identity (master key "
            f"{published.master}) whose private keys this installation does not hold, so "
            "its device stays unsigned and Element shows the bot as not verified: set "
            "matrix.recovery_key (or GANGLION_MATRIX_RECOVERY_KEY) to the recovery key "
            f"handed out when the identity was made, or run `{RESET_COMMAND}` to make a "
            "new identity (the owner then sees the bot's identity change in Element)"
        )

    async def _create(self, local: CrossSigningKeys | None, published: Published) -> IdentityState:
        # Kept before it is published: a start cut off after the upload must find the
        # private keys of what the account now shows.
        keys = local or CrossSigningKeys.generate()
        if local is None:
            await self._save(keys)
        await self._upload_identity(keys)
        log.info(
            "Matrix: published a new cross-signing identity for %s (master key %s)",
            self._user_id,
            keys.master.public_key,
        )
        await self._sign_device(keys, published.device)
        await self._store_secrets(keys)
        return IdentityState(True, True, True, keys.master.public_key)

    async def _keep(self, keys: CrossSigningKeys, published: Published) -> IdentityState:
        if not self._is_signed(published.device, keys.self_signing.public_key):
            await self._sign_device(keys, published.device)
        if not await self._secrets_stored():
            await self._store_secrets(keys)
        return IdentityState(True, True, True, keys.master.public_key)

    async def _restore(self, recovery_key: str, published: Published) -> IdentityState:
        key = decode_recovery_key(recovery_key)
        key_id = await self._default_key_id()
        description = await self._get_account_data(key_type(key_id))
        if description is None:
            raise SecretStorageError(
                f"the account's secret storage names the key {key_id}, which it does not "
                "describe: it cannot be opened"
            )
        if not check_key(key, description):
            raise SecretStorageError(
                "matrix.recovery_key is not the recovery key of this account's secret "
                "storage (it does not pass the key's check): give the key handed out when "
                f"the identity was made, or run `{RESET_COMMAND}`"
            )
        seeds = {usage: await self._read_secret(key, key_id, usage) for usage in USAGES}
        keys = CrossSigningKeys(seeds["master"], seeds["self_signing"], seeds["user_signing"])
        if not published.matches(keys):
            raise SecretStorageError(
                "the cross-signing keys in secret storage are not the identity the account "
                f"publishes (it was replaced without updating them): run `{RESET_COMMAND}`"
            )
        await self._save(keys)
        log.info(
            "Matrix: restored the cross-signing identity of %s from the recovery key",
            self._user_id,
        )
        if not self._is_signed(published.device, keys.self_signing.public_key):
            await self._sign_device(keys, published.device)
        return IdentityState(True, True, True, keys.master.public_key)

    async def _upload_identity(self, keys: CrossSigningKeys) -> None:
        body = device_signing_upload(self._user_id, keys)
        path = f"{KEYS}/device_signing/upload"
        try:
            await self._homeserver.call("POST", path, body)
            return
        except MatrixInteractiveAuth as exc:
            auth = self._password_auth(exc)
        try:
            await self._homeserver.call("POST", path, {**body, "auth": auth})
        except MatrixInteractiveAuth:
            raise MatrixSetupError(
                "the homeserver refused matrix.password when the bot published its "
                "cross-signing keys: set the bot account's password in matrix.password "
                "(or GANGLION_MATRIX_PASSWORD)"
            ) from None

    def _password_auth(self, asked: MatrixInteractiveAuth) -> dict[str, Any]:
        if self._config.password is None:
            raise MatrixSetupError(
                "the homeserver asks for the bot's password before it publishes its "
                "cross-signing keys: set matrix.password (or GANGLION_MATRIX_PASSWORD) to "
                "the bot account's password and restart"
            )
        if ["m.login.password"] not in asked.flows:
            raise MatrixSetupError(
                "the homeserver asks for more than a password before the bot publishes its "
                f"cross-signing keys ({asked}): publish them once from a client that can "
                f"answer it, or run `{RESET_COMMAND}`"
            )
        return {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self._user_id},
            "password": self._config.password.get_secret_value(),
            "session": asked.session,
        }

    async def _sign_device(self, keys: CrossSigningKeys, device: dict[str, Any] | None) -> None:
        if device is None:
            raise MatrixSetupError(
                f"the homeserver publishes no keys for device {self._device_id}, so it "
                "cannot be cross-signed"
            )
        body = signatures_upload(self._user_id, device, keys.self_signing)
        answer = await self._homeserver.call("POST", f"{KEYS}/signatures/upload", body)
        failures = answer.get("failures")
        if failures:
            raise MatrixRequestError(
                f"the homeserver refused the signature of device {self._device_id}: {failures}"
            )
        log.info("Matrix: device %s is signed by its owner's identity", self._device_id)

    def _is_signed(self, device: dict[str, Any] | None, self_signing: str) -> bool:
        if device is None:
            return False
        return verify_json(device, self._user_id, f"ed25519:{self_signing}", self_signing)

    async def _store_secrets(self, keys: CrossSigningKeys) -> None:
        key, key_id = new_key(), new_key_id()
        await self._put_account_data(key_type(key_id), key_description(key))
        for usage in USAGES:
            name = SECRET_NAMES[usage]
            secret = encrypt_secret(key, name, keys.key(usage).seed_base64)
            await self._put_account_data(name, {"encrypted": {key_id: secret.as_json()}})
        # Handed out before it becomes the default: a key that could not be handed out
        # leaves secret storage as it was, and the next start makes another.
        await trio.to_thread.run_sync(self._hand_out, encode_recovery_key(key))
        await self._put_account_data(DEFAULT_KEY_TYPE, {"key": key_id})

    async def _secrets_stored(self) -> bool:
        default = await self._get_account_data(DEFAULT_KEY_TYPE)
        key_id = default.get("key") if default is not None else None
        if not isinstance(key_id, str):
            return False
        for name in SECRET_NAMES.values():
            content = await self._get_account_data(name)
            encrypted = content.get("encrypted") if content is not None else None
            if not isinstance(encrypted, dict) or key_id not in encrypted:
                return False
        return True

    async def _default_key_id(self) -> str:
        default = await self._get_account_data(DEFAULT_KEY_TYPE)
        key_id = default.get("key") if default is not None else None
        if not isinstance(key_id, str):
            raise SecretStorageError(
                "matrix.recovery_key is set, but the account has no secret storage to "
                f"restore the identity from: run `{RESET_COMMAND}`"
            )
        return key_id

    async def _read_secret(self, key: bytes, key_id: str, usage: Usage) -> SigningKey:
        name = SECRET_NAMES[usage]
        content = await self._get_account_data(name)
        encrypted = content.get("encrypted") if content is not None else None
        if not isinstance(encrypted, dict) or key_id not in encrypted:
            raise SecretStorageError(
                f"the account's secret storage holds no {name} under its default key: the "
                f"identity cannot be restored from it; run `{RESET_COMMAND}`"
            )
        seed = decrypt_secret(key, name, EncryptedSecret.from_json(encrypted[key_id]))
        try:
            return SigningKey.from_base64(seed)
        except ValueError:
            raise SecretStorageError(f"the secret {name} is not an Ed25519 key") from None

    async def _save(self, keys: CrossSigningKeys) -> None:
        try:
            await trio.to_thread.run_sync(
                save_keys, self._store_dir, self._user_id, self._pickle_key, keys
            )
        except (OSError, SafePathError) as exc:
            raise MatrixSetupError(
                f"cannot keep the cross-signing keys in {self._store_dir} ({exc}): check "
                "its permissions"
            ) from None

    def _account_data_path(self, event_type: str) -> str:
        user = quote(self._user_id, safe="")
        return f"/_matrix/client/v3/user/{user}/account_data/{quote(event_type, safe='')}"

    async def _get_account_data(self, event_type: str) -> dict[str, Any] | None:
        try:
            return await self._homeserver.call("GET", self._account_data_path(event_type))
        except MatrixRequestError as exc:
            if exc.errcode == "M_NOT_FOUND" or exc.status == 404:
                return None
            raise

    async def _put_account_data(self, event_type: str, content: dict[str, Any]) -> None:
        await self._homeserver.call("PUT", self._account_data_path(event_type), content)


def hand_out_recovery_key(recovery_key: str, user_id: str, data_dir: Path) -> None:
    """Give the owner a new recovery key, once: on the terminal (stderr) when there is
    one, else in the owner-only file `<data_dir>/matrix_recovery_key`, whose path (never
    the key) is logged.

    Error handling: `MatrixSetupError` when the file cannot be written.
    """
    if sys.stderr.isatty():
        print(
            f"\nGanglion made a cross-signing identity for {user_id}. Its recovery key, "
            f"shown only this once:\n\n    {recovery_key}\n\nKeep it somewhere safe (a "
            "password manager). With it in matrix.recovery_key (or "
            "GANGLION_MATRIX_RECOVERY_KEY) the bot restores the same identity on a new "
            "device or after losing its store.\n",
            file=sys.stderr,
            flush=True,
        )
        return
    try:
        keep_secret(data_dir, MATRIX_RECOVERY_KEY_FILE, recovery_key)
    except (OSError, SafePathError) as exc:
        raise MatrixSetupError(
            f"cannot write the new recovery key into {data_dir} ({exc}): check its permissions"
        ) from None
    log.warning(
        "Matrix: made a cross-signing identity for %s; its recovery key is in %s "
        "(owner-only): keep it somewhere safe, then delete that file",
        user_id,
        data_dir / MATRIX_RECOVERY_KEY_FILE,
    )
