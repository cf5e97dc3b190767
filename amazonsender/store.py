"""Every SQL statement the service runs, with bound parameters only.

Functions take an open connection and run inside the caller's transaction;
the caller's `with pool.connection()` block decides when it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from psycopg import Connection


@dataclass(frozen=True)
class Recipient:
    log_id: UUID
    email: str
    subscriber_id: UUID | None
    name: str | None


@dataclass(frozen=True)
class Outcome:
    """What happened to one ledger row after its batch."""

    log_id: UUID
    status: str  # 'sent', 'failed' or 'queued' (not attempted, back in the queue)
    ses_message_id: str | None = None
    error: str | None = None


def get_mailout(conn: Connection, mailout_id: UUID) -> dict | None:
    return conn.execute(
        "SELECT id, subject, body, status, created_at, sent_at, started_at, recipients, heartbeat_at, error"
        " FROM mailouts WHERE id = %s",
        (mailout_id,),
    ).fetchone()


def claim_mailout(conn: Connection, mailout_id: UUID) -> bool:
    """The specification's atomic transition. Two claims of one mailout at once:
    the second UPDATE waits on the first one's row lock, then re-checks
    `status = 'ready'`, finds 'sending' and matches nothing."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = 'sending', started_at = now(), heartbeat_at = now(), error = NULL
         WHERE id = %s AND status = 'ready'
        """,
        (mailout_id,),
    )
    return cur.rowcount == 1


def snapshot_recipients(conn: Connection, mailout_id: UUID) -> int:
    """Queue every active subscriber for the mailout, in one statement.

    ON CONFLICT DO NOTHING keeps the one-row-per-recipient promise even if a
    mailout that was already (partly) sent is set back to 'ready' by hand:
    recipients already in its ledger are not queued again.
    """
    cur = conn.execute(
        """
        INSERT INTO send_logs (mailout_id, subscriber_id, email, status)
        SELECT %(mailout_id)s, id, email, 'queued'
          FROM subscribers
         WHERE status = 'active'
        ON CONFLICT ON CONSTRAINT send_logs_one_per_recipient DO NOTHING
        """,
        {"mailout_id": mailout_id},
    )
    recipients = cur.rowcount
    conn.execute("UPDATE mailouts SET recipients = %s WHERE id = %s", (recipients, mailout_id))
    return recipients


def take_batch(conn: Connection, mailout_id: UUID, size: int) -> tuple[list[Recipient], int]:
    """Take the next `size` queued rows: mark those whose subscriber is still
    active as 'sending', the rest as 'skipped'. Returns (to send, skipped count).

    The caller commits this before sending anything, so every email that
    leaves has a 'sending' row behind it. SKIP LOCKED lets two runners of the
    same mailout (never the normal case) take different rows instead of
    waiting on each other.
    """
    rows = conn.execute(
        """
        SELECT l.id, l.email, l.subscriber_id, s.status AS subscriber_status, s.from_name
          FROM send_logs l
          LEFT JOIN subscribers s ON s.id = l.subscriber_id
         WHERE l.mailout_id = %s AND l.status = 'queued'
         ORDER BY l.id
         LIMIT %s
           FOR UPDATE OF l SKIP LOCKED
        """,
        (mailout_id, size),
    ).fetchall()
    to_send = [row for row in rows if row["subscriber_status"] == "active"]
    skipped = [row for row in rows if row["subscriber_status"] != "active"]
    if to_send:
        conn.execute(
            "UPDATE send_logs SET status = 'sending', attempted_at = now(), updated_at = now() WHERE id = ANY(%s)",
            ([row["id"] for row in to_send],),
        )
    if skipped:
        conn.execute(
            """
            UPDATE send_logs l
               SET status = 'skipped', updated_at = now(),
                   error_message = 'subscriber is ' || coalesce(
                       (SELECT s.status FROM subscribers s WHERE s.id = l.subscriber_id), 'deleted')
             WHERE l.id = ANY(%s)
            """,
            ([row["id"] for row in skipped],),
        )
    recipients = [Recipient(row["id"], row["email"], row["subscriber_id"], row["from_name"]) for row in to_send]
    return recipients, len(skipped)


def record_outcomes(conn: Connection, mailout_id: UUID, outcomes: list[Outcome]) -> None:
    """Write a whole batch's outcomes in one statement and refresh the heartbeat."""
    if outcomes:
        conn.execute(
            """
            UPDATE send_logs l
               SET status = o.status,
                   ses_message_id = o.ses_message_id,
                   error_message = o.error,
                   updated_at = now()
              FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])
                   AS o (id, status, ses_message_id, error)
             WHERE l.id = o.id AND l.status = 'sending'
            """,
            (
                [o.log_id for o in outcomes],
                [o.status for o in outcomes],
                [o.ses_message_id for o in outcomes],
                [o.error for o in outcomes],
            ),
        )
    conn.execute("UPDATE mailouts SET heartbeat_at = now() WHERE id = %s", (mailout_id,))


def finish_mailout(conn: Connection, mailout_id: UUID, status: str, error: str | None = None) -> bool:
    """Leave 'sending' for 'sent' (with sent_at) or 'failed' (with the error)."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = %(status)s,
               sent_at = CASE WHEN %(status)s = 'sent' THEN now() ELSE sent_at END,
               error = %(error)s,
               heartbeat_at = now()
         WHERE id = %(id)s AND status = 'sending'
        """,
        {"id": mailout_id, "status": status, "error": error},
    )
    return cur.rowcount == 1


def count_by_status(conn: Connection, mailout_id: UUID) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) AS n FROM send_logs WHERE mailout_id = %s GROUP BY status",
        (mailout_id,),
    ).fetchall()
    return {row["status"]: row["n"] for row in rows}


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
