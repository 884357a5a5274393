"""Media in, from rooms: the file a message names, downloaded into the inbox before the
message is handed on, and the reply for one that cannot be had.

Rules:

1. A media message is handed to its thread only with its file kept in the inbox
   (`ganglion.inbox`): the model reads where it is. The download happens before the
   sync token moves past the event (`matrix.sync` rule 1): a kill meanwhile fetches the
   event, and the file, again.
2. A file that cannot be had is answered in the room with what went wrong, and the event
   is not handed on (its caption alone would make no sense without it): larger than
   `matrix.max_media_bytes` (announced or arriving), an encrypted attachment whose hash
   does not match or that does not decrypt, a malformed event, media the homeserver
   does not have or refuses, an inbox past its quota.
3. A homeserver that cannot be reached is tried again (`ATTEMPTS`, with a short pause)
   before the message is answered so.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from ganglion.errors import GanglionError
from ganglion.inbox import FileInbox, InboxError
from ganglion.matrix.errors import (
    MatrixMediaTooLarge,
    MatrixRequestError,
    MatrixUnavailable,
)
from ganglion.matrix.http import Homeserver
from ganglion.matrix.media import MediaError, MediaRef, fetch_media
from ganglion.transcript import Attachment, describe_size

__all__ = ["MediaIntake", "MediaRefused"]

log = logging.getLogger(__name__)

ATTEMPTS: Final = 3
PAUSE: Final = 1.0


class MediaRefused(GanglionError):
    """A room's file that cannot be had; the message is the reply to its sender."""


class MediaIntake:
    """Downloads what media messages name into the inbox (see the module docstring)."""

    def __init__(self, homeserver: Homeserver, inbox: FileInbox, limit: int) -> None:
        self._homeserver = homeserver
        self._inbox = inbox
        self._limit = limit

    async def receive(self, room_id: str, ref: MediaRef) -> Attachment:
        """The file of `ref`, kept in `room_id`'s inbox. Error handling: `MediaRefused`
        with the reply to send (rule 2)."""
        data = await self._download(ref)
        try:
            return await self._inbox.store(room_id, ref.name, ref.mimetype, data, voice=ref.voice)
        except InboxError as exc:
            raise MediaRefused(f"I could not keep your file {ref.name}: {exc}.") from None

    async def _download(self, ref: MediaRef) -> bytes:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await fetch_media(self._homeserver, ref, limit=self._limit)
            except MatrixMediaTooLarge:
                raise MediaRefused(
                    f"Your file {ref.name} is larger than the {describe_size(self._limit)} "
                    "I take (matrix.max_media_bytes in my configuration); it was not "
                    "received. Send a smaller one, or raise the limit."
                ) from None
            except MediaError as exc:
                raise MediaRefused(
                    f"I could not take your file: {exc}. Please send it again."
                ) from None
            except MatrixRequestError as exc:
                log.warning("media %s not downloaded: %s", ref.mxc, exc)
                raise MediaRefused(
                    f"I could not download your file {ref.name} from the homeserver (it "
                    f"answered {exc.errcode or f'HTTP {exc.status}'}). Please send it again."
                ) from None
            except MatrixUnavailable as exc:
                log.warning("media %s not downloaded (attempt %d): %s", ref.mxc, attempt, exc)
                if attempt < ATTEMPTS:
                    await trio.sleep(PAUSE * attempt)
        raise MediaRefused(
            f"I could not download your file {ref.name}: the homeserver did not answer. "
            "Please send it again in a while."
        )
