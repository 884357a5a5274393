"""Files in and out of the web chat, over HTTP with the token (`web.server` routes them):

    POST /api/files/<thread_id>?name=<name>[&voice=1]   the bytes; answered with the
                                                        attachment (its `path`)
    GET  /api/files/<thread_id>/<file>                  an inbox file of the conversation

Rules:

1. An upload is at most `web.max_upload_bytes` (quart's request-body limit is raised to
   that, never more; a larger one is refused with 413 and a message that says so) and is
   kept in the conversation's inbox like a file from a room (`ganglion.inbox`: safe
   names, owner-only, the data directory's quota).
2. A send names its attachments by the path the upload answered; only a file of that
   very conversation's inbox can be named (`resolve`), its name and size are read from
   the inbox, its type is the upload's (checked for shape by the frame's definition).
3. A file is served as `Content-Disposition: attachment` with `nosniff` (set for every
   answer), typed as an image only for PNG, JPEG, GIF and WebP by its name (`RASTER_TYPES`)
   and as `application/octet-stream` otherwise: nothing served here can run in the
   chat's origin (SVG, HTML); the page shows the raster ones from `blob:` URLs.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from ganglion.errors import GanglionError
from ganglion.images import RASTER_TYPES
from ganglion.inbox import FileInbox, InboxError, file_path, sent_name
from ganglion.transcript import Attachment, attachment_kind, describe_size
from ganglion.web.frames import AttachmentItem, AttachmentRef

__all__ = ["Download", "UploadError", "Uploads", "attachment_item", "file_url"]

FALLBACK_TYPE: Final = "application/octet-stream"


class UploadError(GanglionError):
    """An upload or an attachment refused; the message is for the owner. `status` is
    the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Download:
    """A file to serve (rule 3)."""

    data: bytes
    content_type: str
    disposition: str


def file_url(thread_id: str, attachment: Attachment) -> str:
    """Where the page fetches `attachment` (with the token)."""
    return f"/api/files/{thread_id}/{quote(attachment.path.rsplit('/', 1)[-1])}"


def attachment_item(thread_id: str, attachment: Attachment) -> AttachmentItem:
    """An attachment as the frames carry it."""
    return AttachmentItem(
        path=attachment.path,
        name=attachment.name,
        mimetype=attachment.mimetype,
        size=attachment.size,
        kind=attachment.kind,
        url=file_url(thread_id, attachment),
    )


class Uploads:
    """The web chat's files, in the inbox (see the module docstring)."""

    def __init__(self, files: FileInbox, limit: int) -> None:
        self.files = files
        self.limit = limit

    def refuse_size(self, size: int | None) -> None:
        """Refuse an upload announced larger than the limit (rule 1)."""
        if size is not None and size > self.limit:
            raise UploadError(self.too_large(size), status=413)

    def too_large(self, size: int | None = None) -> str:
        weighs = f" ({describe_size(size)})" if size is not None else ""
        return (
            f"The file{weighs} is larger than the {describe_size(self.limit)} the chat takes "
            "(web.max_upload_bytes)."
        )

    async def keep(
        self, thread_id: str, name: str, mimetype: str, data: bytes, *, voice: bool
    ) -> Attachment:
        self.refuse_size(len(data))
        try:
            return await self.files.store(thread_id, name, mimetype, data, voice=voice)
        except InboxError as exc:
            raise UploadError(f"The file was not kept: {exc}.", status=507) from None

    async def resolve(
        self, thread_id: str, refs: Sequence[AttachmentRef]
    ) -> tuple[Attachment, ...]:
        """The attachments a send names (rule 2). Error handling: `UploadError`."""
        found = []
        for ref in refs:
            filename = ref["path"].rsplit("/", 1)[-1]
            if ref["path"] != file_path(thread_id, filename):
                raise UploadError(f"{ref['path']!r} is not a file of this conversation")
            try:
                size = await self.files.size(ref["path"])
            except InboxError:
                raise UploadError(f"the file {filename!r} was not uploaded (or is gone)") from None
            kind = attachment_kind(ref["mimetype"], voice=ref.get("voice", False))
            found.append(Attachment(ref["path"], sent_name(filename), ref["mimetype"], size, kind))
        return tuple(found)

    async def download(self, thread_id: str, filename: str) -> Download:
        """An inbox file of `thread_id` to serve (rule 3). Error handling: `UploadError`
        (404) for one that is not there."""
        if "/" in filename or filename.startswith("."):
            raise UploadError("no such file", status=404)
        try:
            data = await self.files.read(file_path(thread_id, filename), limit=-1)
        except InboxError:
            raise UploadError("no such file", status=404) from None
        name = sent_name(filename)
        guessed = mimetypes.guess_type(name)[0]
        content_type = guessed if guessed in RASTER_TYPES else FALLBACK_TYPE
        disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        return Download(data, content_type, disposition)
