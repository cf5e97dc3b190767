"""A person's pause: `mailout pause ID` and POST /mailouts/<id>/pause stop a mailout until someone resumes it by hand.

The pause writes 'paused' with stop_reason 'operator' on the row. A run
sending it finds the mailout no longer its own at its next heartbeat (at
most a quarter of HEARTBEAT_STALE_SECONDS later, or its next call's mark) and
stops after the calls in flight, recording their outcomes; the rest stays
queued. The watcher never resumes it; `mailout resume ID` does.
"""

from __future__ import annotations

import logging
from uuid import UUID

from psycopg_pool import ConnectionPool

from .. import store
from .errors import MailoutNotFound, MailoutNotPausable

log = logging.getLogger(__name__)

# What can be paused: a run may be sending it, or it may resume by itself.
PAUSABLE = ("sending", "paused", "failed")


def pause_mailout(pool: ConnectionPool, mailout_id: UUID) -> str:
    """Pause the mailout; the status it had. Raises MailoutNotFound, or
    MailoutNotPausable for a mailout that is not under way ('draft',
    'ready', 'sent')."""
    error = f"paused by an operator; resume with: python -m amazonsender mailout resume {mailout_id}"
    with pool.connection() as conn:
        was = store.pause_mailout(conn, mailout_id, error)
    if was is None:
        raise MailoutNotFound(str(mailout_id))
    if was not in PAUSABLE:
        raise MailoutNotPausable(was)
    log.warning(
        "mailout %s paused by an operator (was '%s')",
        mailout_id,
        was,
        extra={"event": "operator_paused", "mailout_id": str(mailout_id), "status": was},
    )
    return was
