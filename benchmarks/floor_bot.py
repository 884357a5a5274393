"""The floor of the Matrix benchmark: a client that answers at once, with no model and no
store, what Synapse's own delivery costs.

Run as its own process (`python benchmarks/floor_bot.py HOMESERVER USER PASSWORD
STORE_DIR OWNER`): it logs in, accepts the owner's invites, and answers every text the
owner sends in an encrypted room with `echo: <text>`, sending what Ganglion sends around
an answer: a read receipt for the message, a typing notice before the answer and its end
after. It prints `ready` once its first sync is done, and runs until it is killed.

matrix-nio on asyncio, as a person's client would be; nothing of Ganglion's. (Two nio
clients with stores cannot share one process: this one is the benchmark's second.)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import nio

LONG_POLL_MS = 30_000


class FloorBot:
    def __init__(self, client: nio.AsyncClient, owner: str) -> None:
        self.client = client
        self.owner = owner
        self.pending: list[tuple[str, Any]] = []
        self.lock = asyncio.Lock()

    async def keys(self) -> None:
        client = self.client
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    def taken(self, response: nio.SyncResponse) -> list[tuple[str, Any]]:
        found = []
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                if isinstance(event, nio.MegolmEvent):
                    self.pending.append((room_id, event))
                elif isinstance(event, nio.RoomMessageText) and event.sender == self.owner:
                    found.append((room_id, event))
        retry, self.pending = self.pending, []
        for room_id, event in retry:
            try:
                decrypted = self.client.decrypt_event(event)
            except nio.EncryptionError:
                self.pending.append((room_id, event))
                continue
            if isinstance(decrypted, nio.RoomMessageText) and decrypted.sender == self.owner:
                found.append((room_id, decrypted))
        return found

    async def answer(self, room_id: str, event: Any) -> None:
        client = self.client
        await client.room_read_markers(room_id, event.event_id, event.event_id)
        await client.room_typing(room_id, True, timeout=30_000)
        async with self.lock:
            if client.should_query_keys:
                await client.keys_query()
            await client.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": f"echo: {event.body}"},
                ignore_unverified_devices=True,
            )
        await client.room_typing(room_id, False)

    async def run(self) -> None:
        client = self.client
        first = True
        while True:
            response = await client.sync(timeout=0 if first else LONG_POLL_MS, full_state=first)
            if not isinstance(response, nio.SyncResponse):
                await asyncio.sleep(0.2)
                continue
            for room_id in list(client.invited_rooms):
                await client.join(room_id)
            async with self.lock:
                await self.keys()
            messages = self.taken(response)
            if first:
                print("ready", flush=True)
                first = False
            await asyncio.gather(*(self.answer(room_id, event) for room_id, event in messages))


async def main(homeserver: str, user_id: str, password: str, store: str, owner: str) -> None:
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(
        homeserver, user_id, device_id="FLOORBOT", store_path=store, config=config
    )
    response = await client.login(password, device_name="floor")
    if not isinstance(response, nio.LoginResponse):
        raise SystemExit(f"floor bot: login failed: {response}")
    try:
        await FloorBot(client, owner).run()
    finally:
        await client.close()


if __name__ == "__main__":
    Path(sys.argv[4]).mkdir(parents=True, exist_ok=True)
    asyncio.run(main(*sys.argv[1:6]))
