"""Local use only (APP_ENV=local, what `make run` sets): an embedded Postgres
when DATABASE_URL is unset. Production never comes here."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LOCAL_DATA_DIR = Path(".local")


def ensure_database_url() -> str:
    """Return DATABASE_URL, starting (or joining) the embedded Postgres in
    .local/pgdata when it is unset, and export it for child processes."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    import pgserver  # a real Postgres from a wheel; it runs as root too

    data_dir = (LOCAL_DATA_DIR / "pgdata").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    url = server.get_uri()
    os.environ["DATABASE_URL"] = url
    # Keep a reference: the server stops when the last process using it exits.
    globals()["_server"] = server
    log.warning("DATABASE_URL is not set: using the embedded Postgres in %s", data_dir)
    return url
