"""End-to-end encryption housekeeping, as nio's `AsyncClient.sync_forever` does it.

Between syncs (`after_sync`): send the to-device messages the Olm machine queued (room
keys, key requests, Olm session set-up), upload one-time keys when the server's count
runs low, query the device lists of users whose devices changed, and claim one-time keys
for devices that need a new Olm session.

Before a message goes into an encrypted room (`encrypt`): make sure the room's member
list is complete, query unknown devices, claim Olm sessions that are missing, and share
the room's Megolm session with the members' devices. With a `TrustGate`
(`matrix.verified_devices_only`, the default) each device is first marked in nio's
store as the trust rule decides (verified, or blacklisted), so the session goes only to
the devices the bot would answer, and a device whose verdict changes makes nio start a
new session (a device that loses trust never gets the keys of what follows). Without
one, every device gets it (`ignore_unverified_devices=True`).

All of it runs under one `trio.Lock`: two sends into a room must not share the group
session twice, and a key query must not race the sharing that depends on it.

Undecryptable events: `request_room_key` asks the sender's devices for the missing
Megolm session (once per session); the caller retries decryption after later syncs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import nio
import trio

from ganglion.matrix.gate import TrustGate
from ganglion.matrix.http import Homeserver
from ganglion.matrix.trust import Sender

__all__ = ["KeyKeeper"]

log = logging.getLogger(__name__)


class KeyKeeper:
    """The Olm/Megolm work of one logged-in client."""

    def __init__(self, homeserver: Homeserver, gate: TrustGate | None = None) -> None:
        self._homeserver = homeserver
        self._gate = gate
        self._lock = trio.Lock()
        self._requested_sessions: set[str] = set()

    @property
    def _client(self) -> Any:
        return self._homeserver.client

    @property
    def _token(self) -> str:
        return str(self._client.access_token)

    async def upload_keys(self) -> None:
        """Upload the device keys and one-time keys if the server needs them."""
        async with self._lock:
            await self._upload_keys()

    async def after_sync(self) -> None:
        """The key work a sync calls for (see the module docstring)."""
        async with self._lock:
            await self._send_to_device()
            await self._upload_keys()
            await self._query_keys()
            client = self._client
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                await self._homeserver.request(
                    nio.KeysClaimResponse, nio.Api.keys_claim(self._token, users)
                )
            await self._send_to_device()

    async def encrypt(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        reader: tuple[str, str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """`(event_type, content)` encrypted for the room's devices, sharing the room's
        Megolm session first if it needs to be. `reader` (user, device id) is a device
        the gate refused that must read this one event all the same (the notice about
        it): it gets a session of its own, dropped once this event is encrypted, so it
        can read nothing else."""
        async with self._lock:
            client = self._client
            room = client.rooms[room_id]
            if not room.members_synced:
                await self._homeserver.request(
                    nio.JoinedMembersResponse,
                    nio.Api.joined_members(self._token, room_id),
                    room_id,
                )
            await self._query_keys()
            await self._apply_trust(room_id, reader)
            if client.olm.should_share_group_session(room_id):
                await self._share_group_session(room_id)
            encrypted_type, encrypted = client.encrypt(room_id, event_type, content)
            if reader is not None:
                client.invalidate_outbound_session(room_id)
            return str(encrypted_type), dict(encrypted)

    async def request_room_key(self, event: Any) -> bool:
        """Ask for the Megolm session of an undecryptable `event`: the device that sent
        it (its client shares the session again with a device it meant to share it with)
        and the bot's own other devices; False when it was asked for already."""
        session_id = event.session_id
        if session_id in self._requested_sessions:
            return False
        self._requested_sessions.add(session_id)
        client = self._client
        message = event.as_key_request(client.user_id, client.device_id)
        recipients = dict(message.as_dict()["messages"])
        if event.sender != client.user_id and event.device_id:
            to_sender = event.as_key_request(
                event.sender, client.device_id, device_id=event.device_id
            )
            recipients.update(to_sender.as_dict()["messages"])
        async with self._lock:
            await self._homeserver.request(
                nio.RoomKeyRequestResponse,
                nio.Api.to_device(
                    self._token, message.type, {"messages": recipients}, uuid.uuid4()
                ),
                message.request_id,
                session_id,
                event.room_id,
                event.algorithm,
            )
        return True

    async def _upload_keys(self) -> None:
        client = self._client
        if client.should_upload_keys:
            keys = client.olm.share_keys()
            await self._homeserver.request(
                nio.KeysUploadResponse, nio.Api.keys_upload(self._token, keys)
            )

    async def _query_keys(self) -> None:
        client = self._client
        if client.should_query_keys:
            await self._homeserver.request(
                nio.KeysQueryResponse,
                nio.Api.keys_query(self._token, client.users_for_key_query),
            )

    async def _send_to_device(self) -> None:
        for message in list(self._client.outgoing_to_device_messages):
            await self._homeserver.request(
                nio.ToDeviceResponse,
                nio.Api.to_device(self._token, message.type, message.as_dict(), uuid.uuid4()),
                message,
            )

    async def _apply_trust(self, room_id: str, reader: tuple[str, str] | None) -> None:
        """Mark each member device in nio's store as the gate decides. nio's own
        verify/blacklist calls drop the room's shared session when a mark changes; a
        mark is set only when it changes (nio writes its trust file on every call)."""
        if self._gate is None:
            return
        client = self._client
        devices = [
            device
            for user in client.rooms[room_id].users
            for device in client.device_store.active_user_devices(user)
            if not (user == client.user_id and device.id == client.device_id)
        ]
        senders = [Sender(d.user_id, d.curve25519, d.ed25519, d.id) for d in devices]
        olm = client.olm
        for device, verdict in zip(devices, await self._gate.verdicts(senders), strict=True):
            if olm.is_device_ignored(device):
                client.unignore_device(device)
            if verdict.trusted or (device.user_id, device.id) == reader:
                if olm.is_device_blacklisted(device):
                    client.unblacklist_device(device)
                if not olm.is_device_verified(device):
                    client.verify_device(device)
            else:
                if olm.is_device_verified(device):
                    client.unverify_device(device)
                if not olm.is_device_blacklisted(device):
                    client.blacklist_device(device)

    async def _share_group_session(self, room_id: str) -> None:
        client = self._client
        missing = client.get_missing_sessions(room_id)
        if missing:
            await self._homeserver.request(
                nio.KeysClaimResponse, nio.Api.keys_claim(self._token, missing), room_id
            )
        users = list(client.rooms[room_id].users)
        for sharing_with, to_device in client.olm.share_group_session_parallel(
            room_id, users, ignore_unverified_devices=self._gate is None
        ):
            await self._homeserver.request(
                nio.ShareGroupSessionResponse,
                nio.Api.to_device(self._token, "m.room.encrypted", to_device, uuid.uuid4()),
                room_id,
                sharing_with,
            )
        # With nobody to share with, the Olm machine never marks the session shared.
        client.olm.outbound_group_sessions[room_id].shared = True
