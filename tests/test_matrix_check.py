"""`ganglion check` for Matrix, its logic: the encryption store read from disk (made by
real nio), compared with the keys a mock homeserver holds for the device, and each
failure it reports with what to do. Against a real Synapse: tests/e2e/test_matrix_ops.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import nio
import pytest

from ganglion.config import Config
from ganglion.matrix.keystore import StoredDevice, read_store, store_file
from ganglion.ops.findings import Finding
from ganglion.ops.matrixcheck import DeviceKeys, probe_matrix, store_finding

BOT = "@bot:hs.example"
DEVICE = "BOTDEVICE"
PICKLE_KEY = "a-test-pickle-key"
TOKEN = "syt_check_token"


def make_store(store_dir: Path, device_id: str = DEVICE, user_id: str = BOT) -> dict[str, str]:
    """A real nio store for the device, as the daemon leaves it; its identity keys."""
    store_dir.mkdir(parents=True, exist_ok=True)
    config = nio.ClientConfig(pickle_key=PICKLE_KEY, encryption_enabled=True)
    client: Any = nio.Client(user_id, device_id, str(store_dir), config=config)
    client.user_id, client.access_token = user_id, TOKEN
    client.load_store()
    keys: dict[str, str] = dict(client.olm.account.identity_keys)
    client.store.database.close()
    return keys


def config_for(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "matrix": {
                "homeserver": "https://hs.example",
                "user_id": BOT,
                "access_token": TOKEN,
                "device_id": DEVICE,
                "allowed_users": ["@owner:hs.example"],
                "pickle_key": PICKLE_KEY,
            },
        }
    )


class Homeserver:
    """whoami and /keys/query answers, replaceable per test."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.whoami = httpx.Response(200, json={"user_id": BOT, "device_id": DEVICE})
        device = {"keys": {f"{k}:{DEVICE}": v for k, v in (keys or {}).items()}}
        self.keys_query = httpx.Response(
            200, json={"device_keys": {BOT: {DEVICE: device} if keys else {}}}
        )
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/account/whoami"):
            return self.whoami
        if request.url.path.endswith("/keys/query"):
            return self.keys_query
        return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"})


async def probe(tmp_path: Path, server: Homeserver) -> dict[str, Finding]:
    findings = await probe_matrix(config_for(tmp_path), transport=httpx.MockTransport(server))
    return {finding.what: finding for finding in findings}


# -- the store on disk ------------------------------------------------------------------


def test_a_store_is_read_with_its_device_and_keys(tmp_path: Path) -> None:
    keys = make_store(tmp_path)
    path = store_file(tmp_path, BOT, DEVICE)
    assert read_store(path, PICKLE_KEY) == StoredDevice(
        path, BOT, DEVICE, keys["ed25519"], keys["curve25519"]
    )
    before = path.read_bytes()
    read_store(path, PICKLE_KEY)
    assert path.read_bytes() == before, "reading changes nothing"


def test_a_store_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    make_store(tmp_path)
    path = store_file(tmp_path, BOT, DEVICE)
    assert read_store(path, "another key") == StoredDevice(
        path, BOT, DEVICE, problem="it cannot be opened with the pickle key"
    )
    assert read_store(path, None) == StoredDevice(
        path, BOT, DEVICE, problem="its pickle key is missing"
    )
    assert read_store(tmp_path / "none.db", PICKLE_KEY) is None
    (tmp_path / "junk.db").write_text("not a database")
    junk = read_store(tmp_path / "junk.db", PICKLE_KEY)
    assert junk is not None and junk.problem is not None
    assert junk.problem.startswith("not a readable encryption store")


# -- deciding from what was found -------------------------------------------------------

PATH = Path("/srv/ganglion/data/matrix") / f"{BOT}_{DEVICE}.db"
HERE = StoredDevice(PATH, BOT, DEVICE, "ED", "CURVE")


def test_a_missing_store_is_fine_before_the_first_start() -> None:
    found = store_finding(PATH, None, None, BOT, DEVICE, [])
    assert found.status == "ok"
    assert f"the store is created in {PATH} at the first start" in found.detail


def test_a_lost_store_of_a_device_with_keys_fails() -> None:
    found = store_finding(PATH, None, DeviceKeys("ED", "CURVE"), BOT, DEVICE, ["OLDDEVICE"])
    assert found.status == "fail"
    assert "the homeserver holds keys for device BOTDEVICE" in found.detail
    assert "the directory holds the stores of OLDDEVICE" in found.detail
    assert "log in again to get a new device id" in found.fix


def test_the_store_of_another_device_fails_saying_whose_it_is() -> None:
    other = StoredDevice(PATH, BOT, "OTHERDEVICE", "ED2", "CURVE2")
    found = store_finding(PATH, other, DeviceKeys("ED", "CURVE"), BOT, DEVICE, [])
    assert found == Finding(
        "Matrix crypto store",
        "fail",
        f"the crypto store {PATH} belongs to device OTHERDEVICE, but the token is for "
        "device BOTDEVICE",
        f"log in again (as device OTHERDEVICE, and set matrix.device_id to it), or remove {PATH}",
    )
    someone = StoredDevice(PATH, "@else:hs.example", "PHONE")
    assert "belongs to device PHONE of @else:hs.example" in (
        store_finding(PATH, someone, None, BOT, DEVICE, []).detail
    )


@pytest.mark.parametrize(
    ("server", "status", "says"),
    [
        (DeviceKeys("ED", "CURVE"), "ok", f"{PATH} matches device BOTDEVICE (ed25519 ED)"),
        (None, "ok", "its keys are uploaded at the next start"),
        (DeviceKeys("ED9", "CURVE9"), "fail", "holds other keys for device BOTDEVICE"),
    ],
    ids=["matching", "not-uploaded-yet", "other-keys"],
)
def test_the_stores_keys_are_compared_with_the_homeservers(
    server: DeviceKeys | None, status: str, says: str
) -> None:
    found = store_finding(PATH, HERE, server, BOT, DEVICE, [])
    assert (found.status, says in found.detail) == (status, True), found


def test_a_store_the_pickle_key_does_not_open_fails() -> None:
    locked = StoredDevice(PATH, BOT, DEVICE, problem="it cannot be opened with the pickle key")
    found = store_finding(PATH, locked, DeviceKeys("ED", "CURVE"), BOT, DEVICE, [])
    assert found.status == "fail"
    assert "it cannot be opened with the pickle key" in found.detail
    assert found.fix.startswith("put the pickle key back")


# -- asking the homeserver --------------------------------------------------------------


async def test_a_matching_store_passes(tmp_path: Path) -> None:
    keys = make_store(tmp_path / "data" / "matrix")
    server = Homeserver(keys)
    found = await probe(tmp_path, server)
    store_lines = ("Matrix user", "Matrix device", "Matrix crypto store")
    assert [found[what].status for what in store_lines] == ["ok", "ok", "ok"]
    assert "matches device BOTDEVICE" in found["Matrix crypto store"].detail
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in server.seen)
    assert all(TOKEN not in str(r.url) for r in server.seen)


async def test_a_store_made_again_after_it_was_lost_fails(tmp_path: Path) -> None:
    make_store(tmp_path / "data" / "matrix")
    found = await probe(tmp_path, Homeserver({"ed25519": "ED", "curve25519": "CURVE"}))
    assert found["Matrix crypto store"].status == "fail"
    assert "holds other keys for device BOTDEVICE than the homeserver" in (
        found["Matrix crypto store"].detail
    )


async def test_no_store_and_no_keys_is_a_first_start(tmp_path: Path) -> None:
    found = await probe(tmp_path, Homeserver())
    assert found["Matrix crypto store"].status == "ok"
    assert not (tmp_path / "data").exists(), "the check creates nothing"


@pytest.mark.parametrize(
    ("whoami", "what", "says"),
    [
        (httpx.Response(401, json={"errcode": "M_UNKNOWN_TOKEN"}), "Matrix", "token is refused"),
        (httpx.Response(200, json={"user_id": "@x:hs.example"}), "Matrix user", "@x:hs.example"),
        (
            httpx.Response(200, json={"user_id": BOT, "device_id": "OTHER"}),
            "Matrix device",
            "the token belongs to device OTHER, not BOTDEVICE",
        ),
        (httpx.Response(200, text="<html>"), "Matrix", "whoami answered HTTP 200"),
    ],
    ids=["refused", "other-user", "other-device", "not-matrix"],
)
async def test_a_token_that_does_not_fit_fails_before_the_store_is_compared(
    tmp_path: Path, whoami: httpx.Response, what: str, says: str
) -> None:
    server = Homeserver()
    server.whoami = whoami
    found = await probe(tmp_path, server)
    assert found[what].status == "fail"
    assert says in found[what].detail
    assert "Matrix crypto store" not in found


async def test_a_homeserver_that_will_not_list_keys_is_a_warning(tmp_path: Path) -> None:
    server = Homeserver()
    server.keys_query = httpx.Response(500)
    found = await probe(tmp_path, server)
    assert found["Matrix crypto store"].status == "warn"
    assert "/keys/query answered HTTP 500" in found["Matrix crypto store"].detail


async def test_an_unreachable_homeserver_fails(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    findings = await probe_matrix(config_for(tmp_path), transport=httpx.MockTransport(refuse))
    assert [(f.what, f.status) for f in findings] == [("Matrix", "fail")]
    assert "https://hs.example cannot be reached (ConnectError)" in findings[0].detail
