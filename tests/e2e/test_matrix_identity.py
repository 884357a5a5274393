"""The bot's cross-signing identity against the real Synapse (issue 27, items 1 and 2):
a real `ganglion run` publishes an identity and signs its device before it joins
anything, keeps it across a restart, reports (and keeps answering) when it lost its
keys, and restores the same identity on a new device from its recovery key.

What the owner's client sees is read the way any client reads it: `/keys/query` as the
owner, with the signatures checked here (`ganglion.matrix.signing`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from ganglion.matrix.signing import published_key, verify_json
from tests.e2e.people import PASSWORD
from tests.e2e.test_matrix import Echo, bot_id, echo, open_bot, room_with_bot, say
from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon
from tests.support.matrix_human import MatrixHuman
from tests.support.synapse import Synapse

__all__ = ["echo"]  # the fixture, shared with test_matrix

pytestmark = pytest.mark.slow

HTTP_TIMEOUT = 30.0
RECOVERY_FILE = "matrix_recovery_key"


async def keys_seen_by(owner: MatrixHuman, synapse: Synapse, user_id: str) -> dict[str, Any]:
    """`/keys/query` for `user_id`, as the owner's device asks it."""
    with trio.fail_after(HTTP_TIMEOUT):
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as http:
            reply = await http.post(
                f"{synapse.base_url}/_matrix/client/v3/keys/query",
                json={"device_keys": {user_id: []}},
                headers={"Authorization": f"Bearer {owner.access_token}"},
            )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def matrix_settings(live: LiveDaemon) -> dict[str, Any]:
    config = yaml.safe_load(live.config_path.read_text())
    settings: dict[str, Any] = config["matrix"]
    return settings


def change_matrix_settings(live: LiveDaemon, **changes: Any) -> None:
    config = yaml.safe_load(live.config_path.read_text())
    config["matrix"].update(changes)
    live.config_path.write_text(yaml.safe_dump(config))


async def new_login(synapse: Synapse, user_id: str) -> tuple[str, str]:
    """A new device of `user_id`: its access token and device id."""
    with trio.fail_after(HTTP_TIMEOUT):
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as http:
            reply = await http.post(
                f"{synapse.base_url}/_matrix/client/v3/login",
                json={
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user_id},
                    "password": PASSWORD,
                },
            )
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"], reply.json()["device_id"]


def check_identity(keys: dict[str, Any], user_id: str, device_id: str) -> str:
    """Assert the owner sees a complete identity of `user_id` with unpadded ids and
    `device_id` signed by it; return the master key."""
    master = published_key(keys["master_keys"][user_id])
    self_signing = published_key(keys["self_signing_keys"][user_id])
    assert master is not None and "=" not in master, keys["master_keys"]
    assert self_signing is not None and "=" not in self_signing, keys["self_signing_keys"]
    assert verify_json(keys["self_signing_keys"][user_id], user_id, f"ed25519:{master}", master), (
        "the self-signing key is not signed by the master key"
    )
    device = keys["device_keys"][user_id][device_id]
    assert f"ed25519:{self_signing}" in device["signatures"][user_id], device
    assert verify_json(device, user_id, f"ed25519:{self_signing}", self_signing), device
    return master


def log_of(live: LiveDaemon) -> str:
    return (live.root / "logs" / "ganglion.log").read_text()


async def test_the_bot_publishes_a_cross_signing_identity_signs_its_device_and_keeps_it(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner) as live:
        device_id = matrix_settings(live)["device_id"]
        room_id = await room_with_bot(owner, live)  # it joins once its identity is set up
        master = check_identity(
            await keys_seen_by(owner, synapse, bot_id(live)), bot_id(live), device_id
        )
        assert (await say(owner, live, room_id, "hello")).body == "echo: hello"

        # Handed out once, in an owner-only file (no terminal here), never in the log.
        recovery_file = live.data_dir / RECOVERY_FILE
        recovery_key = recovery_file.read_text().strip()
        assert len(recovery_key.split()) == 12
        assert recovery_file.stat().st_mode & 0o077 == 0
        assert recovery_key not in log_of(live) + live.output()
        assert str(recovery_file) in log_of(live)

        recovery_file.unlink()  # the owner moved it somewhere safe
        assert await live.stop() == 0
        await live.start()
        assert (await say(owner, live, room_id, "again")).body == "echo: again"
        again = check_identity(
            await keys_seen_by(owner, synapse, bot_id(live)), bot_id(live), device_id
        )
        assert again == master
        assert not recovery_file.exists()  # the same identity: no new recovery key


async def test_a_bot_that_lost_its_store_restores_its_identity_from_the_recovery_key(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, owner: MatrixHuman
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner) as live:
        await room_with_bot(owner, live)
        master = check_identity(
            await keys_seen_by(owner, synapse, bot_id(live)),
            bot_id(live),
            matrix_settings(live)["device_id"],
        )
        recovery_key = (live.data_dir / RECOVERY_FILE).read_text().strip()
        assert await live.stop() == 0

        # The store is lost; a new login gives a new device. Without the recovery key the
        # identity is not reset: the bot says what to do, and still answers.
        shutil.rmtree(live.data_dir / "matrix")
        token, device_id = await new_login(synapse, bot_id(live))
        change_matrix_settings(live, access_token=token, device_id=device_id)
        await live.start()
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "unsigned")).body == "echo: unsigned"
        said = [line for line in log_of(live).splitlines() if "reset-identity" in line]
        assert len(said) == 1 and "matrix.recovery_key" in said[0], said
        keys = await keys_seen_by(owner, synapse, bot_id(live))
        assert published_key(keys["master_keys"][bot_id(live)]) == master
        assert not keys["device_keys"][bot_id(live)][device_id]["signatures"][
            bot_id(live)
        ].keys() - {f"ed25519:{device_id}"}
        assert await live.stop() == 0

        # With the recovery key: the same identity, the new device signed by it.
        shutil.rmtree(live.data_dir / "matrix")
        token, device_id = await new_login(synapse, bot_id(live))
        change_matrix_settings(
            live, access_token=token, device_id=device_id, recovery_key=recovery_key
        )
        await live.start()
        room_id = await room_with_bot(owner, live)
        assert (await say(owner, live, room_id, "restored")).body == "echo: restored"
        restored = check_identity(
            await keys_seen_by(owner, synapse, bot_id(live)), bot_id(live), device_id
        )
        assert restored == master
        assert "restored the cross-signing identity" in log_of(live)
