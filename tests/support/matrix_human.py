"""A person on Matrix, for tests: a real matrix-nio client (E2E on) that logs in with a
password, creates rooms, invites, joins, sends and waits for what others send.

    async with open_human(synapse.base_url, account.user_id, password,
                          device_id="OWNERPHONE", store_dir=tmp_path / "owner") as owner:
        room_id = await owner.create_room(encrypted=True, invite=[bot_id])
        await owner.wait_for_membership(room_id, bot_id)
        await owner.send_text(room_id, "hello")
        reply = await owner.wait_for_message(room_id, sender=bot_id)
        assert reply.encrypted and reply.body == "..."

Why nio's asyncio `AsyncClient` on a thread, and not the sans-IO `nio.Client` with httpx
on trio (the way the daemon talks to Matrix): the human is the reference the daemon is
judged against, so it should run the code path real nio clients run, not a second copy
of the daemon's approach, whose mistakes it would share and so hide. `AsyncClient` does
the Matrix work (retries, 429 back-off, key upload, query and claim, group session
sharing, decryption); this module adds a sync loop, a record of what arrived, and waits.
Trio awaits each call through `_AsyncioThread.run`, which wakes the trio task from the
asyncio thread and cancels the asyncio task when the trio caller is cancelled: no
trio-asyncio, no worker thread blocked per call.

Rules that keep it sound:

1. Every human of the process runs on ONE asyncio thread, started on first use and
   living as long as the process. nio's SQLite crypto store binds its peewee models to
   a database globally (`bind_ctx`) around each call, so two nio clients with stores
   must never run in two threads at once (seen here: "no such table" from the other
   client's database). The same holds for a Ganglion daemon with Matrix on: run it as
   its own process (`ganglion run`), never in-process beside these humans.
2. A human's client state is only touched on that thread; trio sends coroutines there
   and gets results back (frozen `ReceivedMessage`s, plain strings).
3. Every public call has a deadline (`wait_limit`, 30 s unless given to `open_human`);
   a wait that runs out raises `HumanTimeout` saying what the human had seen by then.
4. One sync at a time, then the key work it calls for (to-device, upload, query,
   claim), under one lock shared with sends, so key sharing never races itself.
5. nio's `*Error` responses become `MatrixRequestError` (with the Matrix errcode).

Cross-signing: nio has none, so `publish_identity` and `sign_device` do it the way the
bot does (`ganglion.matrix.signing`, driven from here over plain HTTP): the tests give
their people an identity and sign their devices, as Element would, and leave a device
unsigned only where that is what a test is about.

Resource handling: `open_human` logs in, uploads the device keys and does a first sync
before it yields; on exit it stops the sync loop and closes the HTTP session. The
encryption store lives in `store_dir`: reopening a human with the same device id and
store continues the same device (a lost store needs a new device id).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

import httpx
import nio
import nio.crypto.attachments as attachments
import trio

from ganglion.matrix.signing import CrossSigningKeys, device_signing_upload, signatures_upload

__all__ = [
    "HumanTimeout",
    "MatrixHuman",
    "MatrixRequestError",
    "ReceivedMessage",
    "open_human",
]

T = TypeVar("T")

WAIT_TIMEOUT: Final = 30.0
LONG_POLL_MS: Final = 30_000
SYNC_ERROR_BACKOFF: Final = 0.2
MEGOLM: Final = "m.megolm.v1.aes-sha2"
_TEXT_EVENTS: Final = (
    nio.RoomMessageText,
    nio.RoomMessageNotice,
    nio.RoomMessageEmote,
    # Pictures and files (the bot's `send_file`), plain and encrypted attachments.
    nio.RoomMessageMedia,
    nio.RoomEncryptedMedia,
)

Membership = Literal["join", "invite", "absent"]


class MatrixRequestError(Exception):
    """The homeserver refused a request; `errcode` is Matrix's (`M_FORBIDDEN`, ...)."""

    def __init__(self, what: str, errcode: str | None, message: str) -> None:
        super().__init__(f"{what}: {errcode or 'error'}: {message}")
        self.errcode = errcode


class HumanTimeout(AssertionError):
    """A wait ran out of time; the message says what the human had seen by then."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A text, notice or emote event as the human's client shows it (decrypted)."""

    room_id: str
    event_id: str
    sender: str
    body: str
    msgtype: str
    formatted_body: str | None
    encrypted: bool
    content: dict[str, Any] = field(compare=False, repr=False)


def _message(room_id: str, event: Any) -> ReceivedMessage:
    content: dict[str, Any] = event.source.get("content", {})
    return ReceivedMessage(
        room_id=room_id,
        event_id=event.event_id,
        sender=event.sender,
        body=event.body,
        msgtype=content.get("msgtype", ""),
        formatted_body=content.get("formatted_body"),
        encrypted=bool(event.decrypted),
        content=content,
    )


def _check(response: Any, expected: type, what: str) -> Any:
    if isinstance(response, expected):
        return response
    if isinstance(response, nio.ErrorResponse):
        raise MatrixRequestError(what, response.status_code, response.message)
    raise MatrixRequestError(what, None, f"unexpected response {response!r}")


class _AsyncioThread:
    """An asyncio event loop on a daemon thread, awaitable from trio."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="matrix-humans", daemon=True).start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the asyncio loop and return its result to trio.

        If the trio caller is cancelled, the asyncio task is cancelled too (without
        waiting for it to finish unwinding).
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            future.cancel()
        return future.result()


@functools.cache
def _humans_thread() -> _AsyncioThread:
    """The one asyncio thread of the process, shared by every human (see rule 1)."""
    return _AsyncioThread()


class _Session:
    """The asyncio side: one logged-in `AsyncClient`, its sync loop and what it saw."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.changed = asyncio.Condition()
        self.keys_lock = asyncio.Lock()
        self.messages: defaultdict[str, list[ReceivedMessage]] = defaultdict(list)
        self.undecrypted: defaultdict[str, list[Any]] = defaultdict(list)
        self.taken: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.errors: list[str] = []
        self.redacted: defaultdict[str, set[str]] = defaultdict(set)  # room -> event ids
        # Room keys kept from a device (`send_withholding_key`): (room, device) -> m.room_key
        self.withheld: dict[tuple[str, str], dict[str, Any]] = {}
        self._seen: set[str] = set()
        self._sync_task: asyncio.Task[None] | None = None

    @classmethod
    async def login(
        cls, homeserver: str, user_id: str, password: str, device_id: str, store_dir: Path
    ) -> _Session:
        store_dir.mkdir(parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=True,
            pickle_key=f"ganglion-tests:{user_id}:{device_id}",
            max_timeout_retry_wait_time=0.5,  # keeps up with a homeserver that restarts
        )
        client = nio.AsyncClient(
            homeserver, user_id, device_id=device_id, store_path=str(store_dir), config=config
        )
        try:
            _check(await client.login(password, device_name=device_id), nio.LoginResponse, "login")
            if client.should_upload_keys:
                _check(await client.keys_upload(), nio.KeysUploadResponse, "keys upload")
            session = cls(client)
            await session.sync_once(timeout_ms=0, full_state=True)
        except BaseException:
            await client.close()
            raise
        session._sync_task = asyncio.create_task(session._sync_forever())
        return session

    async def aclose(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        await self.client.close()

    async def _sync_forever(self) -> None:
        try:
            while True:
                await self.sync_once(timeout_ms=LONG_POLL_MS)
        finally:
            async with self.changed:
                self.changed.notify_all()

    async def sync_once(self, *, timeout_ms: int, full_state: bool = False) -> None:
        response = await self.client.sync(timeout=timeout_ms, full_state=full_state)
        if isinstance(response, nio.SyncResponse):
            self._record(response)
        else:
            self.errors.append(f"sync: {response}")
            await asyncio.sleep(SYNC_ERROR_BACKOFF)
        async with self.keys_lock:
            await self._do_key_work()
        self._retry_undecrypted()
        async with self.changed:
            self.changed.notify_all()

    async def _do_key_work(self) -> None:
        client = self.client
        responses = [await client.send_to_device_messages()]
        if client.should_upload_keys:
            responses.append(await client.keys_upload())
        if client.should_query_keys:
            responses.append(await client.keys_query())
        if client.should_claim_keys:
            responses.append(await client.keys_claim(client.get_users_for_key_claiming()))
        for response in responses:
            if isinstance(response, nio.ErrorResponse):
                self.errors.append(f"keys: {response}")

    def _record(self, response: Any) -> None:
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                event_id = getattr(event, "event_id", None)
                if event_id is None or event_id in self._seen:
                    continue
                self._seen.add(event_id)
                if isinstance(event, nio.MegolmEvent):
                    self.undecrypted[room_id].append(event)
                elif isinstance(event, nio.RedactionEvent):
                    self.redacted[room_id].add(event.redacts)
                elif isinstance(event, _TEXT_EVENTS):
                    self.messages[room_id].append(_message(room_id, event))

    def _retry_undecrypted(self) -> None:
        """Room keys can arrive after the messages they unlock."""
        for room_id, events in self.undecrypted.items():
            pending = []
            for event in events:
                try:
                    decrypted = self.client.decrypt_event(event)
                except nio.EncryptionError:
                    pending.append(event)
                    continue
                if isinstance(decrypted, _TEXT_EVENTS):
                    self.messages[room_id].append(_message(room_id, decrypted))
            events[:] = pending

    async def wait_until(self, found: Callable[[], T | None]) -> T:
        """Wait, sync after sync, until `found()` returns something other than None."""
        async with self.changed:
            while (result := found()) is None:
                if self._sync_task is not None and self._sync_task.done():
                    self._sync_task.result()
                    raise RuntimeError("the sync loop stopped")
                await self.changed.wait()
            return result

    def membership(self, room_id: str, user_id: str) -> Membership:
        room = self.client.rooms.get(room_id)
        if room is None or user_id not in room.users:
            return "absent"
        return "invite" if user_id in room.invited_users else "join"

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        await self.wait_until(lambda: self.client.rooms.get(room_id))
        async with self.keys_lock:
            if self.client.rooms[room_id].encrypted and self.client.should_query_keys:
                _check(await self.client.keys_query(), nio.KeysQueryResponse, "keys query")
            response = await self.client.room_send(
                room_id, event_type, content, ignore_unverified_devices=True
            )
        sent = _check(response, nio.RoomSendResponse, f"send to {room_id}")
        return str(sent.event_id)

    async def send_related(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send an event with an `m.relates_to`, encrypted when the room is (as Element
        does, reactions included, which nio sends plain) with the relation in the clear."""
        await self.wait_until(lambda: self.client.rooms.get(room_id))
        client = self.client
        async with self.keys_lock:
            if client.rooms[room_id].encrypted:
                if not client.rooms[room_id].members_synced:
                    members = await client.joined_members(room_id)
                    _check(members, nio.JoinedMembersResponse, "joined members")
                if client.should_query_keys:
                    _check(await client.keys_query(), nio.KeysQueryResponse, "keys query")
                if client.olm.should_share_group_session(room_id):
                    await client.share_group_session(room_id, ignore_unverified_devices=True)
                _, encrypted = client.encrypt(room_id, event_type, content)
                event_type = "m.room.encrypted"
                content = {**encrypted, "m.relates_to": content["m.relates_to"]}
            method, path, data = nio.Api.room_send(
                client.access_token, room_id, event_type, content, secrets.token_hex(8)
            )
            response = await client._send(nio.RoomSendResponse, method, path, data, (room_id,))
        sent = _check(response, nio.RoomSendResponse, f"send to {room_id}")
        return str(sent.event_id)

    async def send_withholding_key(
        self, room_id: str, content: dict[str, Any], device: tuple[str, str]
    ) -> tuple[str, str]:
        """Send `content` in a new Megolm session, shared with every device of the room
        but `device` (user id, device id); keep that session's key, at its first index,
        for `send_withheld_key`. Returns the event id and the session id."""
        await self.wait_until(lambda: self.client.rooms.get(room_id))
        client = self.client
        async with self.keys_lock:
            if client.should_query_keys:
                _check(await client.keys_query(), nio.KeysQueryResponse, "keys query")
            kept = client.olm.device_store[device[0]][device[1]]
            client.olm.create_outbound_group_session(room_id)  # replaces the room's session
            session = client.olm.outbound_group_sessions[room_id]
            self.withheld[room_id, device[1]] = {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": session.id,
                "session_key": session.session_key,
            }
            client.blacklist_device(kept)  # sharing skips it
            try:
                response = await client.room_send(
                    room_id, "m.room.message", content, ignore_unverified_devices=True
                )
            finally:
                client.unblacklist_device(kept)
        sent = _check(response, nio.RoomSendResponse, f"send to {room_id}")
        return str(sent.event_id), str(session.id)

    async def send_withheld_key(self, room_id: str, device: tuple[str, str]) -> None:
        """Send `device` the room key `send_withholding_key` kept from it, as an
        `m.room_key` over the Olm session this device has with it."""
        client = self.client
        async with self.keys_lock:
            key = self.withheld.pop((room_id, device[1]))
            recipient = client.olm.device_store[device[0]][device[1]]
            olm_session = client.olm.session_store.get(recipient.curve25519)
            if olm_session is None:
                raise RuntimeError(f"no Olm session with {device}: nothing was shared with it")
            payload = client.olm._olm_encrypt(olm_session, recipient, "m.room_key", key)
            message = nio.ToDeviceMessage("m.room.encrypted", device[0], device[1], payload)
            response = await client.to_device(message)
        _check(response, nio.ToDeviceResponse, f"the room key for {device}")

    def next_message(self, room_id: str, sender: str) -> ReceivedMessage | None:
        from_sender = [m for m in self.messages[room_id] if m.sender == sender]
        taken = self.taken[room_id, sender]
        if taken >= len(from_sender):
            return None
        self.taken[room_id, sender] = taken + 1
        return from_sender[taken]

    def describe(self) -> str:
        lines = [f"{self.client.user_id} ({self.client.device_id}) saw:"]
        for room_id, room in self.client.rooms.items():
            members = ", ".join(f"{u}:{self.membership(room_id, u)}" for u in room.users)
            lines.append(
                f"  {room_id} encrypted={room.encrypted} members=[{members}] "
                f"typing={room.typing_users} undecrypted={len(self.undecrypted[room_id])}"
            )
            lines += [f"    {m.sender}: {m.body!r}" for m in self.messages[room_id]]
        lines += [f"  invited to {room_id}" for room_id in self.client.invited_rooms]
        lines += [f"  error: {error}" for error in self.errors[-5:]]
        return "\n".join(lines)


class MatrixHuman:
    """A person's Matrix client, for trio tests. Made by `open_human`."""

    def __init__(
        self, thread: _AsyncioThread, session: _Session, user_id: str, wait_limit: float
    ) -> None:
        self._thread = thread
        self._session = session
        self.user_id = user_id
        self.device_id: str = session.client.device_id
        self.wait_limit = wait_limit
        self.homeserver: str = session.client.homeserver
        self.cross_signing: CrossSigningKeys | None = None  # once published from here

    @property
    def access_token(self) -> str:
        """This device's token, for requests the tests make themselves."""
        return str(self._session.client.access_token)

    async def _call(self, coroutine: Coroutine[Any, Any, T], what: str) -> T:
        with trio.move_on_after(self.wait_limit) as scope:
            return await self._thread.run(coroutine)
        assert scope.cancelled_caught
        seen = "(the client did not answer either)"
        with trio.move_on_after(5):
            seen = await self._thread.run(self._describe())
        raise HumanTimeout(f"{self.user_id}: {what}: nothing after {self.wait_limit} s\n{seen}")

    async def _wait(self, found: Callable[[], T | None], what: str) -> T:
        return await self._call(self._session.wait_until(found), what)

    async def _describe(self) -> str:
        return self._session.describe()

    async def _snapshot(self, read: Callable[[], T]) -> T:
        async def on_loop() -> T:
            return read()

        return await self._call(on_loop(), "reading the client's state")

    async def create_room(
        self, *, encrypted: bool, invite: Sequence[str] = (), name: str | None = None
    ) -> str:
        """Create a private room (Megolm-encrypted if asked), inviting `invite`; returns
        its id once this client's sync knows the room, so it can send there at once."""
        initial_state = (
            [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}]
            if encrypted
            else []
        )

        async def create() -> str:
            response = await self._session.client.room_create(
                name=name,
                preset=nio.RoomPreset.private_chat,
                invite=list(invite),
                initial_state=initial_state,
            )
            room_id = str(_check(response, nio.RoomCreateResponse, "create room").room_id)
            rooms = self._session.client.rooms
            await self._session.wait_until(
                lambda: (
                    room_id if room_id in rooms and rooms[room_id].encrypted == encrypted else None
                )
            )
            return room_id

        return await self._call(create(), "creating a room")

    async def invite(self, room_id: str, user_id: str) -> None:
        response = self._session.client.room_invite(room_id, user_id)
        await self._call(_expect(response, nio.RoomInviteResponse, "invite"), "inviting")

    async def join(self, room_id: str) -> None:
        """Join (or accept the invite to) `room_id`; returns once the sync shows it."""

        async def join() -> None:
            _check(await self._session.client.join(room_id), nio.JoinResponse, "join")
            await self._session.wait_until(lambda: self._session.client.rooms.get(room_id))

        await self._call(join(), f"joining {room_id}")

    async def wait_for_invite(self) -> str:
        """The id of a room this human is invited to and has not joined."""
        return await self._wait(
            lambda: next(iter(self._session.client.invited_rooms), None), "waiting for an invite"
        )

    async def wait_for_membership(
        self, room_id: str, user_id: str, membership: Membership = "join"
    ) -> None:
        """Wait until this human's client sees `user_id` with `membership` in the room."""
        await self._wait(
            lambda: True if self._session.membership(room_id, user_id) == membership else None,
            f"waiting for {user_id} to be {membership} in {room_id}",
        )

    async def send_text(self, room_id: str, body: str, *, formatted_body: str | None = None) -> str:
        """Send an `m.text` (encrypted when the room is, to every device, unverified ones
        included); returns the event id."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if formatted_body is not None:
            content |= {"format": "org.matrix.custom.html", "formatted_body": formatted_body}
        return await self.send_event(room_id, content)

    async def send_event(
        self, room_id: str, content: dict[str, Any], *, event_type: str = "m.room.message"
    ) -> str:
        """Send any room event (an edit, a notice, malformed content...), encrypted when
        the room is; returns the event id."""
        return await self._call(
            self._session.send(room_id, event_type, content), f"sending to {room_id}"
        )

    async def send_edit(self, room_id: str, event_id: str, body: str) -> str:
        """Edit the message `event_id` to `body` (`m.replace`, as Element sends it)."""
        content = {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self._call(
            self._session.send_related(room_id, "m.room.message", content), f"editing {event_id}"
        )

    async def send_reply(
        self,
        room_id: str,
        event_id: str,
        body: str,
        *,
        fallback: str | None = None,
        mentions: Sequence[str] | None = None,
    ) -> str:
        """Reply to `event_id` with `body` (`m.in_reply_to`), with an older client's
        reply `fallback` quoted into the body when given, and `m.mentions` when given."""
        content: dict[str, Any] = {
            "msgtype": "m.text",
            "body": body if fallback is None else f"{fallback}\n\n{body}",
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }
        if mentions is not None:
            content["m.mentions"] = {"user_ids": list(mentions)}
        return await self.send_event(room_id, content)

    async def send_mention(self, room_id: str, body: str, user_ids: Sequence[str]) -> str:
        """Send `body` mentioning `user_ids` (`m.mentions`, as Element does)."""
        content = {"msgtype": "m.text", "body": body, "m.mentions": {"user_ids": list(user_ids)}}
        return await self.send_event(room_id, content)

    async def send_in_thread(self, room_id: str, root: str, body: str, latest: str) -> str:
        """Send `body` in the thread of `root` (`m.thread`, falling back to a reply to
        `latest`, the thread's newest event, as Element does)."""
        content = {
            "msgtype": "m.text",
            "body": body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": latest},
            },
        }
        return await self._call(
            self._session.send_related(room_id, "m.room.message", content), f"sending to {root}"
        )

    async def wait_for_redaction(self, room_id: str, event_id: str) -> None:
        """Wait until the room's timeline shows `event_id` redacted."""
        await self._wait(
            lambda: True if event_id in self._session.redacted[room_id] else None,
            f"waiting for {event_id} to be redacted in {room_id}",
        )

    async def redactions(self, room_id: str) -> set[str]:
        """The events this client has seen redacted in the room."""
        return await self._snapshot(lambda: set(self._session.redacted[room_id]))

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """React to `event_id` with `key` (`m.annotation`, encrypted when the room is)."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self._call(
            self._session.send_related(room_id, "m.reaction", content), f"reacting to {event_id}"
        )

    async def send_text_withholding_key(
        self, room_id: str, body: str, device: tuple[str, str]
    ) -> str:
        """Send an `m.text` in a new Megolm session whose key every device of the room
        gets but `device` (user id, device id), as a sender whose client skipped it would;
        `send_withheld_key` sends it the key later. Returns the session id."""
        content = {"msgtype": "m.text", "body": body}
        _, session_id = await self._call(
            self._session.send_withholding_key(room_id, content, device),
            f"sending to {room_id} without a key for {device}",
        )
        return session_id

    async def send_withheld_key(self, room_id: str, device: tuple[str, str]) -> None:
        """Send `device` the room key that `send_text_withholding_key` kept from it."""
        await self._call(
            self._session.send_withheld_key(room_id, device), f"sending {device} its room key"
        )

    async def send_media(
        self,
        room_id: str,
        data: bytes,
        *,
        name: str,
        mimetype: str,
        msgtype: str,
        voice: bool = False,
        caption: str | None = None,
        tamper: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Upload `data` as Element does (encrypted with nio's attachment encryption in
        an encrypted room, plain otherwise) and send it as `msgtype`, with `caption` as
        the body beside `filename`; `tamper` may change the content before it is sent.
        Returns the event id."""

        async def upload() -> dict[str, Any]:
            await self._session.wait_until(lambda: self._session.client.rooms.get(room_id))
            encrypted = self._session.client.rooms[room_id].encrypted
            response, keys = await self._session.client.upload(
                lambda *_: data,
                content_type=mimetype,
                filename=name,
                encrypt=encrypted,
                filesize=len(data),
            )
            uri = str(_check(response, nio.UploadResponse, "upload").content_uri)
            content: dict[str, Any] = {
                "msgtype": msgtype,
                "body": caption or name,
                "filename": name,
                "info": {"mimetype": mimetype, "size": len(data)},
            }
            if keys is not None:
                content["file"] = {"url": uri, **keys}
            else:
                content["url"] = uri
            if voice:
                content["org.matrix.msc3245.voice"] = {}
                content["org.matrix.msc1767.audio"] = {"duration": 1000}
            return content

        content = await self._call(upload(), f"uploading {name}")
        if tamper is not None:
            tamper(content)
        return await self.send_event(room_id, content)

    async def download_media(self, message: ReceivedMessage) -> bytes:
        """The bytes of a media message, from authenticated media, decrypted (after its
        hash is checked) when it is an encrypted attachment."""
        file = message.content.get("file")
        mxc = file["url"] if file else message.content["url"]
        server, media_id = mxc.removeprefix("mxc://").split("/", 1)
        async with httpx.AsyncClient(base_url=self.homeserver) as http:
            reply = await http.get(
                f"/_matrix/client/v1/media/download/{server}/{media_id}",
                headers={"Authorization": f"Bearer {self.access_token}"},
            )
        reply.raise_for_status()
        if not file:
            return reply.content
        return bytes(
            attachments.decrypt_attachment(
                reply.content, file["key"]["k"], file["hashes"]["sha256"], file["iv"]
            )
        )

    async def wait_for_message(self, room_id: str, sender: str) -> ReceivedMessage:
        """The next message from `sender` in the room that this method has not returned
        before (in timeline order), waiting for it if need be."""
        return await self._wait(
            lambda: self._session.next_message(room_id, sender),
            f"waiting for a message from {sender} in {room_id}",
        )

    async def messages(self, room_id: str) -> list[ReceivedMessage]:
        """Every message this client has seen in the room so far (decrypted ones)."""
        return await self._snapshot(lambda: list(self._session.messages[room_id]))

    async def undecrypted_count(self, room_id: str) -> int:
        """Encrypted events in the room this client could not decrypt (yet)."""
        return await self._snapshot(lambda: len(self._session.undecrypted[room_id]))

    async def set_typing(self, room_id: str, typing: bool = True) -> None:
        response = self._session.client.room_typing(room_id, typing)
        await self._call(_expect(response, nio.RoomTypingResponse, "typing"), "typing")

    async def mark_read(self, room_id: str, event_id: str) -> None:
        """Send a read receipt (and the fully-read marker) for `event_id`."""
        response = self._session.client.room_read_markers(room_id, event_id, event_id)
        await self._call(_expect(response, nio.RoomReadMarkersResponse, "receipt"), "receipt")

    async def wait_for_typing(self, room_id: str, user_id: str, typing: bool = True) -> None:
        def matches() -> bool | None:
            room = self._session.client.rooms.get(room_id)
            now = room is not None and user_id in room.typing_users
            return True if now == typing else None

        await self._wait(matches, f"waiting for {user_id} typing={typing} in {room_id}")

    async def wait_for_read_receipt(self, room_id: str, user_id: str, event_id: str) -> None:
        def matches() -> bool | None:
            room = self._session.client.rooms.get(room_id)
            receipt = room.read_receipts.get(user_id) if room is not None else None
            return True if receipt is not None and receipt.event_id == event_id else None

        await self._wait(matches, f"waiting for {user_id}'s read receipt of {event_id}")

    async def read_history(self, room_id: str, limit: int = 50) -> list[str]:
        """Bodies of the room's latest events as the server's `/messages` gives them
        (raises `MatrixRequestError` with `M_FORBIDDEN` where the human may not read)."""

        async def read() -> list[str]:
            response = await self._session.client.room_messages(room_id, limit=limit)
            found = _check(response, nio.RoomMessagesResponse, f"history of {room_id}")
            return [e.body for e in found.chunk if isinstance(e, _TEXT_EVENTS)]

        return await self._call(read(), f"reading the history of {room_id}")

    async def joined_rooms(self) -> list[str]:
        """The rooms the homeserver says this user has joined."""

        async def ask() -> list[str]:
            response = await self._session.client.joined_rooms()
            return list(_check(response, nio.JoinedRoomsResponse, "joined rooms").rooms)

        return await self._call(ask(), "listing joined rooms")

    async def describe(self) -> str:
        """What this client has seen: rooms, members, messages, recent errors."""
        return await self._snapshot(self._session.describe)

    async def send_raw_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send `content` as it is, around this client's encryption (a forged or broken
        encrypted event, say); returns the event id."""
        txn = secrets.token_hex(8)
        path = f"rooms/{quote(room_id, safe='')}/send/{quote(event_type, safe='')}/{txn}"
        return str((await self._http("PUT", path, content))["event_id"])

    async def keys_query(self, user_id: str | None = None) -> dict[str, Any]:
        """`/keys/query` for `user_id` (this human's own user by default)."""
        who = user_id or self.user_id
        return await self._http("POST", "keys/query", {"device_keys": {who: []}})

    async def publish_identity(
        self, keys: CrossSigningKeys | None = None, *, password: str | None = None
    ) -> CrossSigningKeys:
        """Upload a cross-signing identity (a new one unless `keys`), as Element's
        set-up does; replacing one needs the account's `password` (Synapse asks for it).
        This device is not signed by it: `sign_device` does that."""
        keys = keys or CrossSigningKeys.generate()
        body = device_signing_upload(self.user_id, keys)
        with trio.fail_after(self.wait_limit):
            async with httpx.AsyncClient(timeout=self.wait_limit, trust_env=False) as http:
                reply = await self._post(http, "keys/device_signing/upload", body)
                if reply.status_code == 401 and password is not None:
                    auth = {
                        "type": "m.login.password",
                        "identifier": {"type": "m.id.user", "user": self.user_id},
                        "password": password,
                        "session": reply.json().get("session"),
                    }
                    reply = await self._post(
                        http, "keys/device_signing/upload", {**body, "auth": auth}
                    )
        if reply.status_code != 200:
            raise MatrixRequestError("device_signing/upload", str(reply.status_code), reply.text)
        self.cross_signing = keys
        return keys

    async def sign_device(self, device_id: str | None = None) -> None:
        """Sign one of this user's devices (this one by default) with the identity
        `publish_identity` made, as a verified Element session signs a new one."""
        assert self.cross_signing is not None, "publish_identity first"
        device = device_id or self.device_id
        published = (await self.keys_query())["device_keys"][self.user_id][device]
        body = signatures_upload(self.user_id, published, self.cross_signing.self_signing)
        answer = await self._http("POST", "keys/signatures/upload", body)
        if answer.get("failures"):
            raise MatrixRequestError("signatures/upload", None, str(answer["failures"]))

    async def _http(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with trio.fail_after(self.wait_limit):
            async with httpx.AsyncClient(timeout=self.wait_limit, trust_env=False) as http:
                reply = await http.request(
                    method,
                    f"{self.homeserver}/_matrix/client/v3/{path}",
                    json=body,
                    headers={"Authorization": f"Bearer {self.access_token}"},
                )
        if reply.status_code != 200:
            raise MatrixRequestError(path, str(reply.status_code), reply.text)
        answer: dict[str, Any] = reply.json()
        return answer

    async def _post(
        self, http: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> httpx.Response:
        return await http.post(
            f"{self.homeserver}/_matrix/client/v3/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.access_token}"},
        )


async def _expect(response: Coroutine[Any, Any, Any], expected: type, what: str) -> None:
    _check(await response, expected, what)


@asynccontextmanager
async def open_human(
    homeserver: str,
    user_id: str,
    password: str,
    *,
    device_id: str,
    store_dir: Path,
    wait_limit: float = WAIT_TIMEOUT,
) -> AsyncIterator[MatrixHuman]:
    """Log in as `user_id` on device `device_id`, upload its keys, sync once, and yield
    the human; log out of nothing, but stop syncing and close everything on exit."""
    thread = _humans_thread()
    with trio.fail_after(wait_limit):
        session = await thread.run(
            _Session.login(homeserver, user_id, password, device_id, store_dir)
        )
    try:
        yield MatrixHuman(thread, session, user_id, wait_limit)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await thread.run(session.aclose())
