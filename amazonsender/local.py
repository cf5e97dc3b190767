"""Local use only (APP_ENV=local, what `make run` sets): an embedded Postgres
when DATABASE_URL is unset, and the URL the local service runs on, kept in
.local/ so that commands run in another terminal make links to it.
Production never comes here."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

LOCAL_DATA_DIR = Path(".local")
SERVICE_FILE = LOCAL_DATA_DIR / "service.json"


def ensure_database_url() -> str:
    """Return DATABASE_URL, starting (or joining) the embedded Postgres in
    .local/pgdata when it is unset, and export it for child processes."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    with warnings.catch_warnings():
        # platformdirs warns whenever XDG_RUNTIME_DIR is unset (root in a
        # container, a shell without a login session); pgserver only keeps a
        # lock file there, and the /tmp fallback serves that well.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # a real Postgres from a wheel; it runs as root too
    # pgserver logs every pg_ctl call at INFO, when it starts the server and
    # again at exit: noise on every command. Its warnings and errors stay.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    data_dir = (LOCAL_DATA_DIR / "pgdata").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    url = server.get_uri()
    os.environ["DATABASE_URL"] = url
    # Keep a reference: the server stops when the last process using it exits.
    globals()["_server"] = server
    log.info("DATABASE_URL is not set: using the embedded Postgres in %s", data_dir)
    return url


def record_service(base_url: str) -> None:
    """Note the base URL of the service this process runs (`dev`), for the
    commands run in other terminals; with our pid, so that a note left by a
    service that is gone is recognised as such."""
    LOCAL_DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = SERVICE_FILE.with_suffix(".partial")
    partial.write_text(json.dumps({"base_url": base_url, "pid": os.getpid()}) + "\n")
    partial.replace(SERVICE_FILE)


def forget_service() -> None:
    """Remove this process's note, and only its own."""
    if _read_service().get("pid") == os.getpid():
        SERVICE_FILE.unlink(missing_ok=True)


def running_service_url() -> str | None:
    """The base URL of the local service running now (`make run`), if any."""
    note = _read_service()
    pid, base_url = note.get("pid"), note.get("base_url")
    if not isinstance(pid, int) or pid <= 0 or not isinstance(base_url, str) or not _alive(pid):
        return None
    return base_url


def _read_service() -> dict:
    try:
        note = json.loads(SERVICE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True
