"""Real media files made on the machine for tests: a PNG drawn in code, a tiny valid PDF,
and an OGG Opus voice message spoken by espeak-ng and encoded by opusenc (Debian
`espeak-ng` and `opus-tools`; the nox sessions that need it install them)."""

from __future__ import annotations

import io
import shutil
import subprocess

from PIL import Image, ImageDraw

__all__ = ["VOICE_TOOLS", "pdf_bytes", "png_bytes", "voice_ogg"]

VOICE_TOOLS = ("espeak-ng", "opusenc")


def png_bytes(text: str = "hello", size: tuple[int, int] = (64, 48)) -> bytes:
    """A small PNG with `text` drawn on it."""
    image = Image.new("RGB", size, (240, 200, 40))
    ImageDraw.Draw(image).text((4, 4), text, fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pdf_bytes(text: str = "Invoice 42") -> bytes:
    """A one-page PDF saying `text`, with a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 40 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def voice_ogg(text: str = "remind me to call mum") -> bytes:
    """`text` spoken, as an OGG Opus file like Element's voice messages. Raises
    `FileNotFoundError` naming the missing tool when espeak-ng or opusenc is not there."""
    for tool in VOICE_TOOLS:
        if shutil.which(tool) is None:
            raise FileNotFoundError(
                f"{tool} is not installed (apt-get install espeak-ng opus-tools)"
            )
    wav = subprocess.run(
        ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=60
    ).stdout
    return subprocess.run(
        ["opusenc", "--quiet", "-", "-"], input=wav, check=True, capture_output=True, timeout=60
    ).stdout
