"""Logging: its levels, its formats and what a log line may hold.

JSON is one object per line, so `journalctl -f`, `docker logs -f` and any log
shipper can follow a send and filter by mailout or request. Structured fields
come from `extra=` (`event`, `mailout_id`, `counts`, ...) and from the request
id of the request (or background send) that logged.

What a log may hold:
- LOG_LEVEL sets the level of our own loggers (`amazonsender.*`) only.
  Libraries stay at INFO or above: below it botocore logs every SendEmail
  request (the raw email in base64: body, address, unsubscribe token),
  urllib3 every URL with its query, and others their requests' headers.
- In text format a record is one line: control characters in a message, its
  arguments or a traceback are escaped, so a value from a request (a
  TopicArn, a path) cannot forge a line. JSON escapes them itself.
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

OWN_LOGGER = "amazonsender"
LIBRARY_FLOOR = logging.INFO

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

# What could end a line or rewrite one on a terminal: C0 controls (LF, CR,
# tab, ESC...), DEL, C1 controls (NEL...), U+2028 and U+2029 (line breaks to
# str.splitlines() and some viewers) and the bidirectional overrides, which
# make a line display in another order than it reads.
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """`text` on one line, its control characters written as Python would
    (\\n, \\x1b, \\u2028). Backslashes stay as they are: a reader can be
    misled into seeing an escape, but never a second line."""
    return CONTROLS.sub(_escape, text)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, one line per record whatever its message, arguments,
    traceback or stack hold (the traceback's own lines are joined too)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


def is_ours_or_not_debug(record: logging.LogRecord) -> bool:
    """The handler's filter: below LIBRARY_FLOOR only our own records pass,
    also from a library that sets its own logger's level."""
    name = record.name
    return record.levelno >= LIBRARY_FLOOR or name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


def configure_logging(level: str, log_format: str = "json") -> None:
    """One handler on the root logger, on stderr, in the chosen format.
    `level` is our loggers' level; every other logger inherits the root's,
    never below LIBRARY_FLOOR."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_amazonsender", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._amazonsender = True  # ours, so a second call reuses it
        handler.addFilter(is_ours_or_not_debug)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    level_number = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(max(level_number, LIBRARY_FLOOR))
    logging.getLogger(OWN_LOGGER).setLevel(level_number)


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
