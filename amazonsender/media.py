"""Images fetched for mailouts: downloading one safely, and the URL the service serves it at.

A file uploaded to Notion is reachable only through a signed URL that
expires after an hour, so an email cannot point at it. The importer fetches
such an image once with `fetch_image`, stores it by its hash
(store.save_media) and writes `media_url(APP_BASE_URL, image)` into the
email; web/media.py serves it from there for as long as the email is read.

What is fetched is bounded and checked, since it comes from whatever a URL
answers: http and https only, a few redirects at most, timeouts on the
connection and on the whole download, at most `max_bytes` (refused before
reading when the Content-Length says more, and cut off one byte past the cap
when it says nothing or when a compressed body grows), and only PNG, JPEG,
GIF and WebP, where the declared Content-Type and the file's own first bytes
must agree. SVG is refused: it is a document that can carry script.

Error messages name the URL without its query string: a Notion file's query
is its signature, a credential for the hour it lasts.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

# Generous for an email image (mail clients download every image of every
# email opened); an importer may pass its own cap.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
# The whole download, however slowly the bytes come: a server that sends one
# byte just inside the read timeout each time would otherwise hold the import.
DOWNLOAD_SECONDS = 60.0
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024

# The accepted types and the extension of their URL. One extension per type:
# the endpoint refuses any other spelling, so an image has exactly one URL.
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
CONTENT_TYPES = {ext: content_type for content_type, ext in EXTENSIONS.items()}
# Spellings of the accepted types that servers send.
TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

# Images only, and not compressed: images gain nothing from it, and the
# byte cap counts decoded bytes anyway, should a server compress regardless.
REQUEST_HEADERS = {"Accept": ", ".join(EXTENSIONS), "Accept-Encoding": "identity"}

MEDIA_PATH = "/media/"
MEDIA_NAME = re.compile(r"([0-9a-f]{64})\.(png|jpg|gif|webp)")


class ImageError(Exception):
    """An image that could not be fetched; `reason` says why in a phrase an
    editor can act on, `url` is the URL without its query string."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class ImageRefused(ImageError):
    """What the URL answered is not an image we take (too large, not an
    accepted type, a 4xx, a redirect loop, not http): trying again changes
    nothing."""


class ImageUnreachable(ImageError):
    """The server could not be reached or failed (a timeout, a 5xx or 429, a
    cut-off download): trying again later may work."""


@dataclass(frozen=True)
class Image:
    sha256: str  # lower-case hex of SHA-256(data)
    content_type: str  # one of EXTENSIONS, read from the bytes themselves
    data: bytes

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.content_type]

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"


def media_url(base_url: str, image: Image) -> str:
    """Where the service serves `image`: APP_BASE_URL/media/<sha256>.<ext>."""
    return f"{base_url.rstrip('/')}{MEDIA_PATH}{image.name}"


def parse_media_name(name: str) -> tuple[str, str] | None:
    """(sha256, content type) of a name `media_url` writes, or None for any
    other string: upper-case hex, another extension or anything more."""
    match = MEDIA_NAME.fullmatch(name)
    if not match:
        return None
    return match.group(1), CONTENT_TYPES[match.group(2)]


def sniff(data: bytes) -> str | None:
    """The accepted type the bytes begin as, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def declared_type(response: requests.Response) -> str:
    """The response's media type, lower-case, without its parameters."""
    value = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return TYPE_ALIASES.get(value, value)


def fetch_image(
    url: str,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    session: requests.Session | None = None,
    clock=time.monotonic,
) -> Image:
    """Download the image at `url`; ImageRefused or ImageUnreachable with
    the reason when it is not one we take. `session`: a requests.Session to
    reuse (an importer fetching many images), with its own max_redirects;
    without one, a session of our own follows at most MAX_REDIRECTS.
    `clock` measures DOWNLOAD_SECONDS."""
    shown = without_query(url)
    if not is_http_url(url):
        raise ImageRefused(shown, "not an http or https URL")
    own_session = session is None
    if own_session:
        session = requests.Session()
        session.max_redirects = MAX_REDIRECTS
    try:
        with session.get(
            url,
            headers=REQUEST_HEADERS,
            stream=True,
            allow_redirects=True,
            timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        ) as response:
            content_type = check_answer(shown, response, max_bytes)
            data = read_capped(shown, response, max_bytes, clock)
    except requests.TooManyRedirects:
        raise ImageRefused(shown, f"more than {session.max_redirects} redirects") from None
    except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema):
        raise ImageRefused(shown, "the URL, or one it redirects to, is not an http or https URL") from None
    except requests.Timeout:
        raise ImageUnreachable(shown, "no answer in time") from None
    except requests.RequestException as exc:
        # The exception's text holds the URL, query and all: only its kind.
        raise ImageUnreachable(shown, f"the download failed ({type(exc).__name__})") from None
    finally:
        if own_session:
            session.close()
    return checked_image(shown, content_type, data)


def check_answer(shown: str, response: requests.Response, max_bytes: int) -> str:
    """The declared type of an answer worth reading; raises for any other."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise ImageUnreachable(shown, f"the server answered {status}")
    if status != 200:
        hint = " (a Notion file link expires after an hour)" if status in (400, 403) else ""
        raise ImageRefused(shown, f"the server answered {status}{hint}")
    content_type = declared_type(response)
    if content_type not in EXTENSIONS:
        shown_type = "".join(c if c.isprintable() else "?" for c in content_type[:60]) or "none"
        raise ImageRefused(shown, f"not a PNG, JPEG, GIF or WebP image (Content-Type: {shown_type})")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ImageRefused(shown, f"larger than {max_bytes} bytes")
    return content_type


def read_capped(shown: str, response: requests.Response, max_bytes: int, clock) -> bytes:
    """The body, decoded, refused one byte past max_bytes or DOWNLOAD_SECONDS."""
    deadline = clock() + DOWNLOAD_SECONDS
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise ImageRefused(shown, f"larger than {max_bytes} bytes")
        if clock() > deadline:
            raise ImageUnreachable(shown, f"the download took longer than {DOWNLOAD_SECONDS:g} s")
    return bytes(body)


def checked_image(shown: str, content_type: str, data: bytes) -> Image:
    actual = sniff(data)
    if actual is None:
        raise ImageRefused(shown, f"the file is not a PNG, JPEG, GIF or WebP image (declared {content_type})")
    if actual != content_type:
        raise ImageRefused(shown, f"declared {content_type} but the file is {actual}")
    return Image(sha256=hashlib.sha256(data).hexdigest(), content_type=content_type, data=data)


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def without_query(url: str) -> str:
    """The URL up to its path: no query, fragment or user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:300]
