"""Page content for the Notion stand-in: block builders for fixtures, and Notion-hosted files whose URLs expire.

Blocks are loaded from nested dicts as Notion answers them (`{"type":
"paragraph", "paragraph": {...}}`), with a block's own blocks under
"children"; `paragraph`, `child_page` and `image` build the common ones.

A file uploaded to Notion is answered as `{"type": "file", "file": {"url",
"expiry_time"}}`, where the url is a presigned S3 URL "valid for 1 hour"
and minted afresh "each time you fetch a Notion-hosted file" (the File
object reference). `HostedFiles.file_object(file)` mints such a URL on the
stand-in itself (/files/{id}/{name}?X-Expires=..&X-Signature=..);
`HostedFiles.serve` answers it as S3 would: the bytes until it expires, 403
AccessDenied "Request has expired" after, 403 SignatureDoesNotMatch for a
URL it did not mint. Its clock can be moved on (`advance`) so that a test
can let every URL handed out so far expire.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

from tests.support.notion_standin_checks import rich_text

FILE_URL_SECONDS = 3600


@dataclass
class HostedFile:
    """A file uploaded to Notion; answered as `{"url": <fresh URL>, "expiry_time": ...}`."""

    content: bytes
    content_type: str = "image/png"
    name: str = "image.png"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def paragraph(text: str = "", *, children: list[dict] | None = None) -> dict:
    """A paragraph block to load, with nested blocks under "children"."""
    block = {"type": "paragraph", "paragraph": {"rich_text": [rich_text(text)] if text else [], "color": "default"}}
    if children:
        block["children"] = children
    return block


def child_page(title: str, *, children: list[dict] | None = None) -> dict:
    """A sub-page: a block whose children are another page's content."""
    block = {"type": "child_page", "child_page": {"title": title}}
    if children:
        block["children"] = children
    return block


def image(file: HostedFile, caption: str = "") -> dict:
    return {"type": "image", "image": {"type": "file", "file": file, "caption": [rich_text(caption)] if caption else []}}


class HostedFiles:
    def __init__(self):
        self._lock = threading.Lock()
        self._files: dict[str, HostedFile] = {}
        self._key = secrets.token_bytes(16)
        self._offset = 0.0

    def add(self, content: bytes, content_type: str, name: str) -> HostedFile:
        file = HostedFile(content, content_type, name)
        with self._lock:
            self._files[file.id] = file
        return file

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def now(self) -> float:
        return time.time() + self._offset

    def file_object(self, file: HostedFile, base_url: str) -> dict:
        """The "file" part of a file object, with a URL valid from now."""
        expires = int(self.now()) + FILE_URL_SECONDS
        url = f"{base_url}/files/{file.id}/{quote(file.name)}?X-Expires={expires}&X-Signature={self._sign(file.id, expires)}"
        expiry = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"url": url, "expiry_time": expiry}

    def serve(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes, str, str | None]:
        """(status, body, content type, S3 error code) for GET /files/..."""
        parts = path.split("/")
        file = self._files.get(parts[2]) if len(parts) == 4 else None
        expires = (query.get("X-Expires") or [""])[0]
        signature = (query.get("X-Signature") or [""])[0]
        if file is None or not expires.isdigit() or len(expires) > 12:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if not hmac.compare_digest(signature, self._sign(file.id, int(expires))):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        if self.now() > int(expires):
            return _s3_error(403, "AccessDenied", "Request has expired")
        return 200, file.content, file.content_type, None

    def _sign(self, file_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def _s3_error(status: int, code: str, message: str) -> tuple[int, bytes, str, str]:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return status, body.encode(), "application/xml", code
