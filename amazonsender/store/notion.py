"""The SQL of mailouts that come from a Notion page: found by page, a button press taken, the imported content stored.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only. sql/014_notion_pages.sql
explains the columns; the unique index on notion_page_id is what makes a
page one mailout, however many presses arrive at once.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection

from .ledger import storable

# An import that started this long ago and never ended belongs to a process
# that is gone: a new press takes it over.
IMPORT_STALE_SECONDS = 600


def mailout_for_page(conn: Connection, page_id: str) -> dict | None:
    """The page's mailout: id, status, claim_event_id, whether an import of
    it is under way (`importing`), and its recipients at the claim."""
    return conn.execute(
        """
        SELECT id, status, claim_event_id, claim_recipients AS recipients,
               (notion_import_started_at IS NOT NULL
                AND notion_import_started_at > now() - make_interval(secs => %s)) AS importing
          FROM mailouts WHERE notion_page_id = %s
        """,
        (IMPORT_STALE_SECONDS, page_id),
    ).fetchone()


def start_press(conn: Connection, page_id: str, subject: str, event_id: str | None) -> UUID | None:
    """A button press on the page: its mailout, marked as being imported by
    `event_id`. A new page gets a draft with an empty body (no draft with an
    empty body can be made ready or claimed); a page whose mailout is still
    a draft or ready, with no import under way, is taken again (its content
    is imported anew). None when the page's mailout is being imported or is
    past 'ready': the press must not start anything.

    Two presses at once meet at the unique index: the second INSERT waits
    for the first transaction, then finds the row and its import under way."""
    row = conn.execute(
        """
        INSERT INTO mailouts (subject, body, status, notion_page_id, claim_event_id, notion_import_started_at)
        VALUES (%(subject)s, '', 'draft', %(page)s, %(event)s, now())
        ON CONFLICT (notion_page_id) WHERE notion_page_id IS NOT NULL DO UPDATE
           SET claim_event_id = EXCLUDED.claim_event_id, notion_import_started_at = now(), error = NULL
         WHERE mailouts.status IN ('draft', 'ready')
           AND (mailouts.notion_import_started_at IS NULL
                OR mailouts.notion_import_started_at <= now() - make_interval(secs => %(stale)s))
        RETURNING id
        """,
        {"subject": subject, "page": page_id, "event": event_id, "stale": IMPORT_STALE_SECONDS},
    ).fetchone()
    return row["id"] if row else None


def finish_import(conn: Connection, mailout_id: UUID, subject: str, body: str, status: str) -> bool:
    """Store the imported content and end the import, the mailout now
    `status` ('ready' to be claimed, or 'draft'); False when the mailout is
    no longer a draft or ready being imported (deleted meanwhile, say)."""
    cur = conn.execute(
        """
        UPDATE mailouts SET subject = %s, body = %s, status = %s, notion_import_started_at = NULL, error = NULL
         WHERE id = %s AND status IN ('draft', 'ready') AND notion_import_started_at IS NOT NULL
        """,
        (subject, body, status, mailout_id),
    )
    return cur.rowcount == 1


def fail_import(conn: Connection, mailout_id: UUID, error: str) -> None:
    """End an import that failed: the mailout stays as it was, with why in
    `error`, and the next press imports the page again."""
    conn.execute(
        "UPDATE mailouts SET notion_import_started_at = NULL, error = %s WHERE id = %s AND status IN ('draft', 'ready')",
        (storable(error), mailout_id),
    )


def save_imported(conn: Connection, page_id: str, subject: str, body: str) -> tuple[UUID, bool] | None:
    """`mailout create --notion`: a draft of the page's content, or the
    page's draft or ready mailout with its content replaced (it stays as
    it was). (id, created); None when the page's mailout is being imported
    or is past 'ready'."""
    row = conn.execute(
        """
        INSERT INTO mailouts (subject, body, status, notion_page_id)
        VALUES (%(subject)s, %(body)s, 'draft', %(page)s)
        ON CONFLICT (notion_page_id) WHERE notion_page_id IS NOT NULL DO UPDATE
           SET subject = EXCLUDED.subject, body = EXCLUDED.body, error = NULL
         WHERE mailouts.status IN ('draft', 'ready') AND mailouts.notion_import_started_at IS NULL
        RETURNING id, (xmax = 0) AS created
        """,
        {"subject": subject, "body": body, "page": page_id},
    ).fetchone()
    return (row["id"], row["created"]) if row else None


def notion_page_of(conn: Connection, mailout_id: UUID) -> str | None:
    row = conn.execute("SELECT notion_page_id FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()
    return str(row["notion_page_id"]) if row and row["notion_page_id"] else None
