"""The test infrastructure itself, not Ganglion: a real Synapse and real nio clients
exchange encrypted messages, survive a homeserver restart and keep strangers out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.people import PASSWORD, Timings
from tests.support.matrix_human import MatrixHuman, MatrixRequestError, open_human
from tests.support.synapse import Synapse

pytestmark = pytest.mark.slow

ROUND_TRIPS = 10


async def open_encrypted_room(owner: MatrixHuman, guest: MatrixHuman) -> str:
    room_id = await owner.create_room(encrypted=True, invite=[guest.user_id])
    assert await guest.wait_for_invite() == room_id
    await guest.join(room_id)
    await owner.wait_for_membership(room_id, guest.user_id)
    return room_id


async def test_two_people_exchange_encrypted_messages_both_ways(
    owner: MatrixHuman, stranger: MatrixHuman, timings: Timings
) -> None:
    room_id = await open_encrypted_room(owner, stranger)
    for i in range(ROUND_TRIPS):
        started = time.perf_counter()
        await owner.send_text(room_id, f"ping {i}", formatted_body=f"<b>ping</b> {i}")
        ping = await stranger.wait_for_message(room_id, owner.user_id)
        await stranger.send_text(room_id, f"pong {i}")
        pong = await owner.wait_for_message(room_id, stranger.user_id)
        timings.record(
            "encrypted round trip (send, decrypt, reply, decrypt)", time.perf_counter() - started
        )

        assert (ping.body, ping.formatted_body, ping.encrypted) == (
            f"ping {i}",
            f"<b>ping</b> {i}",
            True,
        )
        assert (pong.body, pong.formatted_body, pong.encrypted) == (f"pong {i}", None, True)
    assert await owner.undecrypted_count(room_id) == 0
    assert await stranger.undecrypted_count(room_id) == 0


async def test_an_edit_arrives_decrypted_with_its_relation(
    owner: MatrixHuman, stranger: MatrixHuman
) -> None:
    room_id = await open_encrypted_room(owner, stranger)
    original = await owner.send_text(room_id, "helo")
    edit = {
        "msgtype": "m.text",
        "body": "* hello",
        "m.new_content": {"msgtype": "m.text", "body": "hello"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }
    await owner.send_event(room_id, edit)

    first = await stranger.wait_for_message(room_id, owner.user_id)
    second = await stranger.wait_for_message(room_id, owner.user_id)
    assert (first.event_id, first.body) == (original, "helo")
    assert second.encrypted
    assert second.content["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}


async def test_plain_room_carries_plain_text_typing_and_read_receipts(
    owner: MatrixHuman, stranger: MatrixHuman
) -> None:
    room_id = await owner.create_room(encrypted=False, invite=[stranger.user_id])
    await stranger.join(room_id)
    await owner.wait_for_membership(room_id, stranger.user_id)

    await stranger.set_typing(room_id)
    await owner.wait_for_typing(room_id, stranger.user_id)
    event_id = await owner.send_text(room_id, "in the clear")
    message = await stranger.wait_for_message(room_id, owner.user_id)
    assert (message.event_id, message.body, message.encrypted) == (event_id, "in the clear", False)

    await stranger.set_typing(room_id, typing=False)
    await stranger.mark_read(room_id, event_id)
    await owner.wait_for_typing(room_id, stranger.user_id, typing=False)
    await owner.wait_for_read_receipt(room_id, stranger.user_id, event_id)


async def test_restarted_synapse_keeps_users_rooms_and_encrypted_conversation(
    synapse: Synapse,
    owner: MatrixHuman,
    stranger: MatrixHuman,
    tmp_path: Path,
    timings: Timings,
) -> None:
    room_id = await open_encrypted_room(owner, stranger)
    await owner.send_text(room_id, "before")
    assert (await stranger.wait_for_message(room_id, owner.user_id)).body == "before"

    with timings.measure("Synapse stop (SIGTERM)"):
        await synapse.stop()
    with timings.measure("Synapse start (existing database)"):
        await synapse.start()

    # Both clients ride over the restart and the Megolm session still works.
    await owner.send_text(room_id, "after")
    after = await stranger.wait_for_message(room_id, owner.user_id)
    assert (after.body, after.encrypted) == ("after", True)
    await stranger.send_text(room_id, "still here")
    assert (await owner.wait_for_message(room_id, stranger.user_id)).body == "still here"

    # The account survives too: the owner logs in on another device and finds the room.
    async with open_human(
        synapse.base_url,
        owner.user_id,
        PASSWORD,
        device_id="OWNERLAPTOP",
        store_dir=tmp_path / "laptop",
    ) as laptop:
        assert room_id in await laptop.joined_rooms()


async def test_a_stranger_who_was_not_invited_cannot_join_or_read_the_room(
    owner: MatrixHuman, stranger: MatrixHuman
) -> None:
    room_id = await owner.create_room(encrypted=False)
    await owner.send_text(room_id, "for my eyes only")

    with pytest.raises(MatrixRequestError) as refused:
        await stranger.join(room_id)
    assert refused.value.errcode == "M_FORBIDDEN"
    with pytest.raises(MatrixRequestError) as hidden:
        await stranger.read_history(room_id)
    assert hidden.value.errcode == "M_FORBIDDEN"
    assert room_id not in await stranger.joined_rooms()
    assert await stranger.messages(room_id) == []
