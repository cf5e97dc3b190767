"""The SQL of mailout rows: create, read and list them, claim one, its status transitions and its run's heartbeat.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection

from .ledger import storable


def create_mailout(conn: Connection, subject: str, body: str, status: str) -> UUID:
    return conn.execute(
        "INSERT INTO mailouts (subject, body, status) VALUES (%s, %s, %s) RETURNING id", (subject, body, status)
    ).fetchone()["id"]


def get_mailout(conn: Connection, mailout_id: UUID) -> dict | None:
    return conn.execute(
        """
        SELECT id, subject, body, status, created_at, sent_at, started_at, recipients, heartbeat_at, error,
               runner_id, extract(epoch FROM now() - heartbeat_at) AS heartbeat_age_seconds,
               resolved_from_events
          FROM mailouts WHERE id = %s
        """,
        (mailout_id,),
    ).fetchone()


def list_mailouts(conn: Connection, limit: int) -> list[dict]:
    """The newest mailouts, with `counts`: their ledger rows per status (as
    count_by_status gives them) while they are unfinished ('sending',
    'paused' or 'failed'), else None.

    The counts are the ledger's, read now: rows a run has taken show as
    'sending' as soon as it has taken them, and outcomes as soon as it has
    recorded them, the first batch's included. Finished mailouts and the
    ones not started are not counted: a list of old mailouts of a million
    recipients each would count every one of their rows again on every call
    (`mailout status ID` counts one)."""
    return conn.execute(
        """
        SELECT m.id, m.status, m.subject, m.recipients, m.created_at, m.sent_at,
               (SELECT jsonb_object_agg(per_status.status, per_status.n)
                  FROM (SELECT l.status, count(*) AS n FROM send_logs l
                         WHERE l.mailout_id = m.id AND m.status IN ('sending', 'paused', 'failed')
                         GROUP BY l.status) AS per_status) AS counts
          FROM (SELECT id, status, subject, recipients, created_at, sent_at
                  FROM mailouts ORDER BY created_at DESC LIMIT %s) AS m
         ORDER BY m.created_at DESC
        """,
        (limit,),
    ).fetchall()


def mark_ready(conn: Connection, mailout_id: UUID) -> bool:
    """draft -> ready, and nothing else."""
    cur = conn.execute("UPDATE mailouts SET status = 'ready' WHERE id = %s AND status = 'draft'", (mailout_id,))
    return cur.rowcount == 1


def claim_mailout(conn: Connection, mailout_id: UUID, runner_id: UUID, event_id: str | None = None) -> bool:
    """The specification's atomic transition. Two claims of one mailout at once:
    the second UPDATE waits on the first one's row lock, then re-checks
    `status = 'ready'`, finds 'sending' and matches nothing. `event_id`, the
    Notion event that asked for it (or None), is written by the same UPDATE:
    see claimed_by_event."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = 'sending', started_at = now(), heartbeat_at = now(), error = NULL, runner_id = %s,
               claim_event_id = %s
         WHERE id = %s AND status = 'ready'
        """,
        (runner_id, event_id, mailout_id),
    )
    return cur.rowcount == 1


def claimed_by_event(conn: Connection, mailout_id: UUID, event_id: str) -> dict | None:
    """The mailout, if its claim came from this very event (a retry of the
    request that claimed it), else None. Compared byte for byte: the id is
    the caller's text, and no collation may make two ids equal."""
    return conn.execute(
        """
        SELECT id, status, recipients FROM mailouts
         WHERE id = %s AND claim_event_id COLLATE "C" = %s AND status <> 'ready' AND status <> 'draft'
        """,
        (mailout_id, event_id),
    ).fetchone()


def claim_for_resend(conn: Connection, mailout_id: UUID, runner_id: UUID) -> bool:
    """Take a finished ('sent') mailout back to 'sending' for
    `mailout resume --resend-unconfirmed`; conditional like every claim."""
    cur = conn.execute(
        """
        UPDATE mailouts SET status = 'sending', heartbeat_at = now(), error = NULL, runner_id = %s
         WHERE id = %s AND status = 'sent'
        """,
        (runner_id, mailout_id),
    )
    return cur.rowcount == 1


def claim_for_resume(conn: Connection, mailout_id: UUID, runner_id: UUID, stale_seconds: int, force: bool) -> bool:
    """Take over a mailout whose run ended early: 'failed' or 'paused', or
    'sending' with a heartbeat older than `stale_seconds` (its runner is
    gone), or any 'sending' one with `force`. Conditional like the first
    claim, so two resumes at once cannot both win."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = 'sending', heartbeat_at = now(), error = NULL, runner_id = %(runner)s,
               started_at = coalesce(started_at, now())
         WHERE id = %(id)s
           AND (status IN ('failed', 'paused')
                OR (status = 'sending'
                    AND (%(force)s OR heartbeat_at IS NULL
                         OR heartbeat_at < now() - make_interval(secs => %(stale)s))))
        """,
        {"id": mailout_id, "runner": runner_id, "force": force, "stale": stale_seconds},
    )
    return cur.rowcount == 1


def heartbeat(conn: Connection, mailout_id: UUID, runner_id: UUID) -> bool:
    """Record a sign of life; False when this run no longer owns the mailout."""
    cur = conn.execute(
        "UPDATE mailouts SET heartbeat_at = now() WHERE id = %s AND runner_id = %s AND status = 'sending'",
        (mailout_id, runner_id),
    )
    return cur.rowcount == 1


def finish_mailout(
    conn: Connection, mailout_id: UUID, runner_id: UUID, status: str, error: str | None = None
) -> bool:
    """Leave 'sending' for 'sent' (with sent_at), or for 'failed' or 'paused'
    with the reason in `error`; only the run that owns the mailout can."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = %(status)s,
               sent_at = CASE WHEN %(status)s = 'sent' THEN now() ELSE sent_at END,
               error = %(error)s,
               heartbeat_at = now()
         WHERE id = %(id)s AND status = 'sending' AND runner_id = %(runner)s
        """,
        {"id": mailout_id, "runner": runner_id, "status": status, "error": storable(error)},
    )
    return cur.rowcount == 1
