"""A person on Matrix using Element's own client stack: matrix-js-sdk with its Rust crypto
(`@matrix-org/matrix-sdk-crypto-wasm`, the code Element Web runs), in Node, driven from
trio by JSON lines (`tests/e2e/element/owner.mjs`).

    async with open_element(synapse.base_url, user_id, password, device_id="ELEMENTWEB",
                            log_path=tmp_path / "element.log") as owner:
        await owner.bootstrap_cross_signing()
        room_id = await owner.create_room(invite=[bot_id])
        await owner.wait_for_membership(room_id, bot_id)
        await owner.send_text(room_id, "hello")
        reply = await owner.wait_for_message(room_id, bot_id)
        assert (await owner.shield(room_id, reply.event_id)).colour != "RED"

Where the bot is judged by a client no one here wrote, this is the one: what it says
about a device (`device_status`) or an event (`shield`) is what Element shows.

Resource handling: `open_element` starts `node owner.mjs` and logs in (a new device,
with an in-memory crypto store: a new process is a new device) before it yields; on
exit it asks the driver to stop, and kills it if it does not exit in time. The
driver's stderr (the SDK's warnings) goes to `log_path`.

Error handling: every call has a deadline (`wait_limit`, 30 s unless given); the driver
gives up on its own waits a little earlier and says what it saw, which surfaces as
`ElementError`, as does any error of the SDK. A missing `node` or `node_modules` (the
`e2e` nox session installs them with `npm ci`) is an `ElementError` too, never a skip.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import trio

__all__ = [
    "DRIVER_DIR",
    "DeviceStatus",
    "ElementError",
    "ElementMessage",
    "ElementOwner",
    "MediaDownload",
    "Shield",
    "open_element",
]

DRIVER_DIR: Final = Path(__file__).resolve().parents[1] / "e2e" / "element"
WAIT_TIMEOUT: Final = 30.0
# The driver's own waits end this much sooner than ours, so that its answer (what it saw)
# arrives before our deadline does.
DRIVER_MARGIN: Final = 2.0
STOP_TIMEOUT: Final = 10.0

IsolationMode = Literal["all", "onlySigned"]


class ElementError(Exception):
    """The driver or the SDK failed, or a wait ran out; the message says what was seen."""


@dataclass(frozen=True, slots=True)
class ElementMessage:
    """A message as the js-sdk holds it, decrypted unless `decryption_failure` says why
    not (the SDK's `DecryptionFailureCode`, e.g. `UNSIGNED_SENDER_DEVICE`)."""

    event_id: str
    sender: str
    device_id: str | None
    msgtype: str | None
    body: str | None
    encrypted: bool
    decryption_failure: str | None
    replaces: str | None = None  # the event an edit (`m.replace`) replaces
    new_body: str | None = None  # an edit's new text (`m.new_content`)


@dataclass(frozen=True, slots=True)
class MediaDownload:
    """A media message's file, as the owner's client got it."""

    data: bytes
    msgtype: str | None
    name: str | None
    mimetype: str | None
    encrypted_attachment: bool


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """`CryptoApi.getDeviceVerificationStatus`, as Element reads it."""

    signed_by_owner: bool
    cross_signing_verified: bool
    local_verified: bool


@dataclass(frozen=True, slots=True)
class Shield:
    """`CryptoApi.getEncryptionInfoForEvent`: Element's shield beside an event, by name
    (`NONE`, `GREY`, `RED`; reason e.g. `UNSIGNED_DEVICE`). None for a clear event."""

    colour: str | None
    reason: str | None


class _Lines:
    """Whole lines from a byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise ElementError("the Element driver exited")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


class ElementOwner:
    """One matrix-js-sdk client (one device) in one Node process; made by `open_element`."""

    def __init__(self, process: trio.Process, log_path: Path, wait_limit: float) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._lines = _Lines(process.stdout)
        self._log_path = log_path
        self._wait_limit = wait_limit
        self._ids = itertools.count(1)
        self._lock = trio.Lock()
        self.user_id = ""
        self.device_id = ""

    async def call(self, command: str, *, wait: bool = False, **args: Any) -> dict[str, Any]:
        """Run one driver command and return its result. `wait` marks a command that
        waits for something: it is given the deadline to give up at."""
        if wait:
            args["timeoutMs"] = int((self._wait_limit - DRIVER_MARGIN) * 1000)
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "command": command, **args}) + "\n"
        async with self._lock:
            try:
                with trio.fail_after(self._wait_limit):
                    await self._stdin.send_all(line.encode())
                    answer = json.loads(await self._lines.next())
            except (trio.TooSlowError, trio.BrokenResourceError, ElementError) as exc:
                raise ElementError(f"{command}: {exc!r}\n{self._log_tail()}") from exc
        assert answer["id"] == request_id, answer
        if not answer["ok"]:
            raise ElementError(f"{command}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    def _log_tail(self, lines: int = 30) -> str:
        text = self._log_path.read_text(errors="replace").splitlines()[-lines:]
        return "--- Element driver stderr ---\n" + "\n".join(text)

    async def login(self, base_url: str, user_id: str, password: str, device_id: str) -> None:
        result = await self.call(
            "login", baseUrl=base_url, userId=user_id, password=password, deviceId=device_id
        )
        self.user_id, self.device_id = result["userId"], result["deviceId"]

    async def bootstrap_cross_signing(self, *, reset: bool = False) -> str:
        """Set up this account's cross-signing as Element does (`reset`: a new identity,
        as Element's "reset cryptographic identity" makes); returns the master key."""
        return str((await self.call("bootstrapCrossSigning", reset=reset))["masterKey"])

    async def create_room(self, *, invite: list[str], encrypted: bool = True) -> str:
        return str((await self.call("createRoom", invite=invite, encrypted=encrypted))["roomId"])

    async def wait_for_membership(
        self, room_id: str, user_id: str, membership: str = "join"
    ) -> None:
        await self.call(
            "waitMembership", wait=True, roomId=room_id, userId=user_id, membership=membership
        )

    async def send_text(self, room_id: str, body: str) -> str:
        """Send `body` (encrypted in an encrypted room); returns its event id."""
        return str((await self.call("send", roomId=room_id, body=body))["eventId"])

    async def send_edit(self, room_id: str, event_id: str, body: str) -> str:
        """Edit the message `event_id` to `body` as Element does; returns the edit's id."""
        return str(
            (await self.call("sendEdit", roomId=room_id, eventId=event_id, body=body))["eventId"]
        )

    async def send_reply(self, room_id: str, event_id: str, body: str) -> str:
        """Reply `body` to the message `event_id` (`m.in_reply_to`, as Element does)."""
        return str(
            (await self.call("sendReply", roomId=room_id, eventId=event_id, body=body))["eventId"]
        )

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """React to `event_id` with `key` (encrypted in an encrypted room, as Element)."""
        return str((await self.call("react", roomId=room_id, eventId=event_id, key=key))["eventId"])

    async def send_media(
        self,
        room_id: str,
        data: bytes,
        *,
        name: str,
        mimetype: str,
        msgtype: str,
        voice: bool = False,
        body: str | None = None,
    ) -> str:
        """Send a picture, file or voice message as Element does (the SDK's upload; in an
        encrypted room the attachment encrypted as Element encrypts it), `body` beside
        the file's name (Element's voice messages say "Voice message"); its event id."""
        found = await self.call(
            "sendMedia",
            roomId=room_id,
            dataBase64=base64.b64encode(data).decode(),
            name=name,
            mimetype=mimetype,
            msgtype=msgtype,
            voice=voice,
            body=body,
        )
        return str(found["eventId"])

    async def download_media(self, room_id: str, event_id: str) -> MediaDownload:
        """A media message's bytes, downloaded (authenticated media) and decrypted by
        the SDK's side, with what the event says of them."""
        found = await self.call("downloadMedia", roomId=room_id, eventId=event_id)
        return MediaDownload(
            base64.b64decode(found["dataBase64"]),
            found["msgtype"],
            found["name"],
            found["mimetype"],
            found["encryptedAttachment"],
        )

    async def wait_for_message(
        self, room_id: str, sender: str, *, undecryptable: bool = False
    ) -> ElementMessage:
        """The oldest message from `sender` that no earlier call returned: decrypted, or
        (`undecryptable`) one the SDK could not decrypt (see its `decryption_failure`)."""
        found = await self.call(
            "waitMessage", wait=True, roomId=room_id, sender=sender, undecryptable=undecryptable
        )
        return ElementMessage(
            event_id=found["eventId"],
            sender=found["sender"],
            device_id=found["deviceId"],
            msgtype=found["msgtype"],
            body=found["body"],
            encrypted=found["encrypted"],
            decryption_failure=found["decryptionFailure"],
            replaces=found["replaces"],
            new_body=found["newBody"],
        )

    async def undecryptable(self, room_id: str) -> list[dict[str, Any]]:
        """The room's events the SDK could not decrypt (with its failure codes)."""
        events: list[dict[str, Any]] = (await self.call("undecryptable", roomId=room_id))["events"]
        return events

    async def shield(self, room_id: str, event_id: str) -> Shield:
        found = await self.call("shield", roomId=room_id, eventId=event_id)
        return Shield(found["colour"], found["reason"])

    async def device_status(
        self, user_id: str, device_id: str, *, signed_by_owner: bool | None = None
    ) -> DeviceStatus:
        """What the SDK thinks of a device, once it knows it (and, if `signed_by_owner`
        is given, once its signature state is that: device lists arrive by sync)."""
        args: dict[str, Any] = {"userId": user_id, "deviceId": device_id}
        if signed_by_owner is not None:
            args["signedByOwner"] = signed_by_owner
        found = await self.call("deviceStatus", wait=True, **args)
        return DeviceStatus(
            found["signedByOwner"], found["crossSigningVerified"], found["localVerified"]
        )

    async def master_key(self, user_id: str) -> str | None:
        """The master key of `user_id`'s identity as the SDK pinned it, if it has one."""
        key = (await self.call("masterKey", userId=user_id))["masterKey"]
        return None if key is None else str(key)

    async def cross_sign_device(self, device_id: str) -> None:
        """Sign another device of this account with its self-signing key."""
        await self.call("crossSignDevice", wait=True, deviceId=device_id)

    async def set_isolation_mode(self, mode: IsolationMode) -> None:
        """`onlySigned` is Element's "exclude insecure devices" (MSC4153)."""
        await self.call("setIsolationMode", mode=mode)

    async def aclose(self) -> None:
        """Stop the client and the driver (SIGKILL if it does not exit in time)."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(STOP_TIMEOUT):
                with suppress(ElementError):  # a driver that is gone is stopped
                    await self.call("stop")
                await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ElementError("node is not on PATH: the Element owner runs matrix-js-sdk in Node")
    if not (DRIVER_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        raise ElementError(
            f"{DRIVER_DIR}/node_modules is missing: run these tests with `uv run nox -s e2e`, "
            "which installs it with `npm ci`"
        )
    return node


@asynccontextmanager
async def open_element(
    base_url: str,
    user_id: str,
    password: str,
    *,
    device_id: str,
    log_path: Path,
    wait_limit: float = WAIT_TIMEOUT,
) -> AsyncIterator[ElementOwner]:
    """A js-sdk client logged in as `user_id` on a new device `device_id`, synced once."""
    node = _node()
    with log_path.open("ab") as log:
        process = await trio.lowlevel.open_process(
            [node, str(DRIVER_DIR / "owner.mjs")],
            cwd=DRIVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    owner = ElementOwner(process, log_path, wait_limit)
    try:
        await owner.login(base_url, user_id, password, device_id)
        yield owner
    finally:
        await owner.aclose()
