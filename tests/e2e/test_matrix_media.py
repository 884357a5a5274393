"""Pictures, files and voice in Matrix rooms (issue 29), end to end: a real `ganglion run`
against the session's real Synapse and its real media repository, the owner on
matrix-nio and on Element's own stack (matrix-js-sdk, in Node), sending a PNG drawn in
code, a tiny valid PDF and a voice message spoken by espeak-ng and encoded by opusenc,
into encrypted and plain rooms. The scripted model's request log shows what the bot
made of them; the transcription server is the scripted fake speaking real multipart.

A plain room is refused by the trust rule (`matrix.verified_devices_only`: no device
proof without encryption), so the plain-room tests turn it off for their bot.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from ganglion.inbox import INBOX_DIR, conversation_segment, sent_name
from tests.e2e.people import PASSWORD
from tests.support.element import ElementOwner
from tests.support.fakellm import FakeLLM, Reply, calling
from tests.support.faketranscribe import FakeTranscriber, Transcript, open_fake_transcriber
from tests.support.live import LiveDaemon, open_live_daemon
from tests.support.matrix_human import MatrixHuman
from tests.support.mediafiles import pdf_bytes, png_bytes, voice_ogg
from tests.support.synapse import Synapse

pytestmark = pytest.mark.slow

HEARD = "remind me to call mum"


class Seer:
    """The model: says whether it was shown a picture, echoes the text it was given, and
    sends `report.png` with `send_file` when asked to (held back while `hold` is set and
    not yet set)."""

    def __init__(self) -> None:
        self.hold: trio.Event | None = None

    def __call__(self, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Reply(f"tool said: {last['content']}")
        content = last["content"]
        if isinstance(content, list):
            return Reply("I see a picture: " + content[0]["text"].splitlines()[0])
        if "send me the report" in content:
            return replace(calling("send_file", path="report.png"), gate=self.hold)
        return Reply(f"echo: {content}")


@pytest.fixture
async def hearing() -> AsyncIterator[FakeTranscriber]:
    async with open_fake_transcriber() as server:
        yield server


@asynccontextmanager
async def open_bot(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner_id: str,
    hearing: FakeTranscriber,
    *,
    vision: bool = True,
    **matrix: Any,
) -> AsyncIterator[LiveDaemon]:
    """`ganglion run` as a fresh bot account the owner may use, seeing pictures (unless
    `vision` is off), with the fake transcription server."""
    fake_llm.responder = Seer()
    account = await synapse.register(f"bot-{secrets.token_hex(4)}", PASSWORD)
    settings = {
        "homeserver": synapse.base_url,
        "user_id": account.user_id,
        "access_token": account.access_token,
        "device_id": account.device_id,
        "allowed_users": [owner_id],
        **matrix,
    }
    async with open_live_daemon(
        tmp_path,
        fake_llm.base_url,
        llm={"vision": vision},
        matrix=settings,
        transcription={"base_url": hearing.base_url},
        shutdown={"grace_seconds": 2},
    ) as live:
        live.bot_id = account.user_id  # type: ignore[attr-defined]
        yield live


def bot(live: LiveDaemon) -> str:
    return str(live.bot_id)  # type: ignore[attr-defined]


def user_texts(fake_llm: FakeLLM) -> list[str]:
    """What each request's last user message said (its text part when it had images)."""
    found = []
    for request in fake_llm.requests:
        users = [m for m in request["messages"] if m["role"] == "user"]
        content = users[-1]["content"]
        found.append(content[0]["text"] if isinstance(content, list) else content)
    return found


def image_urls(fake_llm: FakeLLM) -> list[str]:
    return [
        part["image_url"]["url"]
        for request in fake_llm.requests
        for message in request["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


def kept(live: LiveDaemon, room_id: str) -> dict[str, bytes]:
    """The files of the room's inbox, by the name they were sent with."""
    folder = live.data_dir / INBOX_DIR / conversation_segment(room_id)
    return {sent_name(p.name): p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


async def nio_round(
    owner: MatrixHuman,
    live: LiveDaemon,
    room_id: str,
    fake_llm: FakeLLM,
    hearing: FakeTranscriber,
    *,
    vision: bool = True,
) -> None:
    """The nio owner sends the three kinds, and gets the three answers."""
    picture, letter, voice = png_bytes("scan"), pdf_bytes(), voice_ogg(HEARD)
    hearing.script(Transcript(HEARD))

    await owner.send_media(
        room_id, picture, name="scan.png", mimetype="image/png", msgtype="m.image"
    )
    seen = await owner.wait_for_message(room_id, bot(live))
    if vision:
        assert seen.body.startswith("I see a picture: [Attached: scan.png (image/png")
        assert image_urls(fake_llm)[-1].startswith("data:image/jpeg;base64,")
    else:  # told it came, where it is, and that it cannot be seen
        assert seen.body.startswith("echo: [Attached: scan.png (image/png")
        assert "you cannot see this image" in seen.body and "inbox/" in seen.body
        assert image_urls(fake_llm) == []

    await owner.send_media(
        room_id,
        letter,
        name="letter.pdf",
        mimetype="application/pdf",
        msgtype="m.file",
        caption="what does this letter say?",
    )
    read = await owner.wait_for_message(room_id, bot(live))
    assert read.body.startswith("echo: what does this letter say?")
    assert "letter.pdf (application/pdf" in user_texts(fake_llm)[-1]

    await owner.send_media(
        room_id,
        voice,
        name="Voice message.ogg",
        mimetype="audio/ogg",
        msgtype="m.audio",
        voice=True,
        caption="Voice message",
    )
    heard = await owner.wait_for_message(room_id, bot(live))
    assert heard.body.startswith(f"> Heard: {HEARD}\n\necho: {HEARD}")
    assert hearing.uploads[-1].filename == "voice.ogg"
    assert hearing.uploads[-1].audio == voice

    files = kept(live, room_id)
    assert files["scan.png"] == picture and files["letter.pdf"] == letter
    assert files["Voice message.ogg"] == voice


async def test_the_nio_owner_sends_a_picture_a_pdf_and_voice_into_an_encrypted_room(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner: MatrixHuman,
    hearing: FakeTranscriber,
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner.user_id, hearing) as live:
        room_id = await owner.create_room(encrypted=True, invite=[bot(live)])
        await owner.wait_for_membership(room_id, bot(live))
        await nio_round(owner, live, room_id, fake_llm, hearing)

        # The bot's own file: uploaded encrypted, downloaded and decrypted by the owner.
        report = png_bytes("report")
        (live.data_dir / "report.png").write_bytes(report)
        await owner.send_text(room_id, "send me the report")
        sent = await owner.wait_for_message(room_id, bot(live))
        assert (sent.msgtype, sent.encrypted) == ("m.image", True)
        assert "file" in sent.content and "url" not in sent.content  # never plain
        assert await owner.download_media(sent) == report
        assert (await owner.wait_for_message(room_id, bot(live))).body.startswith("tool said: sent")

        # A restart neither sends it again nor loses what follows.
        assert await live.stop() == 0
        await live.start()
        assert (await _say(owner, live, room_id, "still there?")).body == "echo: still there?"
        pictures = [m for m in await owner.messages(room_id) if m.msgtype == "m.image"]
        assert len([m for m in pictures if m.sender == bot(live)]) == 1


async def test_the_nio_owner_sends_into_a_plain_room_and_gets_a_plain_file(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner: MatrixHuman,
    hearing: FakeTranscriber,
) -> None:
    async with open_bot(
        tmp_path,
        synapse,
        fake_llm,
        owner.user_id,
        hearing,
        vision=False,
        verified_devices_only=False,
    ) as live:
        room_id = await owner.create_room(encrypted=False, invite=[bot(live)])
        await owner.wait_for_membership(room_id, bot(live))
        await nio_round(owner, live, room_id, fake_llm, hearing, vision=False)
        report = pdf_bytes("report")
        (live.data_dir / "report.png").write_bytes(png_bytes("plain"))
        await owner.send_text(room_id, "send me the report")
        sent = await owner.wait_for_message(room_id, bot(live))
        assert (sent.msgtype, sent.encrypted) == ("m.image", False)
        assert "url" in sent.content
        assert await owner.download_media(sent) == png_bytes("plain")
        del report


async def test_a_file_sent_while_the_homeserver_is_away_arrives_once_after_a_restart(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner: MatrixHuman,
    hearing: FakeTranscriber,
) -> None:
    async with open_bot(tmp_path, synapse, fake_llm, owner.user_id, hearing) as live:
        room_id = await owner.create_room(encrypted=True, invite=[bot(live)])
        await owner.wait_for_membership(room_id, bot(live))
        report = png_bytes("while away")
        (live.data_dir / "report.png").write_bytes(report)
        seer = fake_llm.responder
        assert isinstance(seer, Seer)
        seer.hold = trio.Event()
        await owner.send_text(room_id, "send me the report")
        await fake_llm.wait_for_requests(1)
        await synapse.stop()
        seer.hold.set()  # the file is sent while the homeserver is away: the outbox keeps it
        await fake_llm.wait_for_requests(2)  # and the answer after it, too
        assert await live.stop() == 0
        await synapse.start()
        await live.start()
        sent = await owner.wait_for_message(room_id, bot(live))
        assert (sent.msgtype, sent.encrypted) == ("m.image", True)
        assert await owner.download_media(sent) == report
        assert (await owner.wait_for_message(room_id, bot(live))).body.startswith("tool said: sent")
        assert (await _say(owner, live, room_id, "and now?")).body == "echo: and now?"
        from_bot = [m for m in await owner.messages(room_id) if m.sender == bot(live)]
        assert [m.msgtype for m in from_bot] == ["m.image", "m.text", "m.text"]


async def _say(owner: MatrixHuman, live: LiveDaemon, room_id: str, text: str) -> Any:
    await owner.send_text(room_id, text)
    return await owner.wait_for_message(room_id, bot(live))


async def test_bad_media_gets_a_clear_reply_and_the_conversation_goes_on(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    owner: MatrixHuman,
    hearing: FakeTranscriber,
) -> None:
    async with open_bot(
        tmp_path, synapse, fake_llm, owner.user_id, hearing, max_media_bytes=4096
    ) as live:
        room_id = await owner.create_room(encrypted=True, invite=[bot(live)])
        await owner.wait_for_membership(room_id, bot(live))

        await owner.send_media(
            room_id,
            b"x" * 10_000,
            name="big.bin",
            mimetype="application/octet-stream",
            msgtype="m.file",
        )
        assert "larger than the 4.0 KB" in (await owner.wait_for_message(room_id, bot(live))).body

        def wrong_hash(content: dict[str, Any]) -> None:
            content["file"]["hashes"]["sha256"] = "A" * 43

        await owner.send_media(
            room_id,
            png_bytes(),
            name="a.png",
            mimetype="image/png",
            msgtype="m.image",
            tamper=wrong_hash,
        )
        assert "its hash does not match" in (await owner.wait_for_message(room_id, bot(live))).body

        def bad_key(content: dict[str, Any]) -> None:
            content["file"]["key"]["k"] = "c2hvcnQ"  # 5 bytes: no AES key

        await owner.send_media(
            room_id,
            png_bytes(),
            name="b.png",
            mimetype="image/png",
            msgtype="m.image",
            tamper=bad_key,
        )
        assert "does not decrypt" in (await owner.wait_for_message(room_id, bot(live))).body

        def gone(content: dict[str, Any]) -> None:
            server = content["file"]["url"].split("/")[2]
            content["file"]["url"] = f"mxc://{server}/NoSuchMediaHere"

        await owner.send_media(
            room_id, png_bytes(), name="c.png", mimetype="image/png", msgtype="m.image", tamper=gone
        )
        reply = (await owner.wait_for_message(room_id, bot(live))).body
        assert "could not download your file c.png" in reply

        # One sent while the bot is down is answered after it is back.
        assert await live.stop() == 0
        await owner.send_media(
            room_id,
            b"y" * 10_000,
            name="while-down.bin",
            mimetype="application/octet-stream",
            msgtype="m.file",
        )
        await live.start()
        late = (await owner.wait_for_message(room_id, bot(live))).body
        assert "while-down.bin is larger" in late

        assert (await _say(owner, live, room_id, "and text?")).body == "echo: and text?"
    assert user_texts(fake_llm) == ["and text?"]  # none of the bad files reached the model


async def test_the_element_owner_sends_a_picture_a_pdf_and_voice_and_gets_a_file(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    element_owner: ElementOwner,
    hearing: FakeTranscriber,
) -> None:
    owner = element_owner
    async with open_bot(tmp_path, synapse, fake_llm, owner.user_id, hearing) as live:
        room_id = await owner.create_room(invite=[bot(live)])
        await owner.wait_for_membership(room_id, bot(live))
        picture, letter, voice = png_bytes("element"), pdf_bytes("from element"), voice_ogg(HEARD)
        hearing.script(Transcript(HEARD))

        await owner.send_media(
            room_id, picture, name="photo.png", mimetype="image/png", msgtype="m.image"
        )
        seen = await owner.wait_for_message(room_id, bot(live))
        assert (seen.body or "").startswith("I see a picture: [Attached: photo.png")

        await owner.send_media(
            room_id, letter, name="letter.pdf", mimetype="application/pdf", msgtype="m.file"
        )
        read = await owner.wait_for_message(room_id, bot(live))
        assert "letter.pdf (application/pdf" in (read.body or "")

        await owner.send_media(
            room_id,
            voice,
            name="Voice message.ogg",
            mimetype="audio/ogg",
            msgtype="m.audio",
            voice=True,
            body="Voice message",
        )
        heard = await owner.wait_for_message(room_id, bot(live))
        assert (heard.body or "").startswith(f"> Heard: {HEARD}")

        files = kept(live, room_id)
        assert files["photo.png"] == picture and files["letter.pdf"] == letter
        assert files["Voice message.ogg"] == voice

        report = png_bytes("for element")
        (live.data_dir / "report.png").write_bytes(report)
        await owner.send_text(room_id, "send me the report")
        sent = await owner.wait_for_message(room_id, bot(live))
        assert (sent.msgtype, sent.encrypted) == ("m.image", True)
        got = await owner.download_media(room_id, sent.event_id)
        assert got.encrypted_attachment and got.data == report and got.name == "report.png"
    assert json.dumps(fake_llm.requests).count("data:image/") >= 1


async def test_the_element_owner_in_a_plain_room(
    tmp_path: Path,
    synapse: Synapse,
    fake_llm: FakeLLM,
    element_owner: ElementOwner,
    hearing: FakeTranscriber,
) -> None:
    owner = element_owner
    async with open_bot(
        tmp_path, synapse, fake_llm, owner.user_id, hearing, verified_devices_only=False
    ) as live:
        room_id = await owner.create_room(invite=[bot(live)], encrypted=False)
        await owner.wait_for_membership(room_id, bot(live))
        await owner.send_media(
            room_id, pdf_bytes(), name="plain.pdf", mimetype="application/pdf", msgtype="m.file"
        )
        read = await owner.wait_for_message(room_id, bot(live))
        assert "plain.pdf (application/pdf" in (read.body or "") and not read.encrypted
        assert kept(live, room_id)["plain.pdf"] == pdf_bytes()
