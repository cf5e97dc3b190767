"""Connections and migrations.

The pool hands out connections that commit when their `with` block ends
cleanly and roll back when it raises (psycopg_pool's behaviour), so every unit
of work in `store` is exactly one transaction.
"""

from __future__ import annotations

import logging
import re
import select
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")
# Any constant works; it only has to be the same for every process, so that
# two `db upgrade` runs at once apply each file once.
MIGRATION_LOCK_ID = 0x616D7A6E  # "amzn"
POOL_CHECKOUT_SECONDS = 10.0


def connect_kwargs() -> dict:
    # prepare_threshold=None: never use server-side prepared statements.
    # Supabase's transaction pooler (port 6543) hands each transaction to any
    # server connection, where a statement prepared on another one does not
    # exist. Our statements are few and cheap to plan, so we lose nothing by
    # always running unprepared, and the same URL works with or without a pooler.
    return {"row_factory": dict_row, "prepare_threshold": None}


def check_connection(conn: psycopg.Connection) -> None:
    """The pool's check of a connection before it hands it out; raises when
    the connection is no longer usable, and the pool takes another.

    A connection the server ended while it sat in the pool (a restart,
    pg_terminate_backend, a pooler's idle timeout) has something to read:
    the server's last words, or at least the end of the stream. Only then is
    the round trip of psycopg_pool's own check (an empty query) needed to
    find out, so a busy service does not pay one round trip per request for
    connections that were fine a moment ago."""
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def create_pool(database_url: str, *, max_size: int = 10) -> ConnectionPool:
    """Open a pool without waiting: the app starts even while the database is
    away, and /healthz reports it."""
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        kwargs=connect_kwargs(),
        check=check_connection,
        timeout=POOL_CHECKOUT_SECONDS,
        open=False,
        name="amazonsender",
    )
    pool.open(wait=False)
    return pool


# How long a command waits for the database to answer before it says so: a
# host that drops packets would otherwise hold it for minutes (TCP's own
# retries), and a pool checkout for POOL_CHECKOUT_SECONDS with no reason given.
CONNECT_TIMEOUT_SECONDS = 5


class DatabaseUnreachable(Exception):
    """No connection to DATABASE_URL; the message is one line naming the
    host and the reason (never the password)."""


class SchemaMissing(Exception):
    """The database answers but `db upgrade` never ran on it."""


def check_reachable(database_url: str, timeout: float = CONNECT_TIMEOUT_SECONDS, *, migrated: bool = False) -> None:
    """Open and close one connection, or raise DatabaseUnreachable; with
    `migrated`, raise SchemaMissing when no migration has run there."""
    try:
        with psycopg.connect(database_url, connect_timeout=max(1, round(timeout)), prepare_threshold=None) as conn:
            if migrated and conn.execute("SELECT to_regclass('schema_migrations') IS NULL").fetchone()[0]:
                raise SchemaMissing(_where(database_url))
    except psycopg.errors.ConnectionTimeout:
        raise DatabaseUnreachable(f"{_where(database_url)}: no answer within {timeout:g} s") from None
    except psycopg.Error as exc:
        raise DatabaseUnreachable(f"{_where(database_url)}: {_reason(exc)}") from None


def _where(database_url: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.Error:
        return "DATABASE_URL (not a Postgres connection string)"
    host = info.get("host") or "the local socket"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{info['port']}" if info.get("port") else host


def _reason(exc: psycopg.Error) -> str:
    """libpq's first line, without the prefixes that repeat the host:
    'connection failed: connection to server at "h", port 5432 failed:
    FATAL:  password authentication failed' becomes the last part."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = re.sub(r"^(connection failed|connection is bad): ", "", first)
    return re.sub(r"^connection to server .*? failed: (FATAL: +)?", "", reason) or first


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    files = [path for path in directory.glob("*.sql") if MIGRATION_NAME.match(path.name)]
    return sorted(files, key=lambda path: int(MIGRATION_NAME.match(path.name).group(1)))


def upgrade(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the numbered SQL files not applied yet and return their names.

    Everything runs in one transaction under a transaction-level advisory
    lock: two upgrades at once apply each file once, a failing file leaves
    the schema as it was, and it works through Supabase's transaction pooler
    (a session-level lock could be taken on one server connection and
    released on another there).
    """
    applied_now = []
    with psycopg.connect(database_url, prepare_threshold=None) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        conn.execute("ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in migration_files(directory):
            if path.name in done:
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))
            log.info("applying migration %s", path.name)
            applied_now.append(path.name)
        # After every upgrade, not only 007's: whatever a later migration
        # (or anyone) added to the schema loses what Supabase's default
        # privileges granted the anon and authenticated roles.
        if conn.execute("SELECT to_regproc('revoke_api_roles') IS NOT NULL").fetchone()[0]:
            conn.execute(
                "SELECT revoke_api_roles(relnamespace) FROM pg_class WHERE oid = 'schema_migrations'::regclass"
            )
    return applied_now


@contextmanager
def single_statement(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit mode, for a unit of work that is one
    SQL statement. A statement is atomic on its own, so this is the same
    unit of work as a transaction, minus the BEGIN and COMMIT round trips.
    The connection goes back to the pool out of autocommit, as it came."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            # Always possible on a working connection (autocommit leaves no
            # transaction open); a broken one is discarded by the pool.
            with suppress(psycopg.Error):
                conn.autocommit = False
