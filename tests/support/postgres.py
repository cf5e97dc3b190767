"""A Postgres of a test's own, to stop and start mid-send (the shared server on 5432 is never restarted)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from amazonsender import db


@contextmanager
def private_postgres():
    """A Postgres of the test's own with the schema; yields (server, url).
    As root, pgserver runs it as the user 'pgserver', so its folder is not
    under pytest's tmp_path: every pytest session that starts takes the
    others' access to /tmp/pytest-of-<user> away again."""
    import pgserver

    parent = Path(tempfile.mkdtemp(prefix="amazonsender-faults-pg-"))
    try:
        server = pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
        try:
            url = server.get_uri()
            db.upgrade(url)
            yield server, url
        finally:
            # pgserver would stop only the postmaster it started, which a
            # restart replaced: stop whichever runs now.
            stop_postgres(server)
            server.cleanup()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def stop_postgres(server) -> None:
    from pgserver._commands import pg_ctl

    try:
        pg_ctl(["status"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    except subprocess.CalledProcessError:
        return  # not running
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)


def restart_postgres(server, down_seconds: float, mode: str = "fast") -> None:
    """Stop the server (`fast`: every session is ended and its transaction
    rolled back; `immediate`: every process quits at once, as in a crash, and
    the start replays the WAL), stay away, start it again with the options
    pgserver gave it (a Unix socket only)."""
    from pgserver._commands import pg_ctl

    socket_dir = server.get_postmaster_info().socket_dir
    pg_ctl(["-w", "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    time.sleep(down_seconds)
    pg_ctl(
        ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=30,
    )
