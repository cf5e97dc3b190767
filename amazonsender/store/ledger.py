"""The SQL of the ledger (send_logs), one row per recipient of a mailout: the snapshot, taking a batch, recording outcomes, the counts.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only; the caller's
`with pool.connection()` block decides when it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from psycopg import Connection

from ..jsontext import storable_text


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
    # 'sent', 'failed', 'unknown' (SES may or may not have it) or 'queued'
    # (not attempted, back in the queue).
    status: str
    ses_message_id: str | None = None
    error: str | None = None


def snapshot_recipients(conn: Connection, mailout_id: UUID) -> int:
    """Queue every active subscriber for the mailout, in one statement.

    A mailout's ledger is normally empty here, and the statement is a plain
    INSERT ... SELECT. A mailout that was already (partly) sent and was set
    back to 'ready' by hand has rows: then ON CONFLICT DO NOTHING keeps the
    one-row-per-recipient promise, and recipients already in its ledger are
    not queued again. (ON CONFLICT costs a speculative insertion, one more
    index probe and WAL record, per row: over a quarter of the snapshot's
    time for a million recipients, so only that rare case pays it.) Nobody
    can add rows for this mailout between the check and the INSERT: only a
    claim does, and the claim's UPDATE holds the mailout's row lock. Should
    a row appear anyway, the unique index send_logs_one_per_recipient
    refuses the duplicate and the claim rolls back.
    """
    queued_before = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM send_logs WHERE mailout_id = %s) AS queued_before", (mailout_id,)
    ).fetchone()["queued_before"]
    cur = conn.execute(
        """
        INSERT INTO send_logs (mailout_id, subscriber_id, email, status)
        SELECT %(mailout_id)s, id, email, 'queued'
          FROM subscribers
         WHERE status = 'active'
        """
        + ('ON CONFLICT (mailout_id, email COLLATE "C") DO NOTHING' if queued_before else ""),
        {"mailout_id": mailout_id},
    )
    queued = cur.rowcount
    # Added to what was there: a mailout set back to 'ready' by hand keeps
    # counting the recipients of its earlier run.
    row = conn.execute(
        "UPDATE mailouts SET recipients = coalesce(recipients, 0) + %s WHERE id = %s RETURNING recipients",
        (queued, mailout_id),
    ).fetchone()
    return row["recipients"]


def take_batch(conn: Connection, mailout_id: UUID, size: int, batch_id: UUID) -> tuple[list[Recipient], int]:
    """Take the next `size` queued rows: mark those whose subscriber is still
    active as 'sending' (tagged with `batch_id`), the rest as 'skipped'.
    Returns (to send, skipped count).

    The caller commits this before sending anything, so every email that
    leaves has a 'sending' row behind it. Called again with the same
    `batch_id` after a lost answer to its COMMIT, it returns the rows it
    took then. SKIP LOCKED lets two runners of the same mailout (never the
    normal case) take different rows instead of waiting on each other.
    """
    taken = conn.execute(
        """
        SELECT l.id, l.email, l.subscriber_id, s.from_name
          FROM send_logs l
          LEFT JOIN subscribers s ON s.id = l.subscriber_id
         WHERE l.batch_id = %s AND l.status = 'sending'
         ORDER BY l.id
        """,
        (batch_id,),
    ).fetchall()
    if taken:
        return [Recipient(row["id"], row["email"], row["subscriber_id"], row["from_name"]) for row in taken], 0
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
            """
            UPDATE send_logs SET status = 'sending', batch_id = %s, attempted_at = now(), updated_at = now()
             WHERE id = ANY(%s)
            """,
            (batch_id, [row["id"] for row in to_send]),
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


def mark_in_doubt(conn: Connection, mailout_id: UUID) -> int:
    """Rows left 'sending' by a run that died: SES may or may not have their
    email, so they become 'unknown' and are never sent again."""
    cur = conn.execute(
        """
        UPDATE send_logs
           SET status = 'unknown', updated_at = now(),
               error_message = 'in doubt: the run stopped while this email was being sent'
         WHERE mailout_id = %s AND status = 'sending'
        """,
        (mailout_id,),
    )
    return cur.rowcount


def record_outcomes(conn: Connection, mailout_id: UUID, outcomes: list[Outcome]) -> None:
    """Write a whole batch's outcomes in one statement."""
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
             WHERE l.id = o.id
               AND (l.status = 'sending'
                    -- A run that lost the mailout to a forced resume still
                    -- knows what became of its batch: a final outcome
                    -- replaces 'unknown' (it can never cause a resend).
                    OR (l.status = 'unknown' AND o.status IN ('sent', 'failed')))
            """,
            (
                [o.log_id for o in outcomes],
                [o.status for o in outcomes],
                [o.ses_message_id for o in outcomes],
                [storable(o.error) for o in outcomes],
            ),
        )
        # An event can arrive before its batch is recorded (identity
        # notifications carry no mailout tag, only the SES message id):
        # link such early events now, so the reputation guard counts them.
        message_ids = [o.ses_message_id for o in outcomes if o.ses_message_id]
        if message_ids:
            conn.execute(
                "UPDATE ses_events SET mailout_id = %s WHERE mailout_id IS NULL AND ses_message_id = ANY(%s)",
                (mailout_id, message_ids),
            )
            # Likewise a Delivery that came first: apply it now.
            conn.execute(
                """
                UPDATE send_logs l SET status = 'delivered', updated_at = now()
                  FROM ses_events e
                 WHERE e.event_type = 'Delivery' AND e.ses_message_id = l.ses_message_id
                   AND l.ses_message_id = ANY(%s) AND l.status = 'sent'
                """,
                (message_ids,),
            )


def storable(text: str | None) -> str | None:
    """Text Postgres can hold: an error message may quote a NUL or a lone
    surrogate (an SES answer, an exception about a recipient's data), which
    text columns refuse. The one rule, jsontext.storable_text's."""
    return storable_text(text) if text else text


def count_by_status(conn: Connection, mailout_id: UUID) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) AS n FROM send_logs WHERE mailout_id = %s GROUP BY status",
        (mailout_id,),
    ).fetchall()
    return {row["status"]: row["n"] for row in rows}


def count_sent(conn: Connection, mailout_id: UUID) -> int:
    return conn.execute(
        "SELECT count(*) AS n FROM send_logs WHERE mailout_id = %s AND status IN ('sent', 'delivered')",
        (mailout_id,),
    ).fetchone()["n"]


def sent_last_minute(conn: Connection, mailout_id: UUID) -> int:
    """Emails of the mailout sent in the last minute: the pace a person
    watching a send sees."""
    return conn.execute(
        """
        SELECT count(*) AS n FROM send_logs
         WHERE mailout_id = %s AND status IN ('sent', 'delivered')
           AND updated_at > now() - interval '60 seconds'
        """,
        (mailout_id,),
    ).fetchone()["n"]


def reputation(conn: Connection, mailout_id: UUID) -> dict:
    """What the guard compares for one mailout: addresses that bounced for
    good or complained, SES's rendering failures (emails it took and never
    sent), and whether any recipient is still queued. (The sender keeps its
    own count of emails sent, so the big ledger is not counted after every
    batch.)"""
    return conn.execute(
        """
        SELECT
          (SELECT count(DISTINCT lower(address)) FROM ses_events, unnest(addresses) AS address
            WHERE mailout_id = %(id)s AND event_type = 'Bounce' AND bounce_type = 'Permanent') AS bounces,
          (SELECT count(DISTINCT lower(address)) FROM ses_events, unnest(addresses) AS address
            WHERE mailout_id = %(id)s AND event_type = 'Complaint') AS complaints,
          (SELECT count(*) FROM ses_events
            WHERE mailout_id = %(id)s AND event_type = 'Rendering Failure') AS rendering_failures,
          EXISTS (SELECT 1 FROM send_logs WHERE mailout_id = %(id)s AND status = 'queued') AS more_queued
        """,
        {"id": mailout_id},
    ).fetchone()
