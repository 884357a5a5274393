"""Pictures for a model that can see (`llm.vision`): a sent image made into an OpenAI
`image_url` content part.

A phone's photo is 12 megapixels and several MB; a vision model looks at far less (the
hosted ones tile it at about 1,500 px, the local ones at 336-1,024 px), and the request
carries the image as base64 text. So the image is decoded, turned upright by its EXIF
orientation (phones store it sideways and say so), scaled down to `MAX_SIDE` on its long
side, stripped of its metadata (location, camera) and encoded again: JPEG, or PNG when it
has transparency.

Only raster formats that browsers and models both take are read (`RASTER_TYPES`); an SVG
or anything else is never decoded. Pillow's decompression-bomb guard stays on.

Blocking: decoding and encoding take tens of milliseconds; `image_part` runs them in a
worker thread.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Final

import trio

from ganglion.errors import GanglionError

__all__ = ["MAX_SIDE", "RASTER_TYPES", "ImageError", "image_part", "prepare_image"]

MAX_SIDE: Final = 1568
JPEG_QUALITY: Final = 85
RASTER_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class ImageError(GanglionError):
    """An image that cannot be shown to the model; the message says why."""


def prepare_image(data: bytes, mimetype: str) -> tuple[str, bytes]:
    """(type, bytes) of the image as the model gets it (see the module docstring).
    Error handling: `ImageError` for a type that is not raster or bytes that do not
    decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if mimetype not in RASTER_TYPES:
        raise ImageError(f"{mimetype} is not an image the model can be shown")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.seek(0)  # an animation: its first frame
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the image could not be read ({type(exc).__name__})") from None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    transparent = image.mode in ("RGBA", "LA") or "transparency" in image.info
    out = io.BytesIO()
    if transparent:
        image.convert("RGBA").save(out, "PNG", optimize=True)
        return "image/png", out.getvalue()
    image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return "image/jpeg", out.getvalue()


async def image_part(data: bytes, mimetype: str) -> dict[str, Any]:
    """The OpenAI content part that shows the image: a data URL."""
    kind, prepared = await trio.to_thread.run_sync(prepare_image, data, mimetype)
    url = f"data:{kind};base64,{base64.b64encode(prepared).decode()}"
    return {"type": "image_url", "image_url": {"url": url}}
