"""Small image files of each type the service takes, and files that only pretend to be images.

The PNG, GIF and WebP are complete 1x1 images; the JPEG is a JFIF header and
an end marker, which is all the service looks at (it reads a file's first
bytes, it never decodes one).
"""

from __future__ import annotations

import struct
import zlib


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 1, height: int = 1) -> bytes:
    """An opaque black RGB image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


PNG = png()
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
WEBP = bytes.fromhex("524946461a000000574542505650384c0d0000002f00000010071011118888fe0700")
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")

# What each type's file looks like, by content type.
SAMPLES = {"image/png": PNG, "image/jpeg": JPEG, "image/gif": GIF, "image/webp": WEBP}

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1">'
    b"<script>alert(document.cookie)</script></svg>"
)
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
