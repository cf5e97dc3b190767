"""The SQL of the ledger (send_logs), one row per recipient of a mailout: the snapshot's pages, reading a batch, marking a call's rows, recording outcomes, the counts.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only; the caller's
`with pool.connection()` block decides when it commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from psycopg import Connection

from ..jsontext import storable_text


# Below every uuid: a read from the start.
NO_ID = UUID(int=0)


@dataclass(frozen=True)
class Recipient:
    log_id: UUID
    email: str
    subscriber_id: UUID | None
    name: str | None


@dataclass(frozen=True)
class Outcome:
    """What happened to one ledger row after its SES call."""

    log_id: UUID
    # 'sent', 'failed', 'unknown' (SES may or may not have it) or 'queued'
    # (not attempted, back in the queue).
    status: str
    ses_message_id: str | None = None
    error: str | None = None


# The advisory lock the snapshot's pages take shared and the subscriber
# DELETE trigger exclusive (sql/006_fast_snapshot.sql, section 4, where the
# claim took it; sql/011_paged_snapshot.sql): "amzn" + 1.
SNAPSHOT_LOCK_KEY = 1634564719


@dataclass(frozen=True)
class QueuePage:
    """What one page of the snapshot did."""

    queued: int
    # Subscribers active at the claim who left before their page came.
    skipped: int
    # The last page is committed: every recipient of the mailout has a row.
    done: bool


def start_queuing(conn: Connection, mailout_id: UUID) -> int:
    """Right after the claim's UPDATE, in its transaction: mark the mailout
    as still to be queued (queue_page does it, page by page, after the
    webhook's answer) and record in `recipients` how many rows it will have:
    its active subscribers now, plus the rows already in its ledger.

    A mailout's ledger is normally empty here. One that was (partly) sent and
    set back to 'ready' by hand has rows: then its pages use ON CONFLICT DO
    NOTHING and recipients already in its ledger are not queued again. (ON
    CONFLICT costs a speculative insertion per row, so only that rare case
    pays it.)"""
    row = conn.execute(
        """
        WITH before AS (SELECT count(*) AS n FROM send_logs WHERE mailout_id = %(id)s),
             counted AS (SELECT (SELECT n FROM before)
                                + (SELECT count(*) FROM subscribers WHERE status = 'active') AS n)
        UPDATE mailouts
           SET queuing = true, queue_cursor = NULL,
               queue_merge = (SELECT n > 0 FROM before),
               queued_rows = (SELECT n FROM before),
               recipients = (SELECT n FROM counted),
               -- What the 202 says; `recipients` becomes the rows really
               -- queued once the last page is in (queue_page).
               claim_recipients = (SELECT n FROM counted)
         WHERE id = %(id)s
        RETURNING recipients
        """,
        {"id": mailout_id},
    ).fetchone()
    return row["recipients"]


def queue_page(conn: Connection, mailout_id: UUID, runner_id: UUID, size: int) -> QueuePage | None:
    """Queue the next `size` recipients of a claimed mailout and move its
    cursor, in the caller's transaction (rows and cursor commit together,
    so a run that dies between pages is resumed from the cursor). None when
    the mailout is no longer this run's.

    A page goes through the subscribers in id order after the cursor. It
    takes those who were on the list at the claim (created before it) and
    are active now as 'queued'. Those who were active at the claim and have
    left since (unsubscribed, bounced or complained after it) get a row
    'skipped', as read_batch records one who leaves after their page: the
    ledger holds everyone who was active at the claim, and nobody is sent to
    after leaving. A subscriber deleted (or forgotten) before their page gets
    no row. Subscribers added after the claim wait for the next mailout.

    Nobody is queued twice: pages of one mailout are serialised by the lock
    on its row (FOR UPDATE), each starts after the cursor the previous one
    committed, and send_logs_one_per_recipient refuses a second row anyway.
    The shared advisory lock (SNAPSHOT_LOCK_KEY): a subscriber DELETE waits
    for the pages under way, then sees their rows; a page after it no longer
    finds the subscriber."""
    mailout = conn.execute(
        """
        SELECT queuing, queue_cursor, queue_merge, started_at FROM mailouts
         WHERE id = %s AND runner_id = %s AND status = 'sending'
           FOR UPDATE
        """,
        (mailout_id, runner_id),
    ).fetchone()
    if mailout is None:
        return None
    if not mailout["queuing"]:
        return QueuePage(0, 0, True)
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SNAPSHOT_LOCK_KEY,))
    after = "AND id > %(after)s" if mailout["queue_cursor"] is not None else ""
    merge = 'ON CONFLICT (mailout_id, email COLLATE "C") DO NOTHING' if mailout["queue_merge"] else ""
    page = conn.execute(
        f"""
        WITH page AS (
            SELECT id, email, status FROM subscribers
             WHERE created_at <= %(since)s {after}
               AND (status = 'active' OR status_updated_at > %(since)s)
             ORDER BY id
             LIMIT %(size)s
        ), added AS (
            INSERT INTO send_logs (mailout_id, subscriber_id, email, status, error_message, updated_at)
            SELECT %(mailout_id)s, id, email,
                   CASE WHEN status = 'active' THEN 'queued' ELSE 'skipped' END,
                   CASE WHEN status = 'active' THEN NULL ELSE 'subscriber is ' || status END,
                   CASE WHEN status = 'active' THEN NULL ELSE now() END
              FROM page ORDER BY id
            {merge}
            RETURNING status
        )
        SELECT (SELECT count(*) FROM page) AS seen,
               (SELECT id FROM page ORDER BY id DESC LIMIT 1) AS last,
               (SELECT count(*) FROM added WHERE status = 'queued') AS queued,
               (SELECT count(*) FROM added WHERE status = 'skipped') AS skipped
        """,
        {"mailout_id": mailout_id, "since": mailout["started_at"], "after": mailout["queue_cursor"], "size": size},
    ).fetchone()
    done = page["seen"] < size
    conn.execute(
        """
        UPDATE mailouts
           SET queue_cursor = coalesce(%(last)s, queue_cursor),
               queued_rows = queued_rows + %(added)s,
               queuing = NOT %(done)s,
               -- Once every page is in: the rows really queued.
               recipients = CASE WHEN %(done)s THEN queued_rows + %(added)s ELSE recipients END
         WHERE id = %(id)s
        """,
        {"id": mailout_id, "last": page["last"], "added": page["queued"] + page["skipped"], "done": done},
    )
    return QueuePage(page["queued"], page["skipped"], done)


def queue_progress(conn: Connection, mailout_id: UUID) -> dict | None:
    """Whether the mailout's snapshot is still under way (`queuing`), its
    ledger rows so far (`queued_rows`), and the recipients counted at the
    claim that no page has queued yet (`to_queue`, 0 once the snapshot is
    complete): what its run, or a resume, will still queue and send to,
    besides the rows already 'queued'."""
    return conn.execute(
        """
        SELECT queuing, queued_rows,
               CASE WHEN queuing THEN greatest(coalesce(recipients, 0) - queued_rows, 0) ELSE 0 END AS to_queue
          FROM mailouts WHERE id = %s
        """,
        (mailout_id,),
    ).fetchone()


def read_batch(
    conn: Connection, mailout_id: UUID, size: int, exclude: list[UUID] | None = None, after: UUID | None = None
) -> tuple[list[Recipient], int, UUID | None]:
    """Read the next `size` queued rows in id order, after `after` when
    given, leaving out `exclude` (rows the run has read already and not yet
    marked): those whose subscriber is still active come back to be sent,
    still 'queued'; the rest are marked 'skipped' here. Returns (to send,
    skipped count, the last id read).

    Reading marks nothing 'sending': mark_sending does, right before the SES
    call that carries a row. So a run that dies leaves in doubt only the
    rows of its calls in flight, and a row read and never sent stays queued
    for whoever resumes."""
    rows = conn.execute(
        """
        SELECT l.id, l.email, l.subscriber_id, s.status AS subscriber_status, s.from_name
          FROM send_logs l
          LEFT JOIN subscribers s ON s.id = l.subscriber_id
         WHERE l.mailout_id = %s AND l.status = 'queued' AND l.id > %s AND l.id <> ALL(%s::uuid[])
         ORDER BY l.id
         LIMIT %s
        """,
        (mailout_id, after or NO_ID, list(exclude or ()), size),
    ).fetchall()
    to_send = [row for row in rows if row["subscriber_status"] == "active"]
    skipped = [row["id"] for row in rows if row["subscriber_status"] != "active"]
    if skipped:
        conn.execute(
            """
            UPDATE send_logs l
               SET status = 'skipped', updated_at = now(),
                   error_message = 'subscriber is ' || coalesce(
                       (SELECT s.status FROM subscribers s WHERE s.id = l.subscriber_id), 'deleted')
             WHERE l.id = ANY(%s) AND l.status = 'queued'
            """,
            (skipped,),
        )
    recipients = [Recipient(row["id"], row["email"], row["subscriber_id"], row["from_name"]) for row in to_send]
    return recipients, len(skipped), rows[-1]["id"] if rows else None


def mark_sending(
    conn: Connection, mailout_id: UUID, runner_id: UUID, call_id: UUID, log_ids: list[UUID]
) -> list[UUID] | None:
    """Mark the rows one SES call will carry 'sending' (tagged with the
    call's id), in one statement, if the mailout is still this runner's.
    Returns the rows marked, which alone may go to SES: a row no longer
    queued (taken by another run), or whose subscriber has left the list
    since it was read, is left out. None when the mailout is no
    longer the runner's.

    The caller commits this before the call, so every email that leaves has
    a 'sending' row behind it. Repeated with the same `call_id` after a lost
    answer to its COMMIT, it finds the rows it marked then. The mailout row
    is read FOR SHARE: a takeover (which marks 'sending' rows in doubt)
    waits for this to commit, or this sees the takeover and marks nothing."""
    row = conn.execute(
        """
        WITH ours AS (
            SELECT EXISTS (
                SELECT 1 FROM mailouts
                 WHERE id = %(mailout)s AND runner_id = %(runner)s AND status = 'sending'
                   FOR SHARE
            ) AS yes
        ), marked AS (
            UPDATE send_logs
               SET status = 'sending', batch_id = %(call)s, attempted_at = now(), updated_at = now()
             WHERE id = ANY(%(ids)s::uuid[]) AND mailout_id = %(mailout)s AND (SELECT yes FROM ours)
               AND ((status = 'queued'
                     -- Still on the list: one who left since the read stays
                     -- queued, and the next read marks them 'skipped'.
                     AND EXISTS (SELECT 1 FROM subscribers s
                                  WHERE s.id = send_logs.subscriber_id AND s.status = 'active'))
                    -- This call's own mark, repeated after a lost COMMIT answer.
                    OR (status = 'sending' AND batch_id = %(call)s))
            RETURNING id
        )
        SELECT (SELECT yes FROM ours) AS ours, ARRAY(SELECT id FROM marked) AS ids
        """,
        # The ids as an array literal: uuids need no quoting, and it is
        # cheaper to build than an array parameter, call after call.
        {"mailout": mailout_id, "runner": runner_id, "call": call_id, "ids": "{" + ",".join(map(str, log_ids)) + "}"},
    ).fetchone()
    return list(row["ids"]) if row["ours"] else None


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


def requeue_unreached(conn: Connection, mailout_id: UUID, log_ids: list) -> int:
    """Rows recorded 'failed' that SES never took (each try met SES
    unavailable): back to 'queued', for the resume to send."""
    cur = conn.execute(
        """
        UPDATE send_logs SET status = 'queued', error_message = NULL, updated_at = now()
         WHERE mailout_id = %s AND id = ANY(%s) AND status = 'failed'
        """,
        (mailout_id, log_ids),
    )
    return cur.rowcount


def record_outcomes(conn: Connection, mailout_id: UUID, outcomes: list[Outcome]) -> None:
    """Write a call's outcomes in one statement (and what they bring: a
    mailout reopened for rows given back, SES events that came first)."""
    if outcomes:
        # One JSON document rather than four arrays: a call's outcomes are
        # recorded as often as calls are made, and building Postgres arrays
        # element by element cost the sending process more than the JSON.
        given = json.dumps(
            [
                {"id": str(o.log_id), "status": o.status, "ses_message_id": o.ses_message_id, "error": storable(o.error)}
                for o in outcomes
            ]
        )
        conn.execute(
            """
            UPDATE send_logs l
               SET status = o.status,
                   ses_message_id = o.ses_message_id,
                   error_message = o.error,
                   updated_at = now()
              FROM jsonb_to_recordset(%s::jsonb) AS o (id uuid, status text, ses_message_id text, error text)
             WHERE l.id = o.id
               AND (l.status = 'sending'
                    -- A run that lost the mailout to a resume (after a
                    -- person's pause, --force, or a heartbeat gone stale
                    -- while the run lived) still knows what became of its
                    -- calls in flight, which the resume marked 'unknown': a final
                    -- outcome replaces 'unknown', and so does 'queued' for a
                    -- row it never handed to SES, so that someone sends it.
                    OR (l.status = 'unknown' AND o.status IN ('sent', 'failed', 'queued')))
            """,
            (given,),
        )
        if any(o.status == "queued" for o in outcomes):
            # Rows given back by a run that lost the mailout, after the run
            # that took it over had already ended it 'sent': it is not
            # finished. Paused as a shutdown is, the watcher resumes it at once.
            conn.execute(
                """
                UPDATE mailouts
                   SET status = 'paused', sent_at = NULL, stop_reason = 'shutdown', next_resume_at = now(),
                       error = 'rows came back to the queue after it ended: the run it was taken from returned'
                               ' what it had not sent'
                 WHERE id = %(id)s AND status = 'sent'
                   AND EXISTS (SELECT 1 FROM send_logs WHERE mailout_id = %(id)s AND status = 'queued')
                """,
                {"id": mailout_id},
            )
        # An event can arrive before its call is recorded (identity
        # notifications carry no mailout tag, only the SES message id):
        # link such early events now, so the reputation guard counts them.
        # Likewise a Delivery that came first: apply it now. (One statement:
        # the two touch different tables.)
        if any(o.ses_message_id for o in outcomes):
            conn.execute(
                """
                WITH ids AS (
                    SELECT o.ses_message_id FROM jsonb_to_recordset(%(given)s::jsonb) AS o (ses_message_id text)
                     WHERE o.ses_message_id IS NOT NULL
                ), linked AS (
                    UPDATE ses_events SET mailout_id = %(mailout)s
                     WHERE mailout_id IS NULL AND ses_message_id IN (SELECT ses_message_id FROM ids)
                )
                UPDATE send_logs l SET status = 'delivered', updated_at = now()
                  FROM ses_events e
                 WHERE e.event_type = 'Delivery' AND e.ses_message_id = l.ses_message_id
                   AND l.ses_message_id IN (SELECT ses_message_id FROM ids) AND l.status = 'sent'
                """,
                {"given": given, "mailout": mailout_id},
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
    own count of emails sent, so the big ledger is not counted at every
    read.)"""
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
