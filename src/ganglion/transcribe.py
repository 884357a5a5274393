"""Voice to text through an OpenAI-compatible transcription endpoint.

    POST {base_url}/audio/transcriptions      multipart/form-data: file, model, language

speaches (faster-whisper-server), vLLM, LocalAI and OpenAI serve it. The audio is sent
as it was received, never transcoded (no ffmpeg): servers choose the decoder by the file
name's extension, so the name carries one that matches the type (`voice.ogg` for
Element's OGG Opus, `voice.webm` for a browser's MediaRecorder; `upload_name`).

Error handling: every failure is a `TranscriptionError` whose message can be shown to
the owner (the server is down, refused the audio, answered nonsense); the API key never
appears in one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import httpx

from ganglion.errors import GanglionError
from ganglion.transcript import Usage

__all__ = ["Transcriber", "Transcript", "TranscriptionError", "upload_name"]

log = logging.getLogger(__name__)

TIMEOUT: Final = httpx.Timeout(120.0, connect=10.0)
_EXTENSIONS: Final = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/webm": "webm",
    "video/webm": "webm",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/flac": "flac",
}


class TranscriptionError(GanglionError):
    """The audio could not be transcribed; safe to show."""


def upload_name(mimetype: str, stem: str = "voice") -> str:
    """A file name whose extension matches the audio's type (servers decode by it)."""
    base = mimetype.split(";")[0].strip().lower()
    return f"{stem}.{_EXTENSIONS.get(base, 'ogg' if 'ogg' in base else 'webm' if 'webm' in base else 'bin')}"


@dataclass(frozen=True, slots=True)
class Transcript:
    """What was heard; `usage`: the tokens the server reported (None: it reported none,
    or counted the audio in seconds)."""

    text: str
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Transcriber:
    """One transcription endpoint."""

    base_url: str
    model: str
    api_key: str | None = None
    language: str | None = None

    async def transcribe(self, http: httpx.AsyncClient, audio: bytes, mimetype: str) -> Transcript:
        """The text of `audio` (of type `mimetype`), and its usage where reported."""
        url = f"{self.base_url.rstrip('/')}/audio/transcriptions"
        fields = {"model": self.model, "response_format": "json"}
        if self.language:
            fields["language"] = self.language
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        kind = mimetype.split(";")[0].strip() or "application/octet-stream"
        try:
            reply = await http.post(
                url,
                data=fields,
                files={"file": (upload_name(kind), audio, kind)},
                headers=headers,
                timeout=TIMEOUT,
            )
        except httpx.TimeoutException:
            raise TranscriptionError(
                f"the transcription server at {self.base_url} did not answer in time"
            ) from None
        except httpx.TransportError:
            raise TranscriptionError(
                f"the transcription server at {self.base_url} cannot be reached"
            ) from None
        if reply.status_code >= 400:
            raise TranscriptionError(
                f"the transcription server at {self.base_url} refused the audio "
                f"(HTTP {reply.status_code}{_detail(reply)})"
            )
        try:
            body = reply.json()
            text = body.get("text")
        except (ValueError, AttributeError):
            body, text = None, None
        if not isinstance(text, str):
            raise TranscriptionError(
                f"the transcription server at {self.base_url} answered without a transcript"
            )
        return Transcript(text.strip(), _usage(body.get("usage")))


def _usage(usage: object) -> Usage | None:
    """OpenAI's `{"type": "tokens", "input_tokens", "output_tokens"}`; None for anything
    else (`{"type": "duration", "seconds"}` counts no tokens)."""
    if not isinstance(usage, dict) or usage.get("type") != "tokens":
        return None
    counts = [usage.get("input_tokens"), usage.get("output_tokens")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return None
    return Usage(int(usage["input_tokens"]), int(usage["output_tokens"]))


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f": {str(message)[:200]}" if message else ""
