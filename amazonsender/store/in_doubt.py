"""The SQL of in-doubt ledger rows ('unknown') that no SES event has resolved: the proof SES publishes Send events, and sending them again on request.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only. Resolving a row from an
SES event is part of recording the event (store/events.py, _RESOLVE); the
events that came while the row was still 'sending' resolve it when a resume
marks it in doubt (resolve_from_stored_events).
"""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection

# Rows of the mailout still 'unknown', taken to send more than `after`
# seconds ago, whose address no SES event of the mailout names (whatever its
# type: a DeliveryDelay or an Open proves SES had the email as well as a
# Send does). The mailout's events are read once, as a set of addresses.
_UNCONFIRMED = """
    SELECT l.id FROM send_logs l
     WHERE l.mailout_id = %(id)s AND l.status = 'unknown'
       AND coalesce(l.attempted_at, l.updated_at) < now() - make_interval(secs => %(after)s)
       AND lower(l.email) NOT IN (SELECT lower(address) FROM ses_events e, unnest(e.addresses) AS address
                                   WHERE e.mailout_id = %(id)s AND address IS NOT NULL)
"""


def has_send_events(conn: Connection, mailout_id: UUID) -> bool:
    """Whether SES published at least one Send event for this mailout: the
    proof that its configuration set publishes them, without which a row
    with no event says nothing."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM ses_events WHERE mailout_id = %s AND event_type = 'Send') AS proof",
        (mailout_id,),
    ).fetchone()["proof"]


def count_in_doubt(conn: Connection, mailout_id: UUID, after_seconds: int) -> dict:
    """`unknown`: the mailout's rows still in doubt; `unconfirmed`: those of
    them that requeue_unconfirmed would send again now."""
    return conn.execute(
        f"""
        SELECT (SELECT count(*) FROM send_logs WHERE mailout_id = %(id)s AND status = 'unknown') AS unknown,
               (SELECT count(*) FROM ({_UNCONFIRMED}) AS u) AS unconfirmed
        """,
        {"id": mailout_id, "after": after_seconds},
    ).fetchone()


def requeue_unconfirmed(conn: Connection, mailout_id: UUID, after_seconds: int) -> int:
    """Put the unconfirmed in-doubt rows (see _UNCONFIRMED) back in the
    queue, to be sent again by the next run; returns how many."""
    cur = conn.execute(
        f"""
        UPDATE send_logs
           SET status = 'queued', batch_id = NULL, updated_at = now(),
               error_message = 'sent again: no SES event after the run that sent it died'
         WHERE id IN ({_UNCONFIRMED})
        """,
        {"id": mailout_id, "after": after_seconds},
    )
    return cur.rowcount


def resolve_from_stored_events(conn: Connection, mailout_id: UUID, resolutions: list[tuple[str, str, int]]) -> int:
    """Resolve the mailout's 'unknown' rows from the events already stored
    about them: SES often publishes an email's events within seconds, while
    its row is still 'sending' for a run that has died; they resolved
    nothing then. `resolutions` is (event type, status it gives, rank): of
    several events about one row the lowest rank wins (events.py decides,
    as it does for an event that arrives later). Returns how many rows it
    resolved, which the mailout counts in resolved_from_events.

    The mailout's tagged events are read once, by its index, as a set of
    addresses; only a resume that found rows in doubt calls this."""
    cur = conn.execute(
        """
        WITH found AS (
            SELECT DISTINCT ON (l.id) l.id, r.status, e.event_type, e.ses_message_id, e.payload
              FROM ses_events e
              CROSS JOIN LATERAL unnest(e.addresses) AS address
              JOIN unnest(%(types)s::text[], %(statuses)s::text[], %(ranks)s::int[])
                   AS r (event_type, status, rank) ON r.event_type = e.event_type
              JOIN send_logs l ON l.mailout_id = e.mailout_id AND l.email COLLATE "C" = address
                              AND l.status = 'unknown'
             WHERE e.mailout_id = %(id)s
             ORDER BY l.id, r.rank, e.received_at
        ),
        resolved AS (
            UPDATE send_logs l
               SET status = f.status, updated_at = now(),
                   ses_message_id = coalesce(l.ses_message_id, f.ses_message_id),
                   -- The same reasons as events.resolution writes.
                   error_message = CASE f.event_type
                       WHEN 'Rendering Failure' THEN 'SES could not render the email: '
                            || coalesce(f.payload -> 'failure' ->> 'errorMessage', 'SES gave no reason')
                       WHEN 'Reject' THEN 'SES rejected the email: '
                            || coalesce(f.payload -> 'reject' ->> 'reason', 'SES gave no reason')
                   END
              FROM found f
             WHERE l.id = f.id AND l.status = 'unknown'
            RETURNING 1
        )
        UPDATE mailouts SET resolved_from_events = resolved_from_events + (SELECT count(*) FROM resolved)
         WHERE id = %(id)s
        RETURNING (SELECT count(*) FROM resolved) AS n
        """,
        {
            "id": mailout_id,
            "types": [t for t, _, _ in resolutions],
            "statuses": [s for _, s, _ in resolutions],
            "ranks": [r for _, _, r in resolutions],
        },
    )
    row = cur.fetchone()
    return row["n"] if row else 0
