"""In-doubt rows that no SES event resolved, sent again on request (`mailout resume --resend-unconfirmed`).

A row a dead run left 'unknown' may or may not have reached SES. When SES
publishes an event about it, recording the event resolves it
(events.resolution). One still without any event RECONCILE_AFTER after it
was sent most likely never reached SES, but only if SES publishes Send
events for this mailout at all: so it is sent again only when other rows of
the same mailout have Send events, and only when the operator asks. A Send
event that was lost means a second copy: that is the price of the opt-in.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from uuid import UUID

from psycopg_pool import ConnectionPool

from .. import store
from .claim import Claim, resume_mailout
from .errors import MailoutNotFound, MailoutNotResumable, NoSendEvents, NothingToResend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resend:
    claim: Claim
    # Rows put back in the queue, and rows still in doubt that stay so
    # (an SES event names them, or they are younger than RECONCILE_AFTER).
    requeued: int
    still_unknown: int


def resend_unconfirmed(pool: ConnectionPool, mailout_id: UUID, settings, *, force: bool = False) -> Resend:
    """Take the mailout over as `mailout resume` does ('sent' too, which a
    plain resume leaves alone) and queue its unconfirmed in-doubt rows again.
    Raises MailoutNotFound, NoSendEvents, NothingToResend, and what
    resume_mailout raises."""
    after = settings.reconcile_after_seconds
    with pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is None:
            raise MailoutNotFound(str(mailout_id))
        if not store.has_send_events(conn, mailout_id):
            raise NoSendEvents(
                "no SES Send event was recorded for this mailout, so a row without an event proves nothing:"
                " publish Send events from the configuration set (docs/ses-events.md) before resending"
            )
    if mailout["status"] == "sent":
        claim, requeued = _reopen_finished(pool, mailout, after)
    else:
        claim = resume_mailout(pool, mailout_id, settings, force=force)
        with pool.connection() as conn:
            requeued = store.requeue_unconfirmed(conn, mailout_id, after)
    with pool.connection() as conn:
        still_unknown = store.count_in_doubt(conn, mailout_id, after)["unknown"]
    log.warning(
        "mailout %s: %d in-doubt emails with no SES event are sent again (a lost event means a duplicate)",
        mailout_id,
        requeued,
        extra={"event": "resend_unconfirmed", "mailout_id": str(mailout_id), "counts": {"requeued": requeued}},
    )
    return Resend(claim, requeued, still_unknown)


def _reopen_finished(pool: ConnectionPool, mailout: dict, after: int) -> tuple[Claim, int]:
    """A 'sent' mailout goes back to 'sending' only with rows to resend:
    claim and requeue in one transaction, undone when there are none."""
    mailout_id, runner_id = mailout["id"], uuid.uuid4()
    with pool.connection() as conn:
        if not store.claim_for_resend(conn, mailout_id, runner_id):
            current = store.get_mailout(conn, mailout_id)
            raise MailoutNotResumable(current["status"] if current else "deleted", "another resume took it first")
        requeued = store.requeue_unconfirmed(conn, mailout_id, after)
        if requeued == 0:
            counts = store.count_in_doubt(conn, mailout_id, after)
            raise NothingToResend(
                f"no in-doubt email to send again: {counts['unknown']} still unknown, each either named by an"
                f" SES event or sent less than RECONCILE_AFTER ({after} s) ago"
            )
    claim = Claim(mailout_id, mailout["subject"], mailout["body"], mailout["recipients"] or 0, runner_id)
    return claim, requeued
