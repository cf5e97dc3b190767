"""The SQL of mailout rows: create, read and list them, claim one, its status transitions and its run's heartbeat.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
               resolved_from_events,
               stop_reason, auto_resume_attempts, next_resume_at, now() AS db_now
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
        SELECT id, status, claim_recipients AS recipients FROM mailouts
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


def claim_for_resume(
    conn: Connection,
    mailout_id: UUID,
    runner_id: UUID,
    stale_seconds: int,
    force: bool,
    *,
    automatic: Automatic | None = None,
) -> bool:
    """Take over a mailout whose run ended early: 'failed' or 'paused', or
    'sending' with a heartbeat older than `stale_seconds` (its runner is
    gone), or any 'sending' one with `force`. Conditional like the first
    claim, so two resumes at once cannot both win.

    An `automatic` resume (the watcher's) takes a 'failed' or 'paused' one
    only if its stop_reason is one of `automatic.reasons` and its
    next_resume_at has come by `automatic.now`, and counts the attempt when
    the reason is one of `automatic.counted`; a resume by hand starts the
    count again. Either clears the stop reason."""
    auto = automatic is not None
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = 'sending', heartbeat_at = now(), error = NULL, runner_id = %(runner)s,
               started_at = coalesce(started_at, now()),
               stop_reason = NULL, next_resume_at = NULL,
               auto_resume_attempts = CASE WHEN NOT %(auto)s THEN 0
                                           WHEN stop_reason = ANY(%(counted)s) THEN auto_resume_attempts + 1
                                           ELSE auto_resume_attempts END
         WHERE id = %(id)s
           AND ((status IN ('failed', 'paused')
                 AND (NOT %(auto)s
                      OR (stop_reason = ANY(%(reasons)s)
                          AND (next_resume_at IS NULL OR next_resume_at <= %(now)s::timestamptz))))
                OR (status = 'sending'
                    AND (%(force)s OR heartbeat_at IS NULL
                         OR heartbeat_at < now() - make_interval(secs => %(stale)s))))
        """,
        {
            "id": mailout_id,
            "runner": runner_id,
            "force": force and not auto,
            "stale": stale_seconds,
            "auto": auto,
            "reasons": list(automatic.reasons) if auto else [],
            "counted": list(automatic.counted) if auto else [],
            "now": automatic.now if auto else None,
        },
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class Automatic:
    """What an automatic resume may take (claim_for_resume)."""

    reasons: tuple[str, ...]
    counted: tuple[str, ...]
    now: datetime


def interrupted_mailouts(conn: Connection, reasons: tuple[str, ...]) -> list[dict]:
    """The mailouts a watcher may have to resume: every 'sending' one (its
    heartbeat says whether its run lives) and the 'paused' or 'failed' ones
    stopped for one of `reasons`; with the database's clock."""
    return conn.execute(
        """
        SELECT id, status, stop_reason, next_resume_at, auto_resume_attempts, heartbeat_at,
               extract(epoch FROM now() - heartbeat_at) AS heartbeat_age_seconds, now() AS db_now
          FROM mailouts
         WHERE status = 'sending' OR (status IN ('paused', 'failed') AND stop_reason = ANY(%s))
         ORDER BY started_at
        """,
        (list(reasons),),
    ).fetchall()


def pause_mailout(conn: Connection, mailout_id: UUID, error: str) -> str | None:
    """A person's pause: 'sending', 'paused' or 'failed' -> 'paused' with
    stop_reason 'operator' (never resumed by itself). A running run finds its
    mailout no longer its own at its next heartbeat and stops. Returns the
    status it had (None when there is no such mailout); a mailout in another
    status is left as it is."""
    row = conn.execute("SELECT status FROM mailouts WHERE id = %s FOR UPDATE", (mailout_id,)).fetchone()
    if row is None:
        return None
    if row["status"] in ("sending", "paused", "failed"):
        conn.execute(
            """
            UPDATE mailouts SET status = 'paused', stop_reason = 'operator', next_resume_at = NULL, error = %s
             WHERE id = %s
            """,
            (storable(error), mailout_id),
        )
    return row["status"]


def heartbeat(conn: Connection, mailout_id: UUID, runner_id: UUID) -> bool:
    """Record a sign of life; False when this run no longer owns the mailout."""
    cur = conn.execute(
        "UPDATE mailouts SET heartbeat_at = now() WHERE id = %s AND runner_id = %s AND status = 'sending'",
        (mailout_id, runner_id),
    )
    return cur.rowcount == 1


def finish_mailout(
    conn: Connection,
    mailout_id: UUID,
    runner_id: UUID,
    status: str,
    error: str | None = None,
    *,
    stop_reason: str | None = None,
    resume_in: int | None = None,
) -> bool:
    """Leave 'sending' for 'sent' (with sent_at), or for 'failed' or 'paused'
    with the reason in `error` and `stop_reason` (a word of the CHECK
    constraint), and the next automatic resume due `resume_in` seconds from
    now, if any; only the run that owns the mailout can."""
    cur = conn.execute(
        """
        UPDATE mailouts
           SET status = %(status)s,
               sent_at = CASE WHEN %(status)s = 'sent' THEN now() ELSE sent_at END,
               error = %(error)s,
               heartbeat_at = now(),
               stop_reason = %(stop_reason)s,
               next_resume_at = now() + make_interval(secs => %(resume_in)s::integer),
               auto_resume_attempts = CASE WHEN %(status)s = 'sent' THEN 0 ELSE auto_resume_attempts END
         WHERE id = %(id)s AND status = 'sending' AND runner_id = %(runner)s
           -- Never 'sent' with a row queued: one given back at the last
           -- moment by a run this one took the mailout from (record_outcomes).
           AND (%(status)s <> 'sent'
                OR NOT EXISTS (SELECT 1 FROM send_logs WHERE mailout_id = %(id)s AND status = 'queued'))
        """,
        {
            "id": mailout_id,
            "runner": runner_id,
            "status": status,
            "error": storable(error),
            "stop_reason": None if stop_reason is None else str(getattr(stop_reason, "value", stop_reason)),
            "resume_in": resume_in,
        },
    )
    return cur.rowcount == 1
