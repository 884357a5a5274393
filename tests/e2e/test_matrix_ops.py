"""Operating the Matrix interface, end to end: a real `ganglion run` against the session's
real Synapse, a real nio client as the owner, and the operator's commands as a user runs
them (`ganglion status`, `ganglion check`, subprocesses) or a Prometheus scrapes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from tests.e2e.people import PASSWORD
from tests.e2e.test_matrix import Echo, bot_id, open_bot, room_with_bot, say
from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.matrix_human import MatrixHuman
from tests.support.process import run_ganglion
from tests.support.synapse import Synapse
from tests.test_status import samples

pytestmark = pytest.mark.slow

WAIT = 60.0
# An encrypted event whose Megolm session the owner never shared: no device can read it.
BOGUS_MEGOLM = {
    "algorithm": "m.megolm.v1.aes-sha2",
    "sender_key": "D4pX1l0wPdvCpQ2Mz8EYXqHRbzEr+T3f4LVjN0dbbQ4",
    "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
    "session_id": "this-session-was-never-shared",
    "device_id": "OWNERPHONE",
}


def matrix_settings(live: LiveDaemon) -> dict[str, Any]:
    settings: dict[str, Any] = yaml.safe_load(live.config_path.read_text())["matrix"]
    return settings


def auth(live: LiveDaemon) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.token}"}


async def matrix_status(http: httpx.AsyncClient, live: LiveDaemon) -> dict[str, Any]:
    reply = await http.get("/api/status", headers=auth(live))
    reply.raise_for_status()
    status: dict[str, Any] = reply.json()["matrix"]
    return status


async def wait_for_state(http: httpx.AsyncClient, live: LiveDaemon, state: str) -> dict[str, Any]:
    """The daemon's Matrix status once it is in `state` (asked every 0.1 s)."""
    with trio.fail_after(WAIT):
        while (found := await matrix_status(http, live))["state"] != state:
            await trio.sleep(0.1)
    return found


async def test_status_and_metrics_show_syncs_errors_and_undecryptable_events(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner: MatrixHuman
) -> None:
    fake_llm.responder = Echo()
    async with (
        open_bot(tmp_path, synapse, fake_llm, owner) as live,
        httpx.AsyncClient(base_url=live.base) as http,
    ):
        token = matrix_settings(live)["access_token"]
        device = matrix_settings(live)["device_id"]
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "hello")).body == "echo: hello"
        before = samples((await http.get("/metrics", headers=auth(live))).text)

        # A message no device of the bot has the keys for, then one it can read: once the
        # second is answered, the sync that carried the first is behind the bot.
        other = await room_with_bot(owner, live)
        await owner.send_raw_event(other, "m.room.encrypted", BOGUS_MEGOLM)
        assert (await say(owner, live, other, "after")).body == "echo: after"
        after = samples((await http.get("/metrics", headers=auth(live))).text)
        printed = await run_ganglion("status", "--config", str(live.config_path), cwd=tmp_path)
        answered = await run_ganglion(
            "status", "--json", "--config", str(live.config_path), cwd=tmp_path
        )

        # The homeserver goes away and comes back: the errors are counted, then cleared.
        await synapse.stop()
        failing = await wait_for_state(http, live, "retrying")
        await synapse.start()
        recovered = await wait_for_state(http, live, "syncing")
        errors = samples((await http.get("/metrics", headers=auth(live))).text)

    out = printed.stdout.decode()
    assert printed.returncode == 0, printed.stderr.decode()
    assert f"\nMatrix {bot_id(live)} on {synapse.base_url}: syncing, last sync " in out
    assert "  2 joined rooms; 2 messages taken; invites 2 accepted, 0 refused" in out
    assert "  sync errors: none; 0 in a row" in out
    assert "  undecryptable events: 1 (0 decrypted once their keys arrived)" in out
    assert f"  encryption: device {device}, ed25519 " in out
    assert "one-time keys on the server" in out
    status = json.loads(answered.stdout)["matrix"]
    assert (status["state"], status["joined_rooms"], status["undecryptable"]) == ("syncing", 2, 1)
    assert 0 <= status["last_sync_age_seconds"] < WAIT
    assert status["e2e"]["device_id"] == device and status["e2e"]["one_time_keys"] > 0

    assert after[("ganglion_matrix_syncs_total", ())] > before[("ganglion_matrix_syncs_total", ())]
    sends = ("ganglion_matrix_requests_total", (("endpoint", "rooms/send"),))
    assert after[sends] > before.get(sends, 0)  # the answer went out
    assert before[("ganglion_matrix_undecryptable_events_total", ())] == 0
    assert after[("ganglion_matrix_undecryptable_events_total", ())] == 1
    assert after[("ganglion_matrix_joined_rooms", ())] == 2
    assert after[("ganglion_matrix_up", ())] == 1
    assert (
        after[("ganglion_matrix_last_sync_timestamp_seconds", ())]
        >= before[("ganglion_matrix_last_sync_timestamp_seconds", ())]
    )
    assert after[("ganglion_matrix_sync_errors_total", (("kind", "unavailable"),))] == 0

    assert failing["consecutive_errors"] >= 1
    assert "cannot reach the homeserver" in failing["last_error"]
    assert recovered["consecutive_errors"] == 0
    assert "cannot reach the homeserver" in recovered["last_error"]  # kept after recovery
    assert errors[("ganglion_matrix_sync_errors_total", (("kind", "unavailable"),))] >= 1
    for shown in (out, answered.stdout.decode(), json.dumps([failing, recovered])):
        assert token not in shown


async def login(synapse: Synapse, user_id: str, device_id: str) -> str:
    """A new login of `user_id` on `device_id`: its access token."""
    with trio.fail_after(WAIT):
        async with httpx.AsyncClient(base_url=synapse.base_url) as http:
            reply = await http.post(
                "/_matrix/client/v3/login",
                json={
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user_id},
                    "password": PASSWORD,
                    "device_id": device_id,
                },
            )
    reply.raise_for_status()
    return str(reply.json()["access_token"])


async def check_store(tmp_path: Path, live: LiveDaemon) -> tuple[int, dict[str, Any]]:
    result = await run_ganglion("check", "--json", "--config", str(live.config_path), cwd=tmp_path)
    report = json.loads(result.stdout)
    [store] = [c for c in report["checks"] if c["what"] == "Matrix crypto store"]
    return result.returncode, store


async def test_check_compares_the_crypto_store_with_the_device_on_the_homeserver(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner: MatrixHuman
) -> None:
    async with open_bot(tmp_path / "bot", synapse, fake_llm, owner) as live:
        await room_with_bot(owner, live)  # connected: its keys are on the homeserver
        assert await live.stop() == 0
    settings = matrix_settings(live)
    store_dir = live.data_dir / "matrix"
    own_store = store_dir / f"{settings['user_id']}_{settings['device_id']}.db"
    code, store = await check_store(tmp_path, live)
    assert (code, store["status"]) == (0, "ok"), store
    assert store["detail"].startswith(f"{own_store} matches device {settings['device_id']}")

    # The same bot logged in on another device, run once, leaves that device's store.
    other = {**settings, "device_id": "OTHERDEVICE"}
    other["access_token"] = await login(synapse, settings["user_id"], "OTHERDEVICE")
    async with (
        open_live_daemon(
            tmp_path / "other", fake_llm.base_url, matrix=other, shutdown={"grace_seconds": 2}
        ) as second,
        httpx.AsyncClient(base_url=second.base) as http,
    ):
        await wait_for_state(http, second, "syncing")  # its keys are on the homeserver
        assert await second.stop() == 0
    swapped = second.data_dir / "matrix" / f"{settings['user_id']}_OTHERDEVICE.db"
    shutil.copyfile(swapped, own_store)

    code, store = await check_store(tmp_path, live)
    assert (code, store["status"]) == (1, "fail")
    assert store["detail"] == (
        f"the crypto store {own_store} belongs to device OTHERDEVICE, but the token is for "
        f"device {settings['device_id']}"
    )
    assert store["fix"] == (
        f"log in again (as device OTHERDEVICE, and set matrix.device_id to it), or remove "
        f"{own_store}"
    )
