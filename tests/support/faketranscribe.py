"""A scripted OpenAI-compatible transcription server for tests: real HTTP on loopback,
the real multipart protocol.

    async with open_fake_transcriber() as server:
        server.script(Transcript("remind me to call mum"), HTTPError(503))
        ... point `transcription.base_url` at server.base_url ...
        assert server.uploads[0].filename == "voice.ogg"

Each `POST .../audio/transcriptions` is parsed as `multipart/form-data` (as speaches,
vLLM and OpenAI parse it: a `file` part with its name and type, text fields beside it)
and takes the next scripted step: a transcript, an HTTP error, or a hang. With the
script empty it answers "(silence)". It shares the model fake's HTTP layer (h11 on trio
sockets).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from functools import partial

import h11
import trio

from tests.support.fakellm import Hang, HTTPError, _Connection, serve_requests

__all__ = ["FakeTranscriber", "Transcript", "Upload", "open_fake_transcriber"]


@dataclass(frozen=True, slots=True)
class Transcript:
    """An answer: `text`, and `usage` as OpenAI's newer models report it (None: none)."""

    text: str
    usage: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """One transcription request as the server read it."""

    fields: dict[str, str]
    filename: str | None
    content_type: str | None
    audio: bytes
    authorization: str | None


@dataclass
class FakeTranscriber:
    base_url: str = ""
    uploads: list[Upload] = field(default_factory=list)
    _script: deque[Transcript | HTTPError | Hang] = field(default_factory=deque)

    def script(self, *steps: Transcript | HTTPError | Hang) -> None:
        self._script.extend(steps)

    async def handle(self, stream: trio.SocketStream) -> None:
        await serve_requests(stream, self._route)

    async def _route(self, http: _Connection, request: h11.Request, data: bytes) -> None:
        path = request.target.decode().split("?")[0]
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if request.method != b"POST" or not path.endswith("/audio/transcriptions"):
            await http.send_json(404, {"error": {"message": f"no route for {path}"}})
            return
        upload = _parse(headers, data)
        if upload is None:
            await http.send_json(400, {"error": {"message": "expected multipart/form-data"}})
            return
        self.uploads.append(upload)
        step = self._script.popleft() if self._script else Transcript("(silence)")
        match step:
            case Transcript(text, usage):
                answer: dict[str, object] = {"text": text}
                if usage is not None:
                    answer["usage"] = usage
                await http.send_json(200, answer)
            case HTTPError(status, body):
                await http.send_body(status, "application/json", body.encode())
            case Hang():
                await http.wait_for_close()


def _parse(headers: dict[str, str], data: bytes) -> Upload | None:
    kind = headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + data)
    if not isinstance(message, Message) or not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    filename = content_type = None
    audio = b""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        if name == "file":
            filename = part.get_filename()
            content_type = part.get_content_type()
            audio = payload
        else:
            fields[name] = payload.decode()
    return Upload(fields, filename, content_type, audio, headers.get("authorization"))


@asynccontextmanager
async def open_fake_transcriber() -> AsyncIterator[FakeTranscriber]:
    """Serve a `FakeTranscriber` on 127.0.0.1 (a free port) for the block."""
    fake = FakeTranscriber()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        yield fake
        nursery.cancel_scope.cancel()
