"""The SQL of a mailout before it is sent: editing and deleting drafts and ready mailouts.

Part of the store: functions take an open connection and run inside the
caller's transaction, with bound parameters only.

Each statement checks the status itself, in its WHERE clause. A claim that
takes the mailout to 'sending' at the same moment locks the same row: either
the claim comes first and the edit or delete finds nothing to change, or the
edit comes first and the claim sends what it wrote. Never half of each, and
never a changed mailout that is already going out.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection

# The states in which a mailout has no ledger rows and nothing was sent.
CHANGEABLE = ("draft", "ready")


def edit_mailout(conn: Connection, mailout_id: UUID, subject: str | None, body: str | None) -> bool:
    """Set the subject and/or the body (None keeps it); False when there is
    no such mailout or it is no longer a draft or ready."""
    cur = conn.execute(
        """
        UPDATE mailouts SET subject = COALESCE(%s, subject), body = COALESCE(%s, body)
         WHERE id = %s AND status IN ('draft', 'ready')
        """,
        (subject, body, mailout_id),
    )
    return cur.rowcount == 1


def delete_mailout(conn: Connection, mailout_id: UUID) -> dict | None:
    """Delete a draft or ready mailout; its subject and status, or None when
    there is no such mailout or it is past 'ready'. The ledger is the record
    of what was sent: a mailout with ledger rows is never deleted here (none
    can have them while draft or ready; the check costs one index probe)."""
    return conn.execute(
        """
        DELETE FROM mailouts AS m
         WHERE m.id = %s AND m.status IN ('draft', 'ready')
           AND NOT EXISTS (SELECT 1 FROM send_logs WHERE send_logs.mailout_id = m.id)
        RETURNING m.subject, m.status
        """,
        (mailout_id,),
    ).fetchone()
