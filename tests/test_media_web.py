"""Pictures, files and voice in the web chat, through the whole daemon: uploaded over real
HTTP with the token, sent over the websocket, answered by the scripted model (whose
request log shows what it was given), heard by the scripted transcription server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ganglion.web import frames
from tests.support.fakellm import FakeLLM, HTTPError, Reply, calling
from tests.support.faketranscribe import Transcript, open_fake_transcriber
from tests.support.mediafiles import pdf_bytes, png_bytes
from tests.support.web import WebDaemon, hello, next_frame, open_web_daemon, web_config

TAB = "web_c3c3c3c3c3c3c3c3"
OGG = b"OggS\x00\x02" + b"\x00" * 64  # what is in it matters to the server, not to us


async def upload(
    web: WebDaemon, data: bytes, name: str, mimetype: str, *, voice: bool = False
) -> httpx.Response:
    async with web.http() as http:
        return await http.post(
            f"/api/files/{TAB}",
            params={"name": name, **({"voice": "1"} if voice else {})},
            content=data,
            headers={"Authorization": f"Bearer {web.token}", "Content-Type": mimetype},
        )


async def uploaded(
    web: WebDaemon, data: bytes, name: str, mimetype: str, **kw: Any
) -> dict[str, Any]:
    answer = await upload(web, data, name, mimetype, **kw)
    assert answer.status_code == 201, answer.text
    item: dict[str, Any] = answer.json()
    return item


def ref(item: dict[str, Any], *, voice: bool = False) -> frames.AttachmentRef:
    found = frames.AttachmentRef(path=item["path"], mimetype=item["mimetype"])
    if voice:
        found["voice"] = True
    return found


def user_content(request: dict[str, Any]) -> Any:
    return [m for m in request["messages"] if m["role"] == "user"][-1]["content"]


def image_parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part
        for message in request["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


async def test_a_picture_goes_to_the_model_with_its_own_turn_only(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("A yellow card."), Reply("Still yellow."))
    config = web_config(tmp_path, fake_llm.base_url, llm={"vision": True})
    async with open_web_daemon(config) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, png_bytes(), "card.png", "image/png")
        assert item["path"].startswith(f"inbox/{TAB}/") and item["kind"] == "image"
        await ws.send_message(frames.send("m1", "what is this?", [ref(item)]))
        assert (await next_frame(ws, "reply"))["text"] == "A yellow card."
        await ws.send_message(frames.send("m2", "and now?"))
        await next_frame(ws, "reply")
    first, second = fake_llm.requests
    content = user_content(first)
    assert content[0]["type"] == "text" and "what is this?" in content[0]["text"]
    assert item["path"] in content[0]["text"] and "shown to you below" in content[0]["text"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert image_parts(second) == []  # not sent again
    assert item["path"] in json.dumps(second["messages"])  # but still referred to
    assert (tmp_path / item["path"]).read_bytes() == png_bytes()


async def test_without_vision_the_model_is_told_a_picture_came_and_where(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("I cannot see it, but it is kept."))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, png_bytes(), "card.png", "image/png")
        await ws.send_message(frames.send("m1", "", [ref(item)]))
        assert (await next_frame(ws, "reply"))["text"].startswith("I cannot see it")
    content = user_content(fake_llm.requests[0])
    assert isinstance(content, str)
    assert "card.png (image/png" in content and item["path"] in content
    assert "you cannot see this image" in content


async def test_a_server_refusing_pictures_turns_vision_off_and_the_turn_is_answered(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    refusal = '{"error": {"message": "image input is not supported - hint: provide the mmproj"}}'
    fake_llm.script(HTTPError(500, refusal), Reply("Answered without it."), Reply("Again."))
    config = web_config(tmp_path, fake_llm.base_url, llm={"vision": True})
    async with open_web_daemon(config) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, png_bytes(), "card.png", "image/png")
        await ws.send_message(frames.send("m1", "look", [ref(item)]))
        notice = await next_frame(ws, "notice")
        assert "does not take pictures" in notice["text"]
        assert (await next_frame(ws, "reply"))["text"] == "Answered without it."
        other = await uploaded(web, png_bytes("two"), "two.png", "image/png")
        await ws.send_message(frames.send("m2", "and this", [ref(other)]))
        assert (await next_frame(ws, "reply"))["text"] == "Again."
    refused, retried, later = fake_llm.requests
    assert image_parts(refused) and not image_parts(retried) and not image_parts(later)
    assert "you cannot see this image" in user_content(retried)


async def test_a_voice_recording_is_heard_and_the_reply_quotes_it(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("I will remind you."))
    async with open_fake_transcriber() as hearing:
        hearing.script(Transcript("remind me to call mum"))
        config = web_config(
            tmp_path, fake_llm.base_url, transcription={"base_url": hearing.base_url}
        )
        async with open_web_daemon(config) as web, web.socket() as ws:
            await hello(ws, TAB)
            item = await uploaded(web, OGG, "voice.webm", "audio/webm", voice=True)
            assert item["kind"] == "voice"
            await ws.send_message(frames.send("m1", "", [ref(item, voice=True)]))
            reply = await next_frame(ws, "reply")
            await ws.send_message(frames.search("call mum"))
            hits = (await next_frame(ws, "search_results"))["hits"]
            today = await web.services.deps.meter.today()
        assert hearing.uploads[0].filename == "voice.webm"
        assert hearing.uploads[0].audio == OGG
    assert reply["text"] == "> Heard: remind me to call mum\n\nI will remind you."
    assert user_content(fake_llm.requests[0]).startswith("remind me to call mum")
    assert [hit["thread_id"] for hit in hits] == [TAB]
    heard = today["transcription"]  # the fake reports no tokens: estimated from the text
    assert (heard.calls, heard.estimated, heard.prompt) == (1, 1, 0) and heard.completion > 0
    assert today["owner"].tokens == 15


async def test_without_a_transcription_endpoint_the_reply_says_how_to_set_one(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, OGG, "voice.ogg", "audio/ogg", voice=True)
        await ws.send_message(frames.send("m1", "", [ref(item, voice=True)]))
        text = (await next_frame(ws, "reply"))["text"]
    assert "transcription:" in text and "base_url" in text and item["path"] in text
    assert fake_llm.requests == []  # the model is not asked


async def test_a_transcription_server_that_is_down_gets_a_clear_reply_and_the_chat_goes_on(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Typed is fine."))
    async with open_fake_transcriber() as hearing:
        down = hearing.base_url
    config = web_config(tmp_path, fake_llm.base_url, transcription={"base_url": down})
    async with open_web_daemon(config) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, OGG, "voice.ogg", "audio/ogg", voice=True)
        await ws.send_message(frames.send("m1", "", [ref(item, voice=True)]))
        text = (await next_frame(ws, "reply"))["text"]
        await ws.send_message(frames.send("m2", "then I type it"))
        assert (await next_frame(ws, "reply"))["text"] == "Typed is fine."
    assert "could not listen" in text and "cannot be reached" in text
    assert (tmp_path / item["path"]).read_bytes() == OGG  # nothing lost


async def test_an_upload_over_the_cap_is_refused_with_a_message(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(tmp_path, fake_llm.base_url, web={"max_upload_bytes": 2048})
    async with open_web_daemon(config) as web:
        answer = await upload(web, b"x" * 4096, "big.bin", "application/octet-stream")
        assert answer.status_code == 413
        assert "web.max_upload_bytes" in answer.json()["error"]
        async with web.http() as http:
            anonymous = await http.post(f"/api/files/{TAB}", params={"name": "x"}, content=b"x")
        assert anonymous.status_code == 401
    assert not (tmp_path / "inbox").exists() or not any((tmp_path / "inbox").rglob("*big*"))


@pytest.mark.parametrize(
    ("name", "data", "served_as"),
    [
        ("card.png", png_bytes(), "image/png"),
        ("letter.pdf", pdf_bytes(), "application/octet-stream"),
        ("trap.svg", b"<svg onload='alert(1)'/>", "application/octet-stream"),
        ("trap.html", b"<script>alert(1)</script>", "application/octet-stream"),
    ],
)
async def test_files_are_served_as_downloads_and_only_raster_images_as_images(
    tmp_path: Path, fake_llm: FakeLLM, name: str, data: bytes, served_as: str
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        item = await uploaded(web, data, name, "image/svg+xml")
        async with web.http() as http:
            served = await http.get(item["url"], headers={"Authorization": f"Bearer {web.token}"})
            without = await http.get(item["url"])
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == served_as
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert without.status_code == 401


async def test_a_send_cannot_name_another_conversations_file(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        forged = frames.AttachmentRef(path="inbox/web_dddddddddddddddd/x.png", mimetype="image/png")
        await ws.send_message(frames.send("m1", "look", [forged]))
        error = await next_frame(ws, "error")
        traversal = frames.AttachmentRef(path=f"inbox/{TAB}/../../web_token", mimetype="text/plain")
        await ws.send_message(frames.send("m2", "look", [traversal]))
        second = await next_frame(ws, "error")
    assert (error["code"], error["id"]) == ("bad_attachment", "m1")
    assert (second["code"], second["id"]) == ("bad_attachment", "m2")
    assert fake_llm.requests == []


async def test_a_sent_file_shows_in_the_history_and_is_found_by_its_name(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply("Got the invoice."))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as ws:
            await hello(ws, TAB)
            item = await uploaded(web, pdf_bytes(), "invoice-march.pdf", "application/pdf")
            await ws.send_message(frames.send("m1", "file this", [ref(item)]))
            await next_frame(ws, "reply")
        async with web.socket() as ws:
            messages = await hello(ws, TAB)
            await ws.send_message(frames.search("invoice-march"))
            hits = (await next_frame(ws, "search_results"))["hits"]
    sent = next(m for m in messages if m["role"] == "user")
    assert sent["content"] == "file this"
    assert sent["attachments"][0]["name"] == "invoice-march.pdf"
    assert sent["attachments"][0]["url"].startswith(f"/api/files/{TAB}/")
    assert hits and hits[0]["thread_id"] == TAB


async def test_send_file_delivers_a_file_once_through_the_outbox(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    (tmp_path / "report.png").write_bytes(png_bytes("report"))
    fake_llm.script(calling("send_file", path="report.png"), Reply("Here it is."))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web:
        async with web.socket() as ws:
            await hello(ws, TAB)
            await ws.send_message(frames.send("m1", "send me the report"))
            sent = await next_frame(ws, "file")
            assert (await next_frame(ws, "reply"))["text"] == "Here it is."
            async with web.http() as http:
                served = await http.get(
                    sent["attachment"]["url"], headers={"Authorization": f"Bearer {web.token}"}
                )
        with trio.fail_after(10):
            while await web.services.store.outbox.undelivered(TAB):
                await trio.sleep(0.05)
        async with web.socket() as ws:
            messages = await hello(ws, TAB)
    assert sent["attachment"]["name"] == "report.png" and sent["attachment"]["kind"] == "image"
    assert served.content == png_bytes("report") and served.headers["content-type"] == "image/png"
    tool = next(m for m in messages if m["role"] == "tool")
    assert tool["attachments"][0]["path"] == sent["attachment"]["path"]


async def test_send_file_keeps_to_the_file_tools_refusals(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(calling("send_file", path="web_token"), Reply("I may not."))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        await ws.send_message(frames.send("m1", "send me your token"))
        tool = await next_frame(ws, "tool")
        while tool["phase"] != "end":
            tool = await next_frame(ws, "tool")
        await next_frame(ws, "reply")
    assert not tool["ok"] and "private files" in tool["result"]
    assert web.token not in json.dumps(fake_llm.requests)


async def test_deleting_a_conversation_removes_its_inbox(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("ok"))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, png_bytes(), "card.png", "image/png")
        await ws.send_message(frames.send("m1", "keep it", [ref(item)]))
        await next_frame(ws, "reply")
        assert (tmp_path / item["path"]).exists()
        await ws.send_message(frames.delete(TAB))
        await next_frame(ws, "threads")
    assert not (tmp_path / "inbox" / TAB).exists()


async def test_new_keeps_the_inbox_and_the_quota_refuses_what_does_not_fit(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = web_config(tmp_path, fake_llm.base_url, tools={"files": {"max_data_bytes": 1 << 20}})
    async with open_web_daemon(config) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, png_bytes(), "card.png", "image/png")
        await ws.send_message(frames.send("m1", "keep it", [ref(item)]))
        await next_frame(ws, "reply")
        await ws.send_message(frames.send("m2", "/new"))
        await next_frame(ws, "notice")
        over = await upload(web, b"x" * (2 << 20), "big.bin", "application/octet-stream")
    assert (tmp_path / item["path"]).read_bytes() == png_bytes()
    assert over.status_code == 507 and "tools.files.max_data_bytes" in over.json()["error"]


async def test_an_edit_keeps_the_files_of_the_message(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply("first"), Reply("second"))
    async with open_web_daemon(web_config(tmp_path, fake_llm.base_url)) as web, web.socket() as ws:
        await hello(ws, TAB)
        item = await uploaded(web, pdf_bytes(), "a.pdf", "application/pdf")
        await ws.send_message(frames.send("m1", "summarise", [ref(item)]))
        turn_id = (await next_frame(ws, "reply"))["turn_id"]
        await ws.send_message(frames.rewind("m2", turn_id, "summarise in French"))
        assert (await next_frame(ws, "reply"))["text"] == "second"
    edited = user_content(fake_llm.requests[1])
    assert edited.startswith("summarise in French") and item["path"] in edited
