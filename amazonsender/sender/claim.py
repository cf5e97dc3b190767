"""Claim and resume: how a run comes to own a mailout, and the `Claim` it sends from.

A claim moves the mailout `ready -> sending` with a conditional UPDATE and, in
the same transaction, queues one ledger row per active subscriber. A resume
takes over a mailout whose run ended early and marks the rows that run left
'sending' as 'unknown', never to be sent again. Either writes a fresh
runner_id, which the run's lease (lease.py) holds on to.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from uuid import UUID

from psycopg_pool import ConnectionPool

from .. import store
from ..events import RESOLUTIONS
from .errors import MailoutNotFound, MailoutNotReady, MailoutNotResumable, RunnerAlive
from .preflight import ready_mailout, sendable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    mailout_id: UUID
    subject: str
    body: str
    # The rows the mailout's ledger will hold (the mailouts.recipients
    # column): at a claim, its active subscribers then.
    recipients: int
    runner_id: UUID
    # Rows a dead run left 'sending', now 'unknown' (resume only).
    in_doubt_marked: int = 0
    # The pace for this run; None means RATE_LIMIT_PER_SEC.
    rate_per_sec: float | None = None
    # Automatic resumes after a stop that heals, this one included (the
    # backoff of the next one if this run stops so again).
    auto_attempts: int = 0


def claim_mailout(
    pool: ConnectionPool, mailout_id: UUID, *, rate_per_sec: float | None = None, event_id: str | None = None
) -> Claim:
    """Move the mailout from 'ready' to 'sending' and count its recipients,
    in one transaction; the run queues them (send_claimed_mailout).
    `event_id` is the Notion event that asked (kept to tell its retries from
    other requests). Raises MailoutNotFound, MailoutNotReady or MailoutInvalid."""
    runner_id = uuid.uuid4()
    with pool.connection() as conn:
        mailout = ready_mailout(conn, mailout_id)
        if not store.claim_mailout(conn, mailout_id, runner_id, event_id):
            # Someone else claimed it between our read and our UPDATE.
            current = store.get_mailout(conn, mailout_id)
            raise MailoutNotReady(current["status"] if current else "deleted")
        recipients = store.start_queuing(conn, mailout_id)
    log.info(
        "mailout %s claimed: %d recipients to queue",
        mailout_id,
        recipients,
        extra={"event": "claimed", "mailout_id": str(mailout_id), "counts": {"recipients": recipients}},
    )
    return Claim(mailout_id, mailout["subject"], mailout["body"], recipients, runner_id, rate_per_sec=rate_per_sec)


def resume_mailout(
    pool: ConnectionPool, mailout_id: UUID, settings, *, force: bool = False, automatic: store.Automatic | None = None
) -> Claim:
    """Take over a mailout whose run ended early ('failed', 'paused', or
    'sending' with a stale heartbeat) and mark the rows its last run left
    'sending' as 'unknown'. `automatic`: the watcher's resume (watch.py),
    which takes only what may resume by itself. Raises MailoutNotFound,
    MailoutNotResumable, MailoutInvalid or RunnerAlive."""
    runner_id = uuid.uuid4()
    with pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is None:
            raise MailoutNotFound(str(mailout_id))
        status = mailout["status"]
        if status not in ("sending", "failed", "paused"):
            hints = {
                "ready": "it has not started: use `mailout send`",
                "sent": "it is finished",
                "draft": "it is a draft",
            }
            raise MailoutNotResumable(status, f"mailout is '{status}': {hints.get(status, 'nothing to resume')}")
        # Written before these checks existed, say: resuming would only stop again.
        sendable(mailout)
        if not store.claim_for_resume(
            conn, mailout_id, runner_id, settings.heartbeat_stale_seconds, force, automatic=automatic
        ):
            current = store.get_mailout(conn, mailout_id)
            if current and current["status"] == "sending":
                raise RunnerAlive(float(current["heartbeat_age_seconds"] or 0))
            raise MailoutNotResumable(current["status"] if current else "deleted", "another resume took it first")
        in_doubt = store.mark_in_doubt(conn, mailout_id)
        if in_doubt:
            # SES's events about them that came while they were 'sending'.
            store.resolve_from_stored_events(conn, mailout_id, RESOLUTIONS)
    log.info(
        "mailout %s resumed (was '%s'); %d emails in flight when the last run stopped are marked unknown",
        mailout_id,
        status,
        in_doubt,
        extra={"event": "resumed", "mailout_id": str(mailout_id), "counts": {"unknown": in_doubt}},
    )
    attempts = 0
    if automatic is not None:
        attempts = mailout["auto_resume_attempts"] + (mailout["stop_reason"] in automatic.counted)
    return Claim(
        mailout_id,
        mailout["subject"],
        mailout["body"],
        mailout["recipients"] or 0,
        runner_id,
        in_doubt_marked=in_doubt,
        auto_attempts=attempts,
    )
