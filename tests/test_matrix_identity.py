"""The bot's cross-signing start-up against an in-memory homeserver (a mock transport
that keeps keys and account data as Synapse does): made once, kept, re-signed for a new
device, restored from the recovery key, and every problem a state, never a crash."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from ganglion.config import MatrixConfig
from ganglion.datadir import MATRIX_RECOVERY_KEY_FILE
from ganglion.matrix.http import Homeserver
from ganglion.matrix.identity import SECRET_NAMES, Identity, hand_out_recovery_key
from ganglion.matrix.keyfile import keys_file, load_keys
from ganglion.matrix.secretstorage import (
    EncryptedSecret,
    decode_recovery_key,
    decrypt_secret,
    encode_recovery_key,
    new_key,
)
from ganglion.matrix.signing import USAGES, published_key, verify_json
from ganglion.matrix.stats import IdentityState

USER = "@bot:hs.example"
PICKLE = "pickle-key"
PASSWORD = "the bot password"


class FakeHomeserver:
    """Just enough of a homeserver's keys and account data for the identity."""

    def __init__(self) -> None:
        self.cross_signing: dict[str, Any] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.account_data: dict[str, Any] = {}
        self.ask_password = False
        self.uploads: list[dict[str, Any]] = []

    def add_device(self, device_id: str) -> None:
        self.devices[device_id] = {
            "user_id": USER,
            "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": "e", f"curve25519:{device_id}": "c"},
            "signatures": {USER: {f"ed25519:{device_id}": "self"}},
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        if path.endswith("/keys/query"):
            answer: dict[str, Any] = {"device_keys": {USER: self.devices}}
            for usage, key in self.cross_signing.items():
                answer[f"{usage}_keys"] = {USER: key}
            return httpx.Response(200, json=answer)
        if path.endswith("/keys/device_signing/upload"):
            return self._upload(body)
        if path.endswith("/keys/signatures/upload"):
            for device_id, signed in body[USER].items():
                self.devices[device_id]["signatures"][USER].update(signed["signatures"][USER])
            return httpx.Response(200, json={"failures": {}})
        if "/account_data/" in path:
            event_type = unquote(request.url.raw_path.decode().rsplit("/", 1)[1])
            if request.method == "PUT":
                self.account_data[event_type] = body
                return httpx.Response(200, json={})
            if event_type in self.account_data:
                return httpx.Response(200, json=self.account_data[event_type])
            return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "none"})
        return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"})

    def _upload(self, body: dict[str, Any]) -> httpx.Response:
        asking = {"flows": [{"stages": ["m.login.password"]}], "session": "S1", "params": {}}
        if self.ask_password:
            auth = body.get("auth")
            if auth is None:
                return httpx.Response(401, json=asking)
            if auth.get("password") != PASSWORD or auth.get("session") != "S1":
                return httpx.Response(401, json={**asking, "errcode": "M_FORBIDDEN"})
        self.uploads.append(body)
        for usage in USAGES:
            self.cross_signing[usage] = body[f"{usage}_key"]
        return httpx.Response(200, json={})


@pytest.fixture
def server() -> FakeHomeserver:
    fake = FakeHomeserver()
    fake.add_device("DEVICE1")
    return fake


class Bot:
    """One start-up of the bot: its store directory, and the recovery keys it gave."""

    def __init__(self, tmp_path: Path, server: FakeHomeserver) -> None:
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.data = tmp_path
        self.server = server
        self.handed_out: list[str] = []

    async def start(self, device_id: str = "DEVICE1", **config: Any) -> IdentityState:
        settings = MatrixConfig(
            homeserver="https://hs.example",
            user_id=USER,
            access_token="syt_token",
            device_id=device_id,
            allow_all_users=True,
            **config,
        )
        async with httpx.AsyncClient(transport=httpx.MockTransport(self.server.handle)) as http:
            homeserver = Homeserver(
                SimpleNamespace(access_token="syt_token"), http, "https://hs.example"
            )
            identity = Identity(
                homeserver,
                settings,
                store_dir=self.store,
                data_dir=self.data,
                pickle_key=PICKLE,
                hand_out=self.handed_out.append,
            )
            return await identity.ensure()

    def lose_store(self) -> None:
        (self.store / keys_file(USER)).unlink()

    def signed(self, device_id: str) -> bool:
        ssk = published_key(self.server.cross_signing["self_signing"])
        assert ssk is not None
        return verify_json(self.server.devices[device_id], USER, f"ed25519:{ssk}", ssk)


@pytest.fixture
def bot(tmp_path: Path, server: FakeHomeserver) -> Bot:
    return Bot(tmp_path, server)


def master_of(server: FakeHomeserver) -> str | None:
    return published_key(server.cross_signing.get("master"))


async def test_a_first_start_publishes_an_identity_signs_the_device_and_hands_out_a_key(
    bot: Bot, server: FakeHomeserver
) -> None:
    state = await bot.start()
    assert state == IdentityState(True, True, True, master_of(server))
    assert bot.signed("DEVICE1")
    [recovery] = bot.handed_out
    # Secret storage holds the kept keys under the handed-out key, and it is the default.
    key = decode_recovery_key(recovery)
    key_id = server.account_data["m.secret_storage.default_key"]["key"]
    kept = load_keys(bot.store, USER, PICKLE)
    assert kept is not None
    for usage in USAGES:
        name = SECRET_NAMES[usage]
        stored = EncryptedSecret.from_json(server.account_data[name]["encrypted"][key_id])
        assert decrypt_secret(key, name, stored) == kept.key(usage).seed_base64
    assert (bot.store / keys_file(USER)).stat().st_mode & 0o077 == 0
    assert kept.master.seed_base64 not in (bot.store / keys_file(USER)).read_text()


async def test_a_restart_keeps_the_identity_and_gives_no_new_key(
    bot: Bot, server: FakeHomeserver
) -> None:
    await bot.start()
    master = master_of(server)
    state = await bot.start()
    assert state == IdentityState(True, True, True, master)
    assert len(server.uploads) == 1
    assert len(bot.handed_out) == 1


async def test_a_new_device_is_signed_by_the_identity_it_already_has(
    bot: Bot, server: FakeHomeserver
) -> None:
    await bot.start()
    server.add_device("DEVICE2")
    state = await bot.start("DEVICE2")
    assert state.device_signed and bot.signed("DEVICE2")
    assert len(server.uploads) == 1


async def test_a_lost_store_is_restored_from_the_recovery_key(
    bot: Bot, server: FakeHomeserver
) -> None:
    await bot.start()
    master = master_of(server)
    bot.lose_store()
    server.add_device("DEVICE2")
    state = await bot.start("DEVICE2", recovery_key=bot.handed_out[0])
    assert state == IdentityState(True, True, True, master)
    assert bot.signed("DEVICE2")
    assert len(server.uploads) == 1
    assert load_keys(bot.store, USER, PICKLE) is not None


async def test_a_lost_store_without_the_recovery_key_is_reported_not_reset(
    bot: Bot, server: FakeHomeserver
) -> None:
    await bot.start()
    master = master_of(server)
    bot.lose_store()
    server.add_device("DEVICE2")
    state = await bot.start("DEVICE2")
    assert (state.published, state.device_signed, state.master_key) == (True, False, master)
    assert state.problem is not None
    assert "matrix.recovery_key" in state.problem
    assert "ganglion matrix reset-identity" in state.problem
    assert master_of(server) == master and not bot.signed("DEVICE2")


async def test_a_wrong_recovery_key_is_named_as_such(bot: Bot, server: FakeHomeserver) -> None:
    await bot.start()
    bot.lose_store()
    state = await bot.start(recovery_key=encode_recovery_key(new_key()))
    assert state.problem is not None
    assert "is not the recovery key of this account" in state.problem
    typo = await bot.start(recovery_key=bot.handed_out[0][:-1] + "x")
    assert typo.problem is not None and "recovery key" in typo.problem


async def test_a_server_that_asks_for_the_password_gets_it_when_it_is_configured(
    bot: Bot, server: FakeHomeserver
) -> None:
    server.ask_password = True
    without = await bot.start()
    assert without.problem is not None and "set matrix.password" in without.problem
    assert master_of(server) is None
    wrong = await bot.start(password="not it")
    assert wrong.problem is not None and "refused matrix.password" in wrong.problem
    state = await bot.start(password=PASSWORD)
    assert state.problem is None and state.device_signed
    # The keys made at the first attempt were kept, and are the ones published.
    kept = load_keys(bot.store, USER, PICKLE)
    assert kept is not None and kept.master.public_key == master_of(server)


async def test_a_start_cut_off_before_secret_storage_stores_the_keys_next_time(
    bot: Bot, server: FakeHomeserver
) -> None:
    await bot.start()
    server.account_data.clear()
    state = await bot.start()
    assert state.recovery_key_set
    assert len(bot.handed_out) == 2
    assert "m.secret_storage.default_key" in server.account_data


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_recovery_key_goes_to_an_owner_only_file_without_a_terminal_never_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    recovery = encode_recovery_key(new_key())
    with caplog.at_level(logging.INFO):
        hand_out_recovery_key(recovery, USER, tmp_path)
    path = tmp_path / MATRIX_RECOVERY_KEY_FILE
    assert path.read_text().strip() == recovery
    assert path.stat().st_mode & 0o077 == 0
    assert str(path) in caplog.text and recovery not in caplog.text


def test_the_recovery_key_is_shown_on_a_terminal_and_written_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    recovery = encode_recovery_key(new_key())
    with caplog.at_level(logging.INFO):
        hand_out_recovery_key(recovery, USER, tmp_path)
    assert recovery in terminal.getvalue()
    assert not (tmp_path / MATRIX_RECOVERY_KEY_FILE).exists()
    assert recovery not in caplog.text
