"""What is checked before a claim or a resume: the mailout is ready and sendable, and SES can take its recipients.

Shared by the webhook, `mailout send` and `mailout resume`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING
from uuid import UUID

from psycopg_pool import ConnectionPool

from .. import store
from ..content import ContentProblem, check_content
from ..transport import ErrorKind, SendError, Transport
from .errors import AccountCannotSend, MailoutInvalid, MailoutNotFound, MailoutNotReady, SesUnavailable
from .stop import StopReason, next_resume_in

if TYPE_CHECKING:  # claim.py imports this module
    from .claim import Claim


def pace_for(transport: Transport, recipients: int, settings) -> float:
    """Ask SES for the account before a claim: refuse when sending is
    disabled or the recipients exceed what is left of the 24-hour quota, and
    pace at the lower of RATE_LIMIT_PER_SEC and the account's MaxSendRate.
    A transport without an account (the local outbox) has no quota."""
    account_limits = getattr(transport, "account_limits", None)
    try:
        limits = account_limits() if account_limits else None
    except SendError as exc:
        if exc.kind is ErrorKind.ACCOUNT:
            raise AccountCannotSend(f"SES refuses this account: {exc}") from exc
        raise SesUnavailable(f"could not ask SES for the account's limits: {exc}") from exc
    if limits is None:
        return settings.rate_limit_per_sec
    if not limits.sending_enabled:
        raise AccountCannotSend("sending is disabled for this SES account (SendingEnabled is false)")
    if limits.max_24_hour_send >= 0:
        left = max(0, int(limits.max_24_hour_send - limits.sent_last_24_hours))
        if recipients > left:
            raise AccountCannotSend(
                f"{recipients} recipients exceed what is left of the SES 24-hour quota: {left} of"
                f" {int(limits.max_24_hour_send)} ({recipients - left} too many); try again later or"
                " ask AWS for a higher quota"
            )
    if limits.max_send_rate > 0:
        return min(settings.rate_limit_per_sec, limits.max_send_rate)
    return settings.rate_limit_per_sec


def check_mailout_can_start(pool: ConnectionPool, transport: Transport, settings, mailout_id: UUID) -> float:
    """What a webhook or `mailout send` checks before the claim: the mailout
    exists, is 'ready' and has content, and SES can take its recipients.
    Returns the pace. The claim itself re-checks the status atomically."""
    with pool.connection() as conn:
        ready_mailout(conn, mailout_id)
        recipients = store.count_active_subscribers(conn)
    return pace_for(transport, recipients, settings)


def pace_resumed(pool: ConnectionPool, transport: Transport, settings, claim: Claim) -> tuple[Claim, int, int]:
    """After a resume (by hand or the watcher's): the claim with the pace
    SES allows for the rows still queued and the recipients a snapshot its
    last run did not finish has still to queue, and those two numbers. When SES
    refuses the account or cannot be asked, the mailout goes back to
    'paused' with why (`account`: never resumed by itself; `ses_unavailable`:
    retried with backoff) and AccountCannotSend or SesUnavailable is raised."""
    with pool.connection() as conn:
        queued = store.count_by_status(conn, claim.mailout_id).get("queued", 0)
        to_queue = store.queue_progress(conn, claim.mailout_id)["to_queue"]
    try:
        rate = pace_for(transport, queued + to_queue, settings)
    except (AccountCannotSend, SesUnavailable) as exc:
        code = StopReason.ACCOUNT if isinstance(exc, AccountCannotSend) else StopReason.SES_UNAVAILABLE
        with pool.connection() as conn:
            store.finish_mailout(
                conn, claim.mailout_id, claim.runner_id, "paused", f"not resumed: {exc}",
                stop_reason=code, resume_in=next_resume_in(code, claim.auto_attempts),
            )
        raise
    return replace(claim, rate_per_sec=rate), queued, to_queue


def ready_mailout(conn, mailout_id: UUID) -> dict:
    """The mailout, or MailoutNotFound / MailoutNotReady."""
    mailout = store.get_mailout(conn, mailout_id)
    if mailout is None:
        raise MailoutNotFound(str(mailout_id))
    if mailout["status"] != "ready":
        raise MailoutNotReady(mailout["status"])
    sendable(mailout)
    return mailout


def sendable(mailout: dict) -> None:
    """MailoutInvalid when the subject or body cannot go out as they are."""
    try:
        check_content(mailout["subject"], mailout["body"])
    except ContentProblem as exc:
        raise MailoutInvalid(str(exc)) from None
