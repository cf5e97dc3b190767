"""Logs as one JSON object per line, so `journalctl -f`, `docker logs -f` and
any log shipper can follow a send and filter by mailout or request.

Structured fields come from `extra=` (`event`, `mailout_id`, `counts`, ...)
and from the request id of the request (or background send) that logged.
Never put secrets or email bodies in a log record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import datetime, timezone

# The request that is being served, carried into the background send it
# starts (threads are started with a copy of the context).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

STRUCTURED_FIELDS = ("event", "mailout_id", "counts", "status", "rate", "error_kind", "topic", "sns_type")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(presented: str | None) -> str:
    """Keep a caller's X-Request-Id when it is sane, else make one."""
    if presented and REQUEST_ID.match(presented):
        return presented
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name in STRUCTURED_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str = "json") -> None:
    """One handler on the root logger, on stderr, in the chosen format."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_amazonsender", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._amazonsender = True  # ours, so a second call reuses it
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(level.upper())


def lean_log_records() -> None:
    """Neither format (nor gunicorn's) shows where a call came from, the
    thread's name or the multiprocessing process name, so a server's records
    need not collect them: finding the caller walks the stack on every line,
    and the service writes one or two lines per request (the "Optimization"
    section of Python's logging HOWTO). The process id stays: gunicorn's own
    lines show it. Only gunicorn's workers do this; elsewhere (the CLI, the
    tests) records keep the caller, which pytest shows."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
