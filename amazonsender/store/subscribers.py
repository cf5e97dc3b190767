"""The SQL of the subscriber list: look-ups, unsubscribes, and the rows an import adds and an export reads.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

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
