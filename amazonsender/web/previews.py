"""GET /outbox/preview-<id>.html: a mailout's preview (`mailout preview ID`), shown by the local service (`make run`) only.

`mailout preview ID` writes the email's HTML part, as a subscriber gets it,
to OUTBOX_DIR/preview-ID.html; with APP_ENV=local the service answers it
here, so that a browser shows it at APP_BASE_URL/outbox/preview-ID.html.
The route exists only in local mode: in production it is not registered
(a 404). Only files named as `mailout preview` names them are answered,
never the outbox's .eml files (they hold recipients' addresses and
unsubscribe tokens), and no secret is asked: a browser opens the link.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, current_app

from .errors import ApiError

bp = Blueprint("previews", __name__)

PREVIEW_NAME = re.compile(r"preview-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.html")

# An email is styled inline and shows images from anywhere (its own /media/
# and external URLs); it runs nothing, posts nothing, and is not framed.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.get("/outbox/<name>")
def preview(name: str):
    if not PREVIEW_NAME.fullmatch(name):
        raise ApiError(404, "no such preview (run: python -m amazonsender mailout preview ID)")
    path = Path(current_app.config["SETTINGS"].outbox_dir) / name
    try:
        html = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ApiError(404, "no such preview (run: python -m amazonsender mailout preview ID)") from None
    response = current_app.response_class(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
