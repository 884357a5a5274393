"""Media in Matrix events (`ganglion.matrix.media`): one test per rule of its docstring,
downloads over an httpx mock transport speaking the media API, attachments encrypted
with nio's own code (what Element's are compatible with)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import nio
import pytest
from nio.crypto.attachments import encrypt_attachment

from ganglion.matrix.errors import MatrixMediaTooLarge, MatrixRequestError
from ganglion.matrix.http import Homeserver
from ganglion.matrix.media import MediaError, fetch_media, media_of, split_mxc

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MXC = "mxc://hs.example/AbCdEf"


def encrypted(data: bytes) -> tuple[bytes, dict[str, Any]]:
    ciphertext, keys = encrypt_attachment(data)
    return ciphertext, {**keys, "url": MXC, "mimetype": "image/png"}


def homeserver(answer: Callable[[httpx.Request], httpx.Response]) -> Homeserver:
    client: Any = nio.Client("@bot:hs.example", "BOT")
    client.access_token = "syt_token"
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return Homeserver(client, http, "http://hs.example")


def test_rule_1_plain_media_is_named_by_url_encrypted_by_file_url() -> None:
    plain = media_of({"msgtype": "m.image", "body": "cat.png", "url": MXC})
    assert (plain.mxc, plain.encryption) == (MXC, None)
    _, file = encrypted(PNG)
    secret = media_of({"msgtype": "m.image", "body": "cat.png", "file": file})
    assert secret.mxc == MXC and secret.encryption is not None
    assert "url" not in secret.encryption


@pytest.mark.parametrize(
    "broken",
    [
        {"v": "v1"},
        {"key": {"alg": "A128CTR", "k": "x"}},
        {"iv": None},
        {"hashes": {}},
    ],
)
def test_rule_1_an_encrypted_attachment_missing_its_checks_is_refused(
    broken: dict[str, Any],
) -> None:
    _, file = encrypted(PNG)
    with pytest.raises(MediaError):
        media_of({"msgtype": "m.file", "body": "x", "file": {**file, **broken}})


def test_rule_1_a_message_without_an_mxc_url_is_refused() -> None:
    for url in (None, "https://example.org/x.png", "mxc://hs.example", "mxc://hs.example/a/b"):
        with pytest.raises(MediaError):
            media_of({"msgtype": "m.image", "body": "x", "url": url})
    assert split_mxc(MXC) == ("hs.example", "AbCdEf")


def test_rule_2_the_body_is_a_caption_only_beside_a_different_filename() -> None:
    named = media_of(
        {"msgtype": "m.image", "body": "what does it say?", "filename": "letter.jpg", "url": MXC}
    )
    assert (named.name, named.caption) == ("letter.jpg", "what does it say?")
    same = media_of(
        {"msgtype": "m.image", "body": "letter.jpg", "filename": "letter.jpg", "url": MXC}
    )
    assert (same.name, same.caption) == ("letter.jpg", None)
    bare = media_of({"msgtype": "m.file", "body": "report.pdf", "url": MXC})
    assert (bare.name, bare.caption) == ("report.pdf", None)


def test_rule_3_the_type_is_announced_or_guessed_and_the_size_is_a_claim() -> None:
    told = media_of(
        {
            "msgtype": "m.file",
            "body": "a",
            "url": MXC,
            "info": {"mimetype": "Application/PDF", "size": 9},
        }
    )
    assert (told.mimetype, told.size) == ("application/pdf", 9)
    guessed = media_of({"msgtype": "m.file", "body": "scan.pdf", "url": MXC, "info": {"size": -1}})
    assert (guessed.mimetype, guessed.size) == ("application/pdf", None)
    unknown = media_of({"msgtype": "m.file", "body": "blob", "url": MXC})
    assert unknown.mimetype == "application/octet-stream"


def test_rule_4_a_voice_message_is_an_audio_with_elements_mark() -> None:
    voice = {
        "msgtype": "m.audio",
        "body": "Voice message",
        "url": MXC,
        "org.matrix.msc3245.voice": {},
    }
    assert media_of(voice).voice
    assert not media_of({**voice, "msgtype": "m.file"}).voice
    assert not media_of({"msgtype": "m.audio", "body": "song.ogg", "url": MXC}).voice


async def test_rule_5_authenticated_media_first_with_the_token() -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Authorization")))
        return httpx.Response(200, content=PNG)

    ref = media_of({"msgtype": "m.image", "body": "cat.png", "url": MXC})
    assert await fetch_media(homeserver(answer), ref, limit=1024) == PNG
    assert seen == [("/_matrix/client/v1/media/download/hs.example/AbCdEf", "Bearer syt_token")]


async def test_rule_5_the_old_path_only_when_the_server_lacks_the_new_one() -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if "/client/v1/" in request.url.path:
            return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED", "error": "Unrecognized"})
        return httpx.Response(200, content=PNG)

    ref = media_of({"msgtype": "m.image", "body": "cat.png", "url": MXC})
    assert await fetch_media(homeserver(answer), ref, limit=1024) == PNG
    assert paths[1] == "/_matrix/media/v3/download/hs.example/AbCdEf"

    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "Not found"})

    with pytest.raises(MatrixRequestError, match="M_NOT_FOUND"):
        await fetch_media(homeserver(missing), ref, limit=1024)


async def test_rule_5_an_encrypted_attachment_is_decrypted_after_its_hash_matched() -> None:
    ciphertext, file = encrypted(PNG)
    ref = media_of({"msgtype": "m.image", "body": "cat.png", "file": file})
    served = homeserver(lambda request: httpx.Response(200, content=ciphertext))
    assert await fetch_media(served, ref, limit=1024) == PNG
    tampered = homeserver(lambda request: httpx.Response(200, content=b"X" + ciphertext[1:]))
    with pytest.raises(MediaError, match="hash does not match"):
        await fetch_media(tampered, ref, limit=1024)


async def test_media_past_the_cap_is_refused_announced_or_arriving() -> None:
    big = b"x" * 5000
    announced = media_of(
        {"msgtype": "m.file", "body": "big.bin", "url": MXC, "info": {"size": len(big)}}
    )
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, content=big)

    with pytest.raises(MatrixMediaTooLarge):
        await fetch_media(homeserver(answer), announced, limit=1000)
    assert asked == []  # refused before a byte was asked for
    quiet = media_of({"msgtype": "m.file", "body": "big.bin", "url": MXC})

    async def pieces() -> AsyncIterator[bytes]:  # no Content-Length: only the bytes tell
        yield big[:600]
        yield big[600:]

    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=pieces())

    with pytest.raises(MatrixMediaTooLarge):
        await fetch_media(homeserver(chunked), quiet, limit=1000)


async def test_upload_returns_the_content_uri() -> None:
    got: list[tuple[str, str, bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        got.append((str(request.url), request.headers["Content-Type"], request.content))
        return httpx.Response(200, content=json.dumps({"content_uri": MXC}))

    assert await homeserver(answer).upload(PNG, "image/png", "cat 1.png") == MXC
    assert got == [
        ("http://hs.example/_matrix/media/v3/upload?filename=cat+1.png", "image/png", PNG)
    ]
