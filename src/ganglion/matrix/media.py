"""Media in Matrix messages: what an `m.image`, `m.file`, `m.audio` or `m.video` event
says (`media_of`, pure), and its bytes (`fetch_media`: downloaded, checked, decrypted).

Rules (each test in tests/test_matrix_media.py names one):

1. A media event names its content by an `mxc://server/id` URI: `url` when the room is
   not encrypted, `file.url` when it is. An encrypted attachment (`file`) must be
   version `v2` with an A256CTR JSON web key (`key.k`), an `iv` and a SHA-256 hash of
   the ciphertext (`hashes.sha256`); anything less is refused, never read as plain.
2. Its name is `filename` when given, else `body`. The `body` is a caption (the text
   the owner wrote with it) only when `filename` is present and differs from it, and
   never for a voice message (its text is what is heard in it).
3. Its type is `info.mimetype` when given, else guessed from the name, else
   `application/octet-stream`; its announced size is `info.size` (checked against the
   cap before a byte is downloaded, and again while downloading, since it is only a claim).
4. A voice message is an `m.audio` with `org.matrix.msc3245.voice` (Element's mark).
5. The bytes come from authenticated media (`/_matrix/client/v1/media/download`, Matrix
   1.11); the unauthenticated `/_matrix/media/v3/download` only when the server does not
   know the new path (404 or `M_UNRECOGNIZED`). An encrypted attachment is decrypted
   only after its hash matched (`nio.crypto.attachments`).

Errors (in the tree of `ganglion.matrix.errors`):

    MatrixError
    ├── MediaError              a malformed media event, an attachment refused by its hash
    └── MatrixMediaTooLarge     past `matrix.max_media_bytes`, announced or arriving
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import nio.crypto.attachments as attachments
import trio
from nio.exceptions import EncryptionError

from ganglion.matrix.errors import MatrixError, MatrixMediaTooLarge
from ganglion.matrix.http import Homeserver

__all__ = [
    "MEDIA_MSGTYPES",
    "MediaError",
    "MediaRef",
    "fetch_media",
    "media_of",
    "split_mxc",
]

MEDIA_MSGTYPES: Final = frozenset({"m.image", "m.file", "m.audio", "m.video"})
VOICE_MARK: Final = "org.matrix.msc3245.voice"
FALLBACK_TYPE: Final = "application/octet-stream"


class MediaError(MatrixError):
    """Media that cannot be had; the message says why and may be shown to the owner."""


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media event's content, as far as the event tells it."""

    msgtype: str
    mxc: str
    name: str
    mimetype: str
    size: int | None  # as announced
    caption: str | None
    voice: bool
    # The encrypted attachment's key material (`file` without `url`), None when plain.
    encryption: Mapping[str, Any] | None

    @property
    def is_image(self) -> bool:
        return self.msgtype == "m.image"


def media_of(content: Mapping[str, Any]) -> MediaRef:
    """The media an `m.room.message` content of a media msgtype names (the rules above).
    Error handling: `MediaError` for a malformed event."""
    msgtype = content.get("msgtype")
    if msgtype not in MEDIA_MSGTYPES:
        raise MediaError(f"{msgtype!r} is not a media message")
    encryption: Mapping[str, Any] | None = None
    file = content.get("file")
    if isinstance(file, Mapping):
        _check_encrypted(file)
        mxc = file.get("url")
        encryption = {k: v for k, v in file.items() if k != "url"}
    else:
        mxc = content.get("url")
    if not isinstance(mxc, str) or split_mxc(mxc) is None:
        raise MediaError("the message names no media (no mxc:// URL)")
    body = content.get("body") if isinstance(content.get("body"), str) else None
    filename = content.get("filename") if isinstance(content.get("filename"), str) else None
    name = (filename or body or "").strip() or _default_name(str(msgtype))
    voice = msgtype == "m.audio" and VOICE_MARK in content
    captioned = filename and body and body.strip() != filename.strip() and not voice
    caption = body.strip() if captioned and body else None
    info = content.get("info") if isinstance(content.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    mimetype = info.get("mimetype")
    if not isinstance(mimetype, str) or "/" not in mimetype:
        mimetype = mimetypes.guess_type(name)[0] or FALLBACK_TYPE
    size = info.get("size")
    announced = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    return MediaRef(
        msgtype=str(msgtype),
        mxc=mxc,
        name=name,
        mimetype=mimetype.split(";")[0].strip().lower(),
        size=announced,
        caption=caption or None,
        voice=voice,
        encryption=encryption,
    )


async def fetch_media(homeserver: Homeserver, ref: MediaRef, *, limit: int) -> bytes:
    """The media's bytes, decrypted when it is an encrypted attachment (rule 5).

    Error handling: `MatrixMediaTooLarge` past `limit` (announced or arriving);
    `MediaError` for an attachment whose hash does not match or that does not decrypt;
    the Matrix errors of `Homeserver.download` for a download that fails."""
    if ref.size is not None and ref.size > limit:
        raise MatrixMediaTooLarge(
            f"the media is larger ({ref.size} bytes) than matrix.max_media_bytes ({limit})",
            limit=limit,
        )
    split = split_mxc(ref.mxc)
    assert split is not None  # media_of checked it
    data = await homeserver.download(*split, limit=limit)
    if ref.encryption is None:
        return data
    encryption = ref.encryption
    try:
        return await trio.to_thread.run_sync(
            attachments.decrypt_attachment,
            data,
            encryption["key"]["k"],
            encryption["hashes"]["sha256"],
            encryption["iv"],
        )
    except (EncryptionError, ValueError, KeyError, TypeError) as exc:
        # A key, iv or hash that is not base64 raises binascii.Error (a ValueError).
        reason = "its hash does not match" if "digest" in str(exc) else "it does not decrypt"
        raise MediaError(f"the encrypted attachment {ref.name!r} was refused: {reason}") from None


def split_mxc(mxc: str) -> tuple[str, str] | None:
    """`mxc://server/id` as (server, id), else None."""
    if not mxc.startswith("mxc://"):
        return None
    server, _, media_id = mxc.removeprefix("mxc://").partition("/")
    if not server or not media_id or "/" in media_id or server in (".", ".."):
        return None
    return server, media_id


def _check_encrypted(file: Mapping[str, Any]) -> None:
    key = file.get("key")
    hashes = file.get("hashes")
    if file.get("v") != "v2":
        raise MediaError("the encrypted attachment is of an unknown version")
    if (
        not isinstance(key, Mapping)
        or key.get("alg") != "A256CTR"
        or not isinstance(key.get("k"), str)
    ):
        raise MediaError("the encrypted attachment has no usable key")
    if not isinstance(file.get("iv"), str):
        raise MediaError("the encrypted attachment has no iv")
    if not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str):
        raise MediaError("the encrypted attachment has no SHA-256 hash to check it by")


def _default_name(msgtype: str) -> str:
    return {"m.image": "image", "m.audio": "audio", "m.video": "video"}.get(msgtype, "file")
