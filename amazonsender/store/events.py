"""The SQL of SES events (sends, bounces, complaints, deliveries, rejects, rendering failures): each SNS message stored and applied in one statement.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

from psycopg import Connection

# --- SES events (bounces, complaints, deliveries) ---------------------------
#
# An SNS message is stored and applied in one statement: its insert under the
# unique SNS MessageId, the look-ups it needs and its effect on the list are
# parts of one WITH query, and the effect applies only when the insert did.
# A repeated MessageId inserts nothing and so changes nothing. One statement
# is atomic on its own: the caller may run it in autocommit (one round trip)
# or inside a transaction of its own.

_NEW_EVENT = """
    new_event AS (
        INSERT INTO ses_events
               (sns_message_id, sns_type, event_type, addresses, ses_message_id, mailout_id, bounce_type,
                feedback_id, payload)
        VALUES (%(sns_message_id)s, %(sns_type)s, %(event_type)s, %(addresses)s::text[], %(ses_message_id)s,
                {mailout},
                %(bounce_type)s, %(feedback_id)s, %(payload)s::jsonb)
        ON CONFLICT ON CONSTRAINT ses_events_sns_message_id_key DO NOTHING
        RETURNING 1
    )"""

# The event's mailout, by what the event carries (see _link): its mailout_id
# tag (NULL when no such mailout exists), else the mailout whose ledger holds
# its SES message id (identity notifications have no tags), else none.
_MAILOUT = {
    "tag": "(SELECT id FROM mailouts WHERE id = %(mailout_id)s::uuid)",
    "ledger": "(SELECT mailout_id FROM send_logs WHERE ses_message_id = %(ses_message_id)s LIMIT 1)",
    None: "NULL::uuid",
}

# Identity notifications and a configuration set can both publish one bounce
# or complaint: two SNS messages with one feedbackId. The second is recorded
# but not applied. (A statement never sees its own insert, so this sees only
# the events stored before.) An event without a feedbackId is never a repeat,
# and its statement does without this part.
_REPEAT = """,
    repeat AS (
        SELECT EXISTS (SELECT 1 FROM ses_events
                        WHERE event_type = %(event_type)s AND feedback_id = %(feedback_id)s) AS seen
    )"""

# What an event does to the list, by name; events.effect_of picks one and its
# parameters. {applies} is the condition for changing anything: a new message
# that is not a repeat. Statuses only ever move away from 'active': no event
# touches a subscriber who is not active, so nobody is reactivated or
# relabelled.
EVENT_EFFECTS = {
    # A permanent bounce or a complaint: a final status.
    "suppress": """,
    effect AS (
        UPDATE subscribers
           SET status = %(status)s, status_reason = %(reason)s, status_updated_at = now(),
               bounce_type = coalesce(%(status_bounce_type)s, bounce_type),
               bounce_subtype = coalesce(%(status_bounce_subtype)s, bounce_subtype)
         WHERE lower(email) = ANY(%(lowered)s::text[]) AND status = 'active' AND {applies}
    )""",
    # A transient (or undetermined) bounce: one more in a row; the `limit`-th
    # suppresses the address.
    "soft_bounce": """,
    effect AS (
        UPDATE subscribers
           SET soft_bounces = soft_bounces + 1,
               status = CASE WHEN soft_bounces + 1 >= %(limit)s THEN 'bounced' ELSE status END,
               status_reason = CASE WHEN soft_bounces + 1 >= %(limit)s THEN %(reason)s ELSE status_reason END,
               status_updated_at = CASE WHEN soft_bounces + 1 >= %(limit)s THEN now() ELSE status_updated_at END,
               bounce_type = CASE WHEN soft_bounces + 1 >= %(limit)s THEN %(status_bounce_type)s ELSE bounce_type END,
               bounce_subtype = CASE WHEN soft_bounces + 1 >= %(limit)s THEN %(status_bounce_subtype)s
                                     ELSE bounce_subtype END
         WHERE lower(email) = ANY(%(lowered)s::text[]) AND status = 'active' AND {applies}
    )""",
    # A delivery ends a run of soft bounces, and marks the ledger row of that
    # SES message delivered.
    "delivery": """,
    reset AS (
        UPDATE subscribers SET soft_bounces = 0
         WHERE lower(email) = ANY(%(lowered)s::text[]) AND soft_bounces <> 0 AND {applies}
    ),
    delivered AS (
        UPDATE send_logs SET status = 'delivered', updated_at = now()
         WHERE ses_message_id = %(delivered_id)s AND lower(email) = ANY(%(lowered)s::text[]) AND status = 'sent'
           AND {applies}
    )""",
    # A Rendering Failure: SES accepted a templated email and never sent it.
    # The row is found by the SES message id the sender recorded, or, when none
    # is recorded yet (the event overtook its batch's outcomes, or the row was
    # left 'unknown' by a run that died), by the mailout_id tag and the address
    # exactly as it was sent (the unique index on (mailout_id, email) finds it).
    #
    # Which rows it fails, and which keep what they have:
    # - 'sending', 'sent': SES accepted the email and then never sent it, so
    #   it becomes 'failed' with the reason ('unknown' rows too, through
    #   _RESOLVE below, which counts them). It then no longer counts as
    #   sent (store.count_sent), so it leaves the reputation guard's denominator.
    #   A 'sending' row stays failed: record_outcomes only writes rows that are
    #   still 'sending' (or 'unknown').
    # - 'failed' keeps its first reason; 'delivered' stays delivered (SES handed
    #   the email over, whatever this says); 'queued' and 'skipped' were never
    #   sent, so an event naming them is not about them.
    # - A row whose SES message has a Bounce, Complaint or Delivery event stays
    #   as it is: SES attempted delivery, so the email counts as sent, and a
    #   bounce already in the guard's numerator keeps its email in the
    #   denominator.
    # The subscriber is never touched: a template that does not render is our
    # fault, not the address's.
    "render_failed": """,
    render_failed AS (
        UPDATE send_logs
           SET status = 'failed', error_message = %(error)s, updated_at = now(),
               ses_message_id = coalesce(ses_message_id, %(failed_id)s)
         WHERE (ses_message_id = %(failed_id)s
                OR (ses_message_id IS NULL AND mailout_id = %(mailout_id)s::uuid
                    AND email COLLATE "C" = ANY(%(addresses)s::text[])))
           AND lower(email) = ANY(%(lowered)s::text[])
           AND status IN ('sending', 'sent')
           AND NOT EXISTS (SELECT 1 FROM ses_events
                            WHERE ses_message_id = %(failed_id)s
                              AND event_type IN ('Bounce', 'Complaint', 'Delivery'))
           AND {applies}
    )""",
}


# An in-doubt row resolved by SES's own word (issue 14): a row a dead run
# left 'unknown' becomes what the event shows happened (events.resolution
# picks `resolved_status` and `resolved_error`) and keeps the event's SES
# message id; the mailout counts it in resolved_from_events. Only a tagged
# event resolves anything: the row is found by the mailout_id tag and the
# address exactly as it was sent, through the partial index send_logs_unknown
# (empty unless a run died), so an event about a row that is not in doubt
# pays one probe of an empty index. The mailout's row is written only when a
# row was resolved.
_RESOLVE = """,
    resolved AS (
        UPDATE send_logs
           SET status = %(resolved_status)s, error_message = %(resolved_error)s, updated_at = now(),
               ses_message_id = coalesce(ses_message_id, %(ses_message_id)s)
         WHERE mailout_id = %(mailout_id)s::uuid AND email COLLATE "C" = ANY(%(addresses)s::text[])
           AND status = 'unknown' AND {applies}
        RETURNING 1
    ),
    resolved_count AS (
        UPDATE mailouts SET resolved_from_events = resolved_from_events + (SELECT count(*) FROM resolved)
         WHERE id = %(mailout_id)s::uuid AND EXISTS (SELECT 1 FROM resolved)
    )"""


def _record_event_sql(effect: str | None, feedback: bool, link: str | None, resolve: bool = False) -> str:
    new = "EXISTS (SELECT 1 FROM new_event)"
    repeat = "(SELECT seen FROM repeat)" if feedback else "false"
    applies = f"{new} AND NOT {repeat}" if feedback else new
    parts = _NEW_EVENT.format(mailout=_MAILOUT[link]) + (_REPEAT if feedback else "")
    if effect:
        parts += EVENT_EFFECTS[effect].format(applies=applies)
    if resolve:
        parts += _RESOLVE.format(applies=applies)
    return f"WITH{parts}\nSELECT {new} AS is_new, {repeat} AS repeat"


# Every combination, written once: each statement holds only the parts its
# event needs, which keeps it cheap to plan (statements are never prepared,
# see db.connect_kwargs). A tagged event that may resolve an in-doubt row
# has its own statements.
_RECORD_EVENT_SQL = {
    (effect, feedback, link): _record_event_sql(effect, feedback, link)
    for effect in (None, *EVENT_EFFECTS)
    for feedback in (False, True)
    for link in _MAILOUT
}
_RESOLVING_SQL = {
    (effect, feedback): _record_event_sql(effect, feedback, "tag", resolve=True)
    for effect in (None, *EVENT_EFFECTS)
    for feedback in (False, True)
}


def _link(event: dict) -> str | None:
    if event["mailout_id"] is not None:
        return "tag"
    return "ledger" if event["ses_message_id"] else None


def record_event(conn: Connection, event: dict, effect: str | None = None) -> tuple[bool, bool]:
    """Store a processed SNS message and apply `effect` (a key of
    EVENT_EFFECTS, its parameters in `event` too), in one statement.

    Returns (is_new, repeat). is_new is False, and nothing changed, when this
    MessageId was stored before. repeat is True when an event of this type
    with this feedbackId was stored before: the message is recorded, but its
    effect was not applied again. With `resolved_status` in `event` and a
    mailout tag, an in-doubt row of its address is resolved too (_RESOLVE)."""
    feedback, link = event["feedback_id"] is not None, _link(event)
    if link == "tag" and event.get("resolved_status") is not None:
        sql = _RESOLVING_SQL[effect, feedback]
    else:
        sql = _RECORD_EVENT_SQL[effect, feedback, link]
    params = {**event, "addresses": _text_array(event["addresses"])}
    if "lowered" in event:
        params["lowered"] = _text_array(event["lowered"])
    row = conn.execute(sql, params).fetchone()
    return row["is_new"], row["repeat"]


def _text_array(values: list[str]) -> str:
    """A text[] literal of `values`: each element quoted, with backslash and
    double quote escaped. psycopg's own adaptation of a list costs more than
    all the other parameters of an event together."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
