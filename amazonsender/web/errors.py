"""Errors as answers: JSON for the API and a page for people, never a stack trace or a 500 page for something a client sent.

What a domain error says is problems.py's table; views turn the errors they
expect into an ApiError with `answer`, in the context they know (which
mailout). The database being unreachable is answered wherever it happens.
"""

from __future__ import annotations

import logging

import psycopg
from flask import jsonify, render_template, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from .. import problems

log = logging.getLogger(__name__)

HTML_PREFIXES = ("/unsubscribe",)


class ApiError(Exception):
    """Raised by views; answered as `{"error": message, **extra}` with the
    HTTP status `code`."""

    def __init__(self, code: int, message: str, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def answer(exc: Exception, **context) -> ApiError:
    """The domain error `exc` as the HTTP answer problems.py gives it."""
    code, message, extra = problems.http_answer(exc, **context)
    return ApiError(code, message, **extra)


def wants_html() -> bool:
    return request.path.startswith(HTML_PREFIXES)


def error_response(code: int, message: str, extra: dict | None = None):
    if wants_html():
        return render_template("message.html", title="Something went wrong", message=message), code
    return jsonify(error=message, **(extra or {})), code


def register_error_handlers(app) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        return error_response(error.code, error.message, error.extra)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        if isinstance(error, InternalServerError):
            return handle_unexpected(error)
        message = error.description or error.name
        if error.code == 413:
            message = f"the request body is larger than {app.config['MAX_CONTENT_LENGTH'] // 1024} KiB"
        body, code = error_response(error.code or 400, message)
        response = app.make_response((body, code))
        # Keep the headers the exception carries (the `Allow` of a 405, which
        # RFC 9110 requires), but not its HTML content type.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def handle_database_unavailable(error: Exception):
        log.error("database unavailable on %s %s: %s", request.method, request.path, error)
        code, message, _ = problems.http_answer(error)
        return error_response(code, message)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the service log has the details")
