"""What the model reads of attachments (the note, the image parts), how a server's refusal
of images is told from a context overflow, what a room's media event is taken as, and
that compaction keeps the references."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from ganglion.compaction import render_for_summary
from ganglion.config import EndpointConfig, LLMTimeouts, MatrixConfig, RetryConfig
from ganglion.inbox import file_path, inbox_path, sent_name
from ganglion.llm import LLMClient, LLMContextExceeded
from ganglion.llm.errors import refuses_images
from ganglion.llm.window import parse_overflow
from ganglion.matrix.events import Incoming, classify_event
from ganglion.tokens import IMAGE_TOKENS, estimate_message_tokens
from ganglion.transcript import Attachment, ChatMessage, attachment_kind
from tests.support.fakellm import FakeLLM, HTTPError, Reply

PICTURE = Attachment(
    "inbox/web_aa/20260101T000000Z-abcdef-card.png", "card.png", "image/png", 2048, "image"
)
LETTER = Attachment(
    "inbox/web_aa/20260101T000000Z-abcdef-a.pdf", "a.pdf", "application/pdf", 900, "file"
)
URL = "data:image/jpeg;base64,AAAA"


def test_the_model_reads_what_came_and_where_it_is_kept() -> None:
    wire = ChatMessage("user", "what is this?", attachments=(PICTURE, LETTER)).to_api()
    assert wire["content"].startswith("what is this?\n\n[Attached: card.png (image/png, 2.0 KB)")
    assert PICTURE.path in wire["content"] and LETTER.path in wire["content"]
    assert "you cannot see this image" in wire["content"]
    assert "a.pdf (application/pdf, 900 bytes)" in wire["content"]


def test_images_go_as_parts_only_when_the_server_takes_them() -> None:
    message = ChatMessage("user", "look", attachments=(PICTURE,), images=(URL,))
    shown = message.to_api()
    assert (
        shown["content"][0]["type"] == "text"
        and "shown to you below" in shown["content"][0]["text"]
    )
    assert shown["content"][1] == {"type": "image_url", "image_url": {"url": URL}}
    described = message.to_api(images=False)
    assert (
        isinstance(described["content"], str)
        and "you cannot see this image" in described["content"]
    )
    assert estimate_message_tokens(message) >= IMAGE_TOKENS


@pytest.mark.parametrize(
    ("mimetype", "voice", "kind"),
    [
        ("image/png", False, "image"),
        ("audio/ogg", True, "voice"),
        ("audio/ogg", False, "audio"),
        ("video/mp4", False, "video"),
        ("application/pdf", False, "file"),
    ],
)
def test_a_files_kind(mimetype: str, voice: bool, kind: str) -> None:
    assert attachment_kind(mimetype, voice=voice) == kind


def test_compaction_keeps_attachments_as_references() -> None:
    transcript = render_for_summary(
        [ChatMessage("user", "file this", attachments=(LETTER,)), ChatMessage("assistant", "ok")],
        max_tokens=1000,
    )
    assert LETTER.path in transcript and "a.pdf" in transcript


@pytest.mark.parametrize(
    "detail",
    [
        "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
        "this model is missing data required for image input",
        "Invalid content type. image_url is only supported by certain models.",
        "llava does not support images",
        "The model is not a multimodal model",
    ],
)
def test_image_refusals_are_recognised_and_are_not_overflows(detail: str) -> None:
    assert refuses_images(detail)
    assert parse_overflow(detail) is None


def test_an_overflow_is_not_an_image_refusal() -> None:
    overflow = "request (5000 tokens) exceeds the available context size (4096 tokens)"
    assert not refuses_images(overflow)
    assert parse_overflow(overflow) is not None


def client(fake: FakeLLM, *, vision: bool = True) -> LLMClient:
    endpoint = EndpointConfig(base_url=fake.base_url, model="m", vision=vision)
    return LLMClient(
        [endpoint], timeouts=LLMTimeouts(), retries=RetryConfig(attempts=1, initial_backoff=0.01)
    )


def has_images(request: dict[str, Any]) -> bool:
    return "image_url" in json.dumps(request["messages"])


async def test_a_server_refusing_images_is_asked_again_without_them_and_not_sent_more(
    fake_llm: FakeLLM,
) -> None:
    refusal = json.dumps({"error": {"message": "image input is not supported"}})
    fake_llm.script(HTTPError(400, refusal), Reply("without it"), Reply("again"))
    message = ChatMessage("user", "look", attachments=(PICTURE,), images=(URL,))
    with trio.fail_after(10):
        async with client(fake_llm) as llm:
            assert llm.sees_images
            first = await llm.complete([message])
            assert (first.content, first.images_refused) == ("without it", True)
            assert not llm.sees_images
            second = await llm.complete([message])
    assert [has_images(r) for r in fake_llm.requests] == [True, False, False]
    assert not second.images_refused
    assert "you cannot see this image" in fake_llm.requests[1]["messages"][0]["content"]


async def test_an_overflow_with_images_stays_an_overflow(fake_llm: FakeLLM) -> None:
    overflow = json.dumps(
        {
            "error": {
                "message": "request (9000 tokens) exceeds the available context size (4096 tokens)"
            }
        }
    )
    fake_llm.script(HTTPError(400, overflow))
    message = ChatMessage("user", "look", attachments=(PICTURE,), images=(URL,))
    with trio.fail_after(10):
        async with client(fake_llm) as llm:
            with pytest.raises(LLMContextExceeded):
                await llm.complete([message])
            assert llm.sees_images


async def test_without_vision_no_image_part_is_ever_sent(fake_llm: FakeLLM) -> None:
    message = ChatMessage("user", "look", attachments=(PICTURE,), images=(URL,))
    with trio.fail_after(10):
        async with client(fake_llm, vision=False) as llm:
            assert not llm.sees_images
            await llm.complete([message])
    assert not has_images(fake_llm.requests[0])


MATRIX = MatrixConfig.model_validate(
    {
        "homeserver": "https://hs",
        "user_id": "@bot:hs",
        "access_token": "t",
        "device_id": "D",
        "allowed_users": ["@me:hs"],
    }
)


def media_event(**content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": "$m", "sender": "@me:hs", "content": content}


def test_a_media_message_is_answered_with_its_caption_as_text() -> None:
    found = classify_event(
        MATRIX,
        "@bot:hs",
        "!r:hs",
        media_event(
            msgtype="m.image",
            body="what is it?",
            filename="scan.png",
            url="mxc://hs/abc",
            info={"mimetype": "image/png", "size": 10},
        ),
    )
    assert isinstance(found, Incoming) and found.text == "what is it?"
    assert found.media is not None and found.media.name == "scan.png"


def test_a_voice_message_is_marked_and_has_no_text() -> None:
    found = classify_event(
        MATRIX,
        "@bot:hs",
        "!r:hs",
        media_event(
            msgtype="m.audio",
            body="Voice message",
            filename="Voice message.ogg",
            url="mxc://hs/v",
            info={"mimetype": "audio/ogg"},
            **{"org.matrix.msc3245.voice": {}},
        ),
    )
    assert isinstance(found, Incoming) and found.text == ""
    assert found.media is not None and found.media.voice


def test_an_attachment_without_its_hash_is_answered_with_why() -> None:
    found = classify_event(
        MATRIX,
        "@bot:hs",
        "!r:hs",
        media_event(
            msgtype="m.file",
            body="x.pdf",
            file={
                "v": "v2",
                "url": "mxc://hs/x",
                "iv": "AAAA",
                "key": {"alg": "A256CTR", "k": "abc"},
            },
        ),
    )
    assert isinstance(found, Incoming) and found.media is None
    assert found.problem is not None and "SHA-256" in found.problem


def test_inbox_names() -> None:
    path = file_path("!r:hs", "20260101T000000Z-abcdef-scan.png")
    assert path == "inbox/%21r%3Ahs/20260101T000000Z-abcdef-scan.png" and inbox_path(path)
    assert sent_name("20260101T000000Z-abcdef-scan.png") == "scan.png"
    assert not inbox_path("inbox/../web_token") and not inbox_path("web_token")
