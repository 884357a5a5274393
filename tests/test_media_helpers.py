"""Voice to text (`ganglion.transcribe`) against a scripted server speaking the real
multipart protocol, and pictures made ready for a model (`ganglion.images`)."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from ganglion.images import MAX_SIDE, ImageError, image_part, prepare_image
from ganglion.transcribe import Transcriber, TranscriptionError, upload_name
from ganglion.transcript import Usage
from tests.support.fakellm import Hang, HTTPError
from tests.support.faketranscribe import Transcript, open_fake_transcriber

OGG = b"OggS" + b"\x00" * 60


@pytest.mark.parametrize(
    ("mimetype", "name"),
    [
        ("audio/ogg", "voice.ogg"),
        ("audio/ogg; codecs=opus", "voice.ogg"),
        ("audio/webm;codecs=opus", "voice.webm"),
        ("video/webm", "voice.webm"),
        ("audio/mp4", "voice.m4a"),
        ("audio/x-unknown", "voice.bin"),
    ],
)
def test_the_upload_name_carries_the_extension_servers_decode_by(mimetype: str, name: str) -> None:
    assert upload_name(mimetype) == name


async def test_the_audio_goes_as_it_came_with_the_model_language_and_key() -> None:
    async with open_fake_transcriber() as server, httpx.AsyncClient() as http:
        server.script(Transcript("  remind me to call mum  "))
        transcriber = Transcriber(server.base_url, "whisper-small", "sk-secret", "en")
        assert (
            await transcriber.transcribe(http, OGG, "audio/ogg")
        ).text == "remind me to call mum"
    [upload] = server.uploads
    assert (upload.filename, upload.content_type, upload.audio) == ("voice.ogg", "audio/ogg", OGG)
    assert upload.fields == {"model": "whisper-small", "response_format": "json", "language": "en"}
    assert upload.authorization == "Bearer sk-secret"


async def test_the_transcription_usage_is_read_where_the_server_reports_tokens() -> None:
    tokens = {"type": "tokens", "input_tokens": 42, "output_tokens": 7}
    async with open_fake_transcriber() as server, httpx.AsyncClient() as http:
        server.script(
            Transcript("hello", tokens),
            Transcript("hello", {"type": "duration", "seconds": 3}),
            Transcript("hello", {"type": "tokens", "input_tokens": "lots"}),
        )
        transcriber = Transcriber(server.base_url, "gpt-4o-transcribe")
        heard = [await transcriber.transcribe(http, OGG, "audio/ogg") for _ in range(3)]
    assert heard[0].usage == Usage(42, 7)
    assert heard[1].usage is None and heard[2].usage is None


async def test_a_failing_server_is_an_error_the_owner_can_read() -> None:
    async with open_fake_transcriber() as server, httpx.AsyncClient() as http:
        transcriber = Transcriber(server.base_url, "whisper", "sk-secret")
        server.script(HTTPError(415, '{"error": {"message": "unsupported audio"}}'))
        with pytest.raises(TranscriptionError, match="HTTP 415: unsupported audio") as refused:
            await transcriber.transcribe(http, OGG, "audio/ogg")
        assert "sk-secret" not in str(refused.value)
    down = Transcriber("http://127.0.0.1:9/v1", "whisper")
    async with httpx.AsyncClient() as http:
        with pytest.raises(TranscriptionError, match="cannot be reached"):
            await down.transcribe(http, OGG, "audio/ogg")


def photo(width: int, height: int, mode: str = "RGB", orientation: int | None = None) -> bytes:
    image = Image.new(mode, (width, height), (200, 30, 30, 128)[: len(mode)])
    out = io.BytesIO()
    if orientation is None:
        image.save(out, "PNG" if "A" in mode else "JPEG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_a_large_photo_is_scaled_down_turned_upright_and_stripped() -> None:
    sideways = photo(4000, 3000, orientation=6)  # a phone held upright
    kind, data = prepare_image(sideways, "image/jpeg")
    with Image.open(io.BytesIO(data)) as image:
        assert kind == "image/jpeg" and image.size == (MAX_SIDE * 3 // 4, MAX_SIDE)
        assert 0x0112 not in image.getexif()


def test_transparency_stays_png_and_small_images_keep_their_size() -> None:
    kind, data = prepare_image(photo(40, 30, "RGBA"), "image/png")
    with Image.open(io.BytesIO(data)) as image:
        assert (kind, image.size, image.mode) == ("image/png", (40, 30), "RGBA")


@pytest.mark.parametrize(
    ("data", "mimetype"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"not an image", "image/png"),
    ],
)
def test_what_is_not_a_raster_image_is_never_decoded(data: bytes, mimetype: str) -> None:
    with pytest.raises(ImageError):
        prepare_image(data, mimetype)


async def test_the_image_part_is_an_openai_data_url() -> None:
    part = await image_part(photo(10, 10), "image/jpeg")
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:2] == b"\xff\xd8"


async def test_a_transcription_server_that_hangs_is_cut_by_the_callers_deadline() -> None:
    import trio

    async with open_fake_transcriber() as server, httpx.AsyncClient() as http:
        server.script(Hang())
        with trio.move_on_after(1) as scope:
            await Transcriber(server.base_url, "whisper").transcribe(http, OGG, "audio/ogg")
        assert scope.cancelled_caught
