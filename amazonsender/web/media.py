"""GET /media/<sha256>.<ext>: the images of mailouts, served to whoever opens the email.

No secret: mail clients and their image proxies load these URLs. The name
is the hash of the bytes (media.py writes it), so an answer never changes:
caches may keep it for a year without asking again, its ETag is the hash,
and a revalidation is answered 304 without reading the bytes. Any name
media.py would not write (upper-case hex, another extension, the right hash
with the extension of another type) is a 404, as is an unknown hash.
"""

from __future__ import annotations

from flask import Blueprint, current_app, request

from .. import store
from ..media import parse_media_name
from .errors import ApiError
from .pool import get_pool

bp = Blueprint("media", __name__)

CACHE_FOREVER = "public, max-age=31536000, immutable"


@bp.get("/media/<name>")
def media(name: str):
    parsed = parse_media_name(name)
    if parsed is None:
        raise ApiError(404, "no such image")
    sha256, content_type = parsed
    revalidating = request.if_none_match.contains_weak(sha256)
    with_bytes = request.method == "GET" and not revalidating
    with get_pool().connection() as conn:
        image = store.get_media(conn, sha256, with_bytes=with_bytes)
    if image is None or image["content_type"] != content_type:
        raise ApiError(404, "no such image")
    headers = {"ETag": f'"{sha256}"', "Cache-Control": CACHE_FOREVER}
    if revalidating:
        # The type only picks the data CSP (http.py); werkzeug drops it from a 304.
        return current_app.response_class(status=304, headers=headers, content_type=content_type)
    # A HEAD answer carries the length of the body a GET would send.
    body = image["bytes"] if with_bytes else b""
    response = current_app.response_class(body, content_type=content_type, headers=headers)
    response.headers["Content-Length"] = str(image["size"])
    return response
