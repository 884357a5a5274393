"""`ganglion check` for Matrix: the token, the device and the encryption store.

    whoami                 the token works and belongs to `matrix.user_id` and to
                           `matrix.device_id`
    /keys/query            the identity keys the homeserver holds for that device
    the encryption store   `<store_dir>/<user>_<device>.db`, read without changing it
                           (`ganglion.matrix.keystore`): whose device it holds, and
                           whether its keys are the ones the homeserver has
    the identity           cross-signing, recovery key, trust (`ops.identitycheck`)

`store_finding` decides from what was found (pure); the rest asks. A missing store is
fine on a first start, unless the homeserver already holds keys for the device: the
daemon could never upload its own then ("One time key ... already exists").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from ganglion.config import Config, MatrixConfig
from ganglion.datadir import MATRIX_PICKLE_KEY_FILE
from ganglion.matrix.actor import store_dir_for
from ganglion.matrix.keystore import StoredDevice, read_store, store_file, stored_devices
from ganglion.ops.findings import Finding
from ganglion.ops.identitycheck import identity_findings
from ganglion.private import read_secret
from ganglion.safefs import SafePathError

__all__ = ["DeviceKeys", "probe_matrix", "store_finding"]

MATRIX_TIMEOUT_SECONDS = 15.0
STORE = "Matrix crypto store"
NEW_DEVICE = (
    "log in again to get a new device id, and set matrix.device_id and matrix.access_token "
    "to the new login's (see the README's Matrix section)"
)


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """The identity keys the homeserver holds for one device."""

    ed25519: str | None
    curve25519: str | None


async def probe_matrix(
    config: Config, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[Finding]:
    """The Matrix lines of the checklist (see the module docstring); `transport` is the
    HTTP client's (a test's mock homeserver)."""
    matrix = config.matrix
    assert matrix.homeserver is not None
    assert matrix.access_token is not None
    headers = {"Authorization": f"Bearer {matrix.access_token.get_secret_value()}"}
    try:
        with trio.fail_after(MATRIX_TIMEOUT_SECONDS):
            async with httpx.AsyncClient(
                base_url=matrix.homeserver, headers=headers, transport=transport
            ) as http:
                return await _probe(config, http)
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        detail = f"{matrix.homeserver} cannot be reached ({type(exc).__name__})"
        return [Finding("Matrix", "fail", detail, "check matrix.homeserver")]


async def _probe(config: Config, http: httpx.AsyncClient) -> list[Finding]:
    matrix = config.matrix
    reply = await http.get("/_matrix/client/v3/account/whoami")
    if reply.status_code in (401, 403):
        fix = "put a valid token in matrix.access_token (log in again, see README)"
        return [Finding("Matrix", "fail", "the access token is refused", fix)]
    who = _json(reply)
    if reply.status_code != 200 or who is None:
        fix = "check matrix.homeserver (the client API's base URL)"
        return [Finding("Matrix", "fail", f"whoami answered HTTP {reply.status_code}", fix)]
    found = [_user(matrix, who.get("user_id"))]
    device = who.get("device_id")
    if device is not None and device != matrix.device_id:
        found.append(
            Finding(
                "Matrix device",
                "fail",
                f"the token belongs to device {device}, not {matrix.device_id}",
                "set matrix.device_id to the token's device (the crypto store is per device)",
            )
        )
        return found
    if device is not None:
        found.append(Finding("Matrix device", "ok", f"{device} exists for this token"))
    if found[0].status == "ok":
        found.append(await _store(config, http))
        found += await identity_findings(config, http)
    return found


def _user(matrix: MatrixConfig, user_id: object) -> Finding:
    if user_id != matrix.user_id:
        return Finding(
            "Matrix user",
            "fail",
            f"the token belongs to {user_id}, not {matrix.user_id}",
            "set matrix.user_id, or use this user's token",
        )
    return Finding("Matrix user", "ok", f"{matrix.user_id} on {matrix.homeserver}")


async def _store(config: Config, http: httpx.AsyncClient) -> Finding:
    matrix = config.matrix
    assert matrix.user_id is not None
    assert matrix.device_id is not None
    reply = await http.post(
        "/_matrix/client/v3/keys/query",
        json={"device_keys": {matrix.user_id: [matrix.device_id]}},
    )
    answer = _json(reply)
    if reply.status_code != 200 or answer is None:
        detail = f"the homeserver's /keys/query answered HTTP {reply.status_code}"
        return Finding(STORE, "warn", detail, "look at the homeserver's log")
    server = _device_keys(answer, matrix.user_id, matrix.device_id)
    store_dir = store_dir_for(matrix, config.data_dir)
    stored, others = await trio.to_thread.run_sync(_read_local, config, store_dir)
    path = store_file(store_dir, matrix.user_id, matrix.device_id)
    return store_finding(path, stored, server, matrix.user_id, matrix.device_id, others)


def _read_local(config: Config, store_dir: Path) -> tuple[StoredDevice | None, list[str]]:
    matrix = config.matrix
    assert matrix.user_id is not None
    assert matrix.device_id is not None
    path = store_file(store_dir, matrix.user_id, matrix.device_id)
    if matrix.pickle_key is not None:
        pickle_key: str | None = matrix.pickle_key.get_secret_value()
    else:
        try:
            pickle_key = read_secret(config.data_dir, MATRIX_PICKLE_KEY_FILE)
        except SafePathError:
            pickle_key = None
    others = [d for d in stored_devices(store_dir, matrix.user_id) if d != matrix.device_id]
    return read_store(path, pickle_key), others


def store_finding(
    path: Path,
    stored: StoredDevice | None,
    server: DeviceKeys | None,
    user_id: str,
    device_id: str,
    others: list[str],
) -> Finding:
    """The crypto store's line of the checklist, from the store file at `path` as read
    (`stored`, None when there is none), the keys the homeserver holds for `device_id`
    (`server`, None when it holds none) and the other devices of `user_id` whose stores
    lie beside it (`others`)."""
    if stored is not None and stored.user_id is not None:
        if (stored.user_id, stored.device_id) != (user_id, device_id):
            owner = stored.device_id
            if stored.user_id != user_id:
                owner = f"{stored.device_id} of {stored.user_id}"
            return Finding(
                STORE,
                "fail",
                f"the crypto store {path} belongs to device {owner}, but the token is for "
                f"device {device_id}",
                f"log in again (as device {stored.device_id}, and set matrix.device_id to it), "
                f"or remove {path}",
            )
        if stored.problem is not None:
            return Finding(
                STORE,
                "fail",
                f"the crypto store {path} holds device {device_id}, but {stored.problem} "
                "(matrix.pickle_key, or the data directory's matrix_pickle_key)",
                f"put the pickle key back; or move {path} away and {NEW_DEVICE}",
            )
        return _compare(path, stored, server, device_id)
    if stored is not None and stored.problem is not None:
        fix = f"move {path} away; if the homeserver holds keys for {device_id}, {NEW_DEVICE}"
        return Finding(STORE, "fail", f"{path}: {stored.problem}", fix)
    if server is None:
        return Finding(
            STORE,
            "ok",
            f"no keys yet for device {device_id}: the store is created in {path} at the "
            "first start",
        )
    beside = f"; the directory holds the stores of {', '.join(others)}" if others else ""
    return Finding(
        STORE,
        "fail",
        f"the homeserver holds keys for device {device_id}, but {path} does not have "
        f"them (the store was lost or moved{beside})",
        f"restore {path} from a backup; or remove it and {NEW_DEVICE}",
    )


def _compare(
    path: Path, stored: StoredDevice, server: DeviceKeys | None, device_id: str
) -> Finding:
    if server is None:
        return Finding(
            STORE,
            "ok",
            f"{path} holds device {device_id} (ed25519 {stored.ed25519}); its keys are "
            "uploaded at the next start",
        )
    if (stored.ed25519, stored.curve25519) == (server.ed25519, server.curve25519):
        return Finding(STORE, "ok", f"{path} matches device {device_id} (ed25519 {stored.ed25519})")
    return Finding(
        STORE,
        "fail",
        f"the crypto store {path} holds other keys for device {device_id} than the "
        f"homeserver (ed25519 {stored.ed25519} here, {server.ed25519} there): it belongs "
        "to another installation, or was made again after the first was lost",
        f"restore the store that belongs to this device; or remove {path} and {NEW_DEVICE}",
    )


def _device_keys(answer: dict[str, Any], user_id: str, device_id: str) -> DeviceKeys | None:
    device: Any = answer
    for key in ("device_keys", user_id, device_id):
        device = device.get(key) if isinstance(device, dict) else None
    if not isinstance(device, dict) or not isinstance(device.get("keys"), dict):
        return None
    keys = device["keys"]
    return DeviceKeys(keys.get(f"ed25519:{device_id}"), keys.get(f"curve25519:{device_id}"))


def _json(reply: httpx.Response) -> dict[str, Any] | None:
    try:
        found = reply.json()
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
