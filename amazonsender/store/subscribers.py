"""The SQL of the subscriber list: look-ups, unsubscribes, and the rows an import adds and an export reads.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from psycopg import Connection


def count_active_subscribers(conn: Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM subscribers WHERE status = 'active'").fetchone()["n"]


def subscribers_by_email(conn: Connection, addresses: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT id, email, from_name, status FROM subscribers WHERE lower(email) = ANY(%s)",
        ([a.lower() for a in addresses],),
    ).fetchall()
    return {row["email"].lower(): row for row in rows}


def get_subscriber(conn: Connection, subscriber_id: UUID) -> dict | None:
    return conn.execute(
        "SELECT id, email, status, status_updated_at FROM subscribers WHERE id = %s",
        (subscriber_id,),
    ).fetchone()


def unsubscribe(conn: Connection, subscriber_id: UUID) -> bool:
    """Only an active subscriber becomes 'unsubscribed': a bounced or
    complained address keeps its stronger status, and a repeat changes nothing."""
    cur = conn.execute(
        """
        UPDATE subscribers SET status = 'unsubscribed', status_updated_at = now()
         WHERE id = %s AND status = 'active'
        """,
        (subscriber_id,),
    )
    return cur.rowcount == 1


# --- import and export (subscribers.py reads and writes the CSV) -------------


def statuses_by_address(conn: Connection, addresses: list[str]) -> dict[str, str]:
    """Who is on the list already, and with which status: lower-cased
    address -> status."""
    rows = conn.execute(
        "SELECT lower(email) AS address, status FROM subscribers WHERE lower(email) = ANY(%s)",
        ([a.lower() for a in addresses],),
    ).fetchall()
    return {row["address"]: row["status"] for row in rows}


def add_active_subscribers(conn: Connection, batch: list[tuple[str, str | None]]) -> int:
    """Add (address, name) pairs as 'active' in one statement; returns how
    many were new. The unique index on lower(email) turns a race with
    another import into "already there", never an error."""
    addresses = [address for address, _ in batch]
    cur = conn.execute(
        """
        INSERT INTO subscribers (email, from_name, status)
        SELECT address, name, 'active' FROM unnest(%s::text[], %s::text[]) AS new (address, name)
        ON CONFLICT ((lower(email))) DO NOTHING
        """,
        (addresses, [name for _, name in batch]),
    )
    return cur.rowcount


def stream_subscribers(conn: Connection, status: str | None = None) -> Iterator[dict]:
    """Every subscriber (with `status`, those with that status), oldest
    first, through a server-side cursor so a big list never sits in memory."""
    with conn.cursor(name="subscribers_export") as cursor:
        cursor.execute(
            """
                SELECT email, from_name, status, status_updated_at, created_at FROM subscribers
                 WHERE %(status)s::text IS NULL OR status = %(status)s
                 ORDER BY created_at, email
                """,
            {"status": status},
        )
        yield from cursor


def count_subscribers_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) AS n FROM subscribers GROUP BY status ORDER BY status")
    return {row["status"]: row["n"] for row in rows}


def lock_subscriber_by_address(conn: Connection, address: str) -> dict | None:
    """The subscriber with this address in any case, locked FOR UPDATE so
    that the status a caller reports is the one its update saw, even if an
    SES event arrives for the same address meanwhile."""
    return conn.execute(
        "SELECT id, email, status FROM subscribers WHERE lower(email) = lower(%s) FOR UPDATE",
        (address,),
    ).fetchone()
