"""The SQL of erasure (GDPR article 17) and the suppression list: forget an address everywhere, keep its keyed hash.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import Connection


def suppression_key_ids(conn: Connection) -> list[str]:
    """The fingerprints of the keys the suppression list was made with
    (normally one; none when the list is empty)."""
    rows = conn.execute("SELECT DISTINCT key_id FROM suppressions ORDER BY key_id").fetchall()
    return [row["key_id"] for row in rows]


def suppressed_hashes(conn: Connection, hashes: list[bytes]) -> set[bytes]:
    rows = conn.execute("SELECT address_hash FROM suppressions WHERE address_hash = ANY(%s)", (hashes,)).fetchall()
    return {bytes(row["address_hash"]) for row in rows}


@dataclass(frozen=True)
class Erasure:
    """What forget_address found and changed."""

    subscribers: list[str]  # the addresses as they were stored
    ledger_rows: int
    events: int
    newly_suppressed: bool
    mailout_errors: int = 0


def begin_forgetting(conn: Connection, lowered: list[str]) -> list[str | None]:
    """The first step of an erasure, in the caller's transaction: no SES
    event is stored until it commits, and the names of the subscribers to
    erase (from_name, None for none), locked.

    The lock closes a race with a late event about the address: the trigger
    ses_events_forgotten (sql/009) anonymises an event whose email's ledger
    row is forgotten, but it cannot see a forget that has not committed, and
    the forget's UPDATE of ses_events cannot see an event stored after it
    began. SHARE ROW EXCLUSIVE waits for the events being stored now (so the
    UPDATE sees them) and holds new ones until the commit (their trigger then
    sees the forgotten rows); it also keeps two erasures apart. Taken first,
    before any row lock, so an event's effect on send_logs never waits for
    this transaction while it waits for the event. Events wait as long as
    the erasure runs (a scan of send_logs and ses_events); SNS retries any
    that time out."""
    conn.execute("LOCK TABLE ses_events IN SHARE ROW EXCLUSIVE MODE")
    rows = conn.execute(
        "SELECT from_name FROM subscribers WHERE lower(email) = ANY(%s) FOR UPDATE", (lowered,)
    ).fetchall()
    return [row["from_name"] for row in rows]


def forget_address(conn: Connection, *, lowered: list[str], address_hash: bytes, key_id: str, token: str,
                   text_pattern: str, json_pattern: str, name_pattern: str | None = None) -> Erasure:
    """Erase an address in the caller's transaction, after begin_forgetting:
    its hash joins the suppression list, its subscriber row goes, and in the
    ledger, the mailouts' errors and the SES events every form of it in
    `lowered` (any case) becomes `token`. `text_pattern` and `json_pattern`
    are regular expressions matching it in error messages and in an event's
    JSON text; `name_pattern`, its subscriber's name in error messages (see
    erasure.name_pattern). Running it again changes nothing."""
    newly = conn.execute(
        "INSERT INTO suppressions (address_hash, key_id) VALUES (%s, %s) ON CONFLICT (address_hash) DO NOTHING",
        (address_hash, key_id),
    ).rowcount == 1
    # The statement trigger send_logs_forget_subscribers fires even when no
    # row goes: it takes the claims' advisory lock exclusively, so a page of
    # a snapshot under way commits first and the UPDATE below (a new
    # snapshot, READ COMMITTED) sees its rows; a later page waits for this
    # transaction and no longer finds the subscriber. Its queued rows are
    # skipped as 'subscriber is deleted'.
    gone = conn.execute(
        "DELETE FROM subscribers WHERE lower(email) = ANY(%s) RETURNING email", (lowered,)
    ).fetchall()
    patterns = {"token": token, "pattern": text_pattern, "names": name_pattern}
    rows = _forget_in_ledger(conn, lowered, patterns)
    mailout_errors = _forget_in_mailouts(conn, list({row["mailout_id"] for row in rows}), patterns)
    message_ids = [row["ses_message_id"] for row in rows]
    events = _forget_in_events(conn, lowered, message_ids, token, json_pattern)
    return Erasure([row["email"] for row in gone], len(rows), events, newly, mailout_errors)


# An error text with the address replaced, then (when %(names)s is not NULL)
# the name: in that order, so that a name that is also the address's local
# part ("ann" of ann@x.org) does not leave the rest of the address behind.
_ERASED_TEXT = """
    CASE WHEN %(names)s::text IS NULL THEN regexp_replace({text}, %(pattern)s, %(token)s, 'gi')
         ELSE regexp_replace(regexp_replace({text}, %(pattern)s, %(token)s, 'gi'), %(names)s::text, %(token)s, 'gi')
    END"""


def _forget_in_ledger(conn: Connection, lowered: list[str], patterns: dict) -> list[dict]:
    """The ledger keeps its rows (the mailouts' counts and history) with the
    address replaced, and the name in their error messages (SES quotes the
    To header: `Ann Smith <ann@x.org>`); returns the mailout and SES message
    ids of the rows changed. A mailout holding the address twice, in two
    cases, gets token#2 for the second row, so that
    send_logs_one_per_recipient still holds. Another recipient's error that
    quotes the address loses it too. (Scans of send_logs: no index holds
    lower(email) or the errors; an operator's rare command.)"""
    rows = conn.execute(
        """
        UPDATE send_logs l
           SET email = %(token)s || CASE WHEN m.n > 1 THEN '#' || m.n ELSE '' END,
               error_message = """ + _ERASED_TEXT.format(text="l.error_message") + """,
               updated_at = now()
          FROM (SELECT id, row_number() OVER (PARTITION BY mailout_id ORDER BY id) AS n
                  FROM send_logs WHERE lower(email) = ANY(%(lowered)s)) AS m
         WHERE l.id = m.id
        RETURNING l.mailout_id, l.ses_message_id
        """,
        {**patterns, "lowered": lowered},
    ).fetchall()
    conn.execute(
        """
        UPDATE send_logs SET error_message = regexp_replace(error_message, %(pattern)s, %(token)s, 'gi')
         WHERE error_message ~* %(pattern)s
        """,
        patterns,
    )
    return rows


def _forget_in_mailouts(conn: Connection, mailout_ids: list, patterns: dict) -> int:
    """A mailout's error (`last: MessageRejected: … Ann Smith <ann@x.org>`)
    loses the address wherever it is, and the name in the mailouts that were
    sent to the address (elsewhere the name may be someone else's word)."""
    return conn.execute(
        """
        UPDATE mailouts
           SET error = CASE WHEN id = ANY(%(ids)s) THEN """ + _ERASED_TEXT.format(text="error") + """
                            ELSE regexp_replace(error, %(pattern)s, %(token)s, 'gi') END
         WHERE error ~* %(pattern)s OR (id = ANY(%(ids)s) AND error ~* %(names)s::text)
        """,
        {**patterns, "ids": mailout_ids},
    ).rowcount


def _forget_in_events(conn: Connection, lowered: list[str], message_ids: list[str | None], token: str,
                      json_pattern: str) -> int:
    """SES events about the address: those naming it among their recipients
    and those of the emails sent to it (by SES message id, indexed). The
    address becomes `token` in `addresses` and anywhere in the payload, and
    the payload's copies of the email's headers (the To header holds the
    subscriber's name) are removed. Each email we send has one recipient,
    so these events concern no one else."""
    return conn.execute(
        """
        UPDATE ses_events e
           SET addresses = ARRAY(SELECT CASE WHEN lower(a) = ANY(%(lowered)s) THEN %(token)s ELSE a END
                                   FROM unnest(e.addresses) WITH ORDINALITY AS u (a, n) ORDER BY n),
               payload = CASE WHEN jsonb_typeof(x.payload) = 'object'
                              THEN x.payload #- '{mail,headers}' #- '{mail,commonHeaders}'
                              ELSE x.payload END
          FROM (SELECT id, regexp_replace(payload::text, %(pattern)s, %(token)s, 'gi')::jsonb AS payload
                  FROM ses_events
                 WHERE ses_message_id = ANY(%(message_ids)s)
                    OR EXISTS (SELECT 1 FROM unnest(addresses) AS a WHERE lower(a) = ANY(%(lowered)s))) AS x
         WHERE e.id = x.id
        """,
        {"lowered": lowered, "token": token, "pattern": json_pattern,
         "message_ids": [m for m in message_ids if m]},
    ).rowcount
