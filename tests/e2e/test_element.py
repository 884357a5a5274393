"""What the owner sees of the bot in Element (issue 27): a real `ganglion run` against the
session's real Synapse, with the owner on Element's own client stack (matrix-js-sdk and
its Rust crypto, in Node: tests/support/element.py) and the scripted fake model answering
`echo: <what the owner said>`.

The verdicts are the SDK's, as Element shows them: `getDeviceVerificationStatus` for the
bot's device, `getEncryptionInfoForEvent` for the shield beside each reply, and whether
a message decrypts at all once "exclude insecure devices" (MSC4153) is on.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.people import PASSWORD, Timings
from tests.e2e.test_matrix import REGENERATE, Echo, bot_id, echo, user_texts
from tests.e2e.test_matrix_identity import (
    RECOVERY_FILE,
    change_matrix_settings,
    matrix_settings,
    new_login,
)
from tests.support.element import ElementMessage, ElementOwner, Shield
from tests.support.fakellm import FakeLLM
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.synapse import Synapse

__all__ = ["echo"]  # the fixture, shared with test_matrix

pytestmark = pytest.mark.slow


@asynccontextmanager
async def open_bot(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, owner: ElementOwner, **matrix: Any
) -> AsyncIterator[LiveDaemon]:
    """`ganglion run` with Matrix on, as a fresh bot account that only the owner may use."""
    account = await synapse.register(f"bot-{secrets.token_hex(4)}", PASSWORD)
    settings = {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "access_token": account.access_token,
        "device_id": account.device_id,
        "allowed_users": [owner.user_id],
        **matrix,
    }
    async with open_live_daemon(
        tmp_path, fake_llm.base_url, matrix=settings, shutdown={"grace_seconds": 2}
    ) as live:
        live.bot_id = account.user_id  # type: ignore[attr-defined]
        yield live


async def room_with_bot(owner: ElementOwner, live: LiveDaemon) -> str:
    """An encrypted room the owner made and invited the bot into, once the bot is in."""
    room_id = await owner.create_room(invite=[bot_id(live)])
    await owner.wait_for_membership(room_id, bot_id(live))
    return room_id


async def say(owner: ElementOwner, live: LiveDaemon, room_id: str, text: str) -> ElementMessage:
    """Send `text` and return the bot's next message in the room, decrypted."""
    await owner.send_text(room_id, text)
    return await owner.wait_for_message(room_id, bot_id(live))


async def check_answered(owner: ElementOwner, live: LiveDaemon, room_id: str, text: str) -> None:
    """The owner's `text` reaches the bot, and its encrypted answer reaches the owner
    with no red shield beside it."""
    reply = await say(owner, live, room_id, text)
    assert (reply.body, reply.encrypted) == (f"echo: {text}", True)
    assert reply.device_id == matrix_settings(live)["device_id"]
    shield = await owner.shield(room_id, reply.event_id)
    assert shield.colour != "RED", shield


async def check_device_signed(owner: ElementOwner, live: LiveDaemon) -> None:
    status = await owner.device_status(
        bot_id(live), matrix_settings(live)["device_id"], signed_by_owner=True
    )
    assert status.signed_by_owner


async def test_element_sees_the_bots_device_signed_by_its_owner_and_no_red_shield(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    echo: Echo,
    element_owner: ElementOwner,
    timings: Timings,
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        await check_device_signed(element_owner, live)
        started = time.perf_counter()
        await check_answered(element_owner, live, room_id, "hello")
        timings.record("Element owner round trip (first)", time.perf_counter() - started)
        master = await element_owner.master_key(bot_id(live))
        assert master is not None

        assert await live.stop() == 0
        await live.start()
        await check_answered(element_owner, live, room_id, "after the restart")
        await check_device_signed(element_owner, live)
        assert await element_owner.master_key(bot_id(live)) == master
        assert await element_owner.undecryptable(room_id) == []


async def test_with_exclude_insecure_devices_on_messages_flow_both_ways(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    echo: Echo,
    element_owner: ElementOwner,
    timings: Timings,
) -> None:
    await element_owner.set_isolation_mode("onlySigned")
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        for i in range(3):
            started = time.perf_counter()
            await check_answered(element_owner, live, room_id, f"ping {i}")
            timings.record(
                "Element owner round trip (insecure excluded)", time.perf_counter() - started
            )
        assert await element_owner.undecryptable(room_id) == []
    said = [str(r["messages"][-1]["content"]) for r in fake_llm.requests]
    assert said == ["ping 0", "ping 1", "ping 2"]  # the bot read the owner every time


async def test_a_bot_restored_from_its_recovery_key_is_the_same_signed_bot_to_element(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, element_owner: ElementOwner
) -> None:
    await element_owner.set_isolation_mode("onlySigned")
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        await check_answered(element_owner, live, room_id, "before")
        master = await element_owner.master_key(bot_id(live))
        old_device = matrix_settings(live)["device_id"]
        recovery_key = (live.data_dir / RECOVERY_FILE).read_text().strip()
        assert await live.stop() == 0

        # The crypto store is lost; a new login is a new device.
        shutil.rmtree(live.data_dir / "matrix")
        token, device_id = await new_login(synapse, bot_id(live))
        change_matrix_settings(
            live, access_token=token, device_id=device_id, recovery_key=recovery_key
        )
        await live.start()
        await check_device_signed(element_owner, live)
        assert device_id != old_device
        assert await element_owner.master_key(bot_id(live)) == master
        await check_answered(element_owner, live, room_id, "after the restore")
        assert await element_owner.undecryptable(room_id) == []


async def test_a_bot_device_left_unsigned_is_what_element_flags(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, element_owner: ElementOwner
) -> None:
    """The control for the tests above: a bot that lost its store and has no recovery
    key carries on unsigned on a new device, and the SDK says so, as Element would."""
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        await check_answered(element_owner, live, room_id, "signed")
        assert await live.stop() == 0
        shutil.rmtree(live.data_dir / "matrix")
        token, device_id = await new_login(synapse, bot_id(live))
        change_matrix_settings(live, access_token=token, device_id=device_id)
        await live.start()

        status = await element_owner.device_status(bot_id(live), device_id)
        assert not status.signed_by_owner
        reply = await say(element_owner, live, room_id, "unsigned")
        assert (reply.body, reply.device_id) == ("echo: unsigned", device_id)
        assert await element_owner.shield(room_id, reply.event_id) == Shield(
            "RED", "UNSIGNED_DEVICE"
        )

        # With insecure devices excluded, its replies do not decrypt at all. (Nor would
        # the bot get the owner's room keys any more: the owner's message goes first.)
        echo.gates["refused"] = gate = trio.Event()
        await element_owner.send_text(room_id, "refused")
        await fake_llm.wait_for_requests(3)
        await element_owner.set_isolation_mode("onlySigned")
        gate.set()
        refused = await element_owner.wait_for_message(room_id, bot_id(live), undecryptable=True)
        assert refused.decryption_failure == "UNSIGNED_SENDER_DEVICE", refused


async def test_an_edit_and_a_repeat_reaction_from_element_edit_the_reply_in_place(
    tmp_path: Path, synapse: Synapse, fake_llm: FakeLLM, echo: Echo, element_owner: ElementOwner
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, element_owner) as live:
        room_id = await room_with_bot(element_owner, live)
        sent = await element_owner.send_text(room_id, "helo")
        reply = await element_owner.wait_for_message(room_id, bot_id(live))
        await element_owner.send_edit(room_id, sent, "hello")
        edited = await element_owner.wait_for_message(room_id, bot_id(live))
        assert (edited.replaces, edited.new_body) == (reply.event_id, "echo: hello")
        assert edited.encrypted and edited.decryption_failure is None
        assert user_texts(fake_llm) == ["hello"]  # the edited text, once
        asked = len(fake_llm.requests)
        # Element sends reactions in the clear: taken without the device check.
        await element_owner.react(room_id, reply.event_id, REGENERATE)
        again = await element_owner.wait_for_message(room_id, bot_id(live))
        assert (again.replaces, again.new_body, again.encrypted) == (
            reply.event_id,
            "echo: hello",
            True,
        )
        assert len(fake_llm.requests) == asked + 1 and user_texts(fake_llm) == ["hello"]
