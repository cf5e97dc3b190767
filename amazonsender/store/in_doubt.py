"""The SQL of in-doubt ledger rows ('unknown') that no SES event has resolved: the proof SES publishes Send events, and sending them again on request.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only. Resolving a row from an
SES event is part of recording the event (store/events.py, _RESOLVE).
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
