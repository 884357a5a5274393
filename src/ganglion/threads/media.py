"""What a turn makes of the files its message brought: pictures to show the model, a
voice message to hear.

Rules:

1. Pictures go to the model only with the message that brought them, in the turn that
   answers it, and only while the model server takes them (`llm.vision`, until a server
   refuses: `LLMClient.sees_images`). They are read from the inbox and scaled down
   (`ganglion.images`) for that turn's requests; a later turn reads of them only the note
   that says where they are. A picture that cannot be read is described, not shown.
2. A voice message is heard before the model is asked: its transcript becomes the
   message's text, in the store too (a restart does not hear it again), and the reply
   begins with it quoted, so the owner sees what was heard.
3. When it cannot be heard (no `transcription` endpoint, the server down or refusing),
   the turn is answered with what went wrong and how to fix it, without the model; the
   audio stays in the inbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Final

from ganglion.images import ImageError, image_part
from ganglion.inbox import InboxError
from ganglion.spend import Spend, turn_source
from ganglion.store import StoredMessage, Turn
from ganglion.threads.conversation import Conversation
from ganglion.tokens import estimate_tokens
from ganglion.transcribe import Transcript, TranscriptionError
from ganglion.transcript import Attachment
from ganglion.usage import BudgetExceeded

__all__ = ["Heard", "hear", "quoted", "turn_images"]

log = logging.getLogger(__name__)

NO_TRANSCRIPTION: Final = (
    "I got your voice message ({where}), but I cannot listen to it: no transcription "
    "service is configured. Add a `transcription:` section to the configuration with the "
    "`base_url` of an OpenAI-compatible /audio/transcriptions endpoint (a local speaches "
    "or faster-whisper-server, vLLM, LocalAI or OpenAI) and its `model`; the README shows "
    "an example. Until then, please type your message."
)
NOT_HEARD: Final = (
    "I could not listen to your voice message: {reason}. It is kept as {where}; send it "
    "again once the transcription service works, or type your message."
)
NOTHING_HEARD: Final = (
    "I heard nothing in your voice message ({where}). Please try again, or type it."
)


@dataclass(frozen=True, slots=True)
class Heard:
    """What listening gave: the transcript (`text`), or the reply that says why there is
    none (`reply`)."""

    text: str | None = None
    reply: str | None = None


def turn_input(conversation: Conversation, turn: Turn) -> StoredMessage | None:
    """The turn's own message as the history holds it."""
    for stored in reversed(conversation.history):
        if stored.turn_id == turn.turn_id and stored.message.role == "user":
            return stored
    return None


async def turn_images(conversation: Conversation, turn: Turn) -> dict[int, tuple[str, ...]]:
    """The pictures of the turn's message as data URLs, by message id (rule 1)."""
    stored = turn_input(conversation, turn)
    if stored is None or not conversation.client(turn_source(turn.source)).sees_images:
        return {}
    pictures = [a for a in stored.message.attachments if a.kind == "image"]
    urls = []
    for picture in pictures:
        url = await _image_url(conversation, picture)
        if url is not None:
            urls.append(url)
    return {stored.id: tuple(urls)} if urls else {}


def _largest(conversation: Conversation) -> int:
    """The most an inbox file may weigh: what either interface takes."""
    config = conversation.deps.config
    return max(config.matrix.max_media_bytes, config.web.max_upload_bytes)


async def _image_url(conversation: Conversation, picture: Attachment) -> str | None:
    try:
        data = await conversation.deps.inbox.read(picture.path, limit=_largest(conversation))
        part = await image_part(data, picture.mimetype)
    except (InboxError, ImageError) as exc:
        log.warning("%s is not shown to the model: %s", picture.path, exc)
        return None
    url: str = part["image_url"]["url"]
    return url


async def hear(conversation: Conversation, turn: Turn) -> Heard | None:
    """Listen to the turn's voice message (rules 2 and 3); None when it has none."""
    stored = turn_input(conversation, turn)
    if stored is None:
        return None
    voice = next((a for a in stored.message.attachments if a.kind == "voice"), None)
    if voice is None:
        return None
    if stored.message.content:  # heard before a restart (a voice message has no caption)
        return Heard(text=stored.message.content)
    deps = conversation.deps
    if deps.transcriber is None:
        return Heard(reply=NO_TRANSCRIPTION.format(where=voice.path))
    try:
        audio = await deps.inbox.read(voice.path, limit=_largest(conversation))
        async with deps.meter.charge("transcription", conversation.thread_id, 0):
            transcript = await deps.transcriber.transcribe(deps.http, audio, voice.mimetype)
            await deps.meter.record(
                _spend(conversation.thread_id, deps.transcriber.model, transcript)
            )
    except (InboxError, TranscriptionError, BudgetExceeded) as exc:
        log.warning("voice message %s not heard: %s", voice.path, exc)
        return Heard(reply=NOT_HEARD.format(reason=exc, where=voice.path))
    text = transcript.text
    if not text:
        return Heard(reply=NOTHING_HEARD.format(where=voice.path))
    heard = replace(stored, message=replace(stored.message, content=text))
    await deps.turns.revise_input(turn.turn_id, heard)
    conversation.revise(heard)
    log.info("voice message %s heard (%d characters)", voice.path, len(text))
    return Heard(text=text)


def _spend(thread_id: str, model: str, transcript: Transcript) -> Spend:
    """A transcription's spend: the server's token figures, else the text's estimate."""
    if transcript.usage is not None:
        usage = transcript.usage
        return Spend(
            thread_id, "transcription", model, usage.prompt_tokens, usage.completion_tokens
        )
    estimate = estimate_tokens(transcript.text)
    return Spend(thread_id, "transcription", model, 0, estimate, estimated=True)


def quoted(heard: str, reply: str) -> str:
    """The reply to a voice message: what was heard, quoted, then the answer."""
    quote = "\n".join(f"> {line}" if line else ">" for line in heard.splitlines())
    return f"> Heard: {quote.removeprefix('> ')}\n\n{reply}"
