"""What every answer shares: the request body limit on every endpoint, the security headers, the request id.

The body limit: werkzeug refuses a Content-Length over MAX_CONTENT_LENGTH,
but a body sent without one (chunked) it reads up to the limit and hands back
cut off there, as if that were all, and only to views that read it. So the
app reads such a body itself, before any view, one byte past the limit: a
longer body is a 413 on every endpoint, a shorter one is handed on whole, with
its Content-Length.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

from flask import request
from markupsafe import Markup
from werkzeug.exceptions import RequestEntityTooLarge

from .. import logs

# The pages' only style sheet, written into each page's <style> element and
# allowed by its hash: no 'unsafe-inline', and no extra request for a file.
PAGE_CSS = Markup((Path(__file__).parent / "templates" / "page.css").read_text(encoding="utf-8"))
PAGE_CSS_HASH = base64.b64encode(hashlib.sha256(PAGE_CSS.encode("utf-8")).digest()).decode("ascii")

# The pages load nothing (no script, image or font), may not be framed
# (clickjacking the Unsubscribe button), and their one form posts back to
# this origin. Their URL holds the reader's unsubscribe token: no Referer.
PAGE_CSP = (
    f"default-src 'none'; style-src 'sha256-{PAGE_CSS_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Everything else is data: should a browser ever render it, it runs nothing.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

# Set by BodyLimit on a chunked body over the limit; refused by a
# before_request, so the 413 is an answer in the app's own format.
BODY_TOO_LARGE = "amazonsender.body_too_large"


class BodyLimit:
    """WSGI middleware: reads a request body that comes without a
    Content-Length (chunked) up to `limit` + 1 bytes before the app sees it.
    Within the limit, the app gets it whole with its Content-Length; over it,
    an empty body and environ[BODY_TOO_LARGE]."""

    def __init__(self, wsgi_app, limit: int):
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(self, environ, start_response):
        # Only a server that ends the stream itself (gunicorn, and werkzeug's
        # server for chunked bodies) says wsgi.input_terminated; from any
        # other, a read without a length could wait forever.
        if environ.get("CONTENT_LENGTH") in (None, "") and environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(self.limit + 1)
            if len(body) > self.limit:
                environ[BODY_TOO_LARGE] = True
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # werkzeug ignores a Content-Length next to a chunked
            # Transfer-Encoding; the body here is no longer chunked.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


def register_body_limit(app) -> None:
    """A body over MAX_CONTENT_LENGTH is a 413 on every endpoint, with or
    without a Content-Length, whether or not the view reads it."""
    app.wsgi_app = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])

    @app.before_request
    def refuse_a_body_over_the_limit():
        length = request.content_length
        if request.environ.get(BODY_TOO_LARGE) or (length is not None and length > request.max_content_length):
            raise RequestEntityTooLarge()


def register_security_headers(app) -> None:
    """Every answer: nosniff, no Referer, and a Content-Security-Policy (the
    pages' own for HTML)."""

    @app.context_processor
    def page_css():
        return {"page_css": PAGE_CSS}

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers.setdefault("Referrer-Policy", "no-referrer")
        # A route may set its own (previews.py, local mode only).
        headers.setdefault("Content-Security-Policy", PAGE_CSP if response.mimetype == "text/html" else DATA_CSP)
        return response


def register_request_ids(app) -> None:
    """Every request gets an id (the caller's X-Request-Id when sane), in
    every log line it causes and in the X-Request-Id response header."""

    @app.before_request
    def assign_request_id():
        logs.request_id_var.set(logs.new_request_id(request.headers.get("X-Request-Id")))

    @app.after_request
    def echo_request_id(response):
        request_id = logs.request_id_var.get()
        if request_id:
            response.headers["X-Request-Id"] = request_id
        return response

