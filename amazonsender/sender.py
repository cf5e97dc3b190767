"""Claims a mailout and sends it: no Flask in here.

The webhook, the command line and the tests all call `claim_mailout` and then
`send_claimed_mailout` with a connection pool and a transport.

Exactly once, in three steps:
1. the claim moves the mailout `ready -> sending` with a conditional UPDATE and,
   in the same transaction, queues one ledger row per active subscriber;
2. before a batch is sent its rows are marked 'sending' and committed;
3. after SES answers, each row gets its outcome (message id or error).
A recipient is therefore never sent twice: a row only goes out from 'queued'.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from uuid import UUID

from psycopg_pool import ConnectionPool

from . import store
from .message import MessageBuilder
from .ses import ACCOUNT, IN_DOUBT, RECIPIENT, THROTTLED, TRANSIENT, SendError
from .tokens import UnsubscribeTokens

log = logging.getLogger(__name__)

TRANSIENT_ATTEMPTS = 3
THROTTLE_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


class MailoutNotFound(Exception):
    pass


class MailoutNotReady(Exception):
    def __init__(self, status: str):
        super().__init__(f"mailout is '{status}', not 'ready'")
        self.status = status


class MailoutInvalid(Exception):
    """The mailout cannot be sent as it is (an empty subject or body)."""


@dataclass(frozen=True)
class Claim:
    mailout_id: UUID
    subject: str
    body: str
    recipients: int


@dataclass
class Summary:
    mailout_id: str
    status: str
    recipients: int
    sent: int
    failed: int
    skipped: int
    queued: int
    in_doubt: int
    error: str | None
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class Pacer:
    """Lets one send through every 1/rate seconds, measured from the moment
    the previous one was let through.

    This is a token bucket that holds a single token: it never lets a burst
    through, so no one-second window carries more than `rate` sends. ("A batch
    of 50, then sleep" puts 50 emails into a fraction of a second and gets
    throttled by SES.) Spacing from the actual release time, not from an ideal
    schedule, matters: after an oversleep a schedule would let the next send
    catch up early and squeeze rate + 1 sends into one second.

    Thread-safe: concurrent senders queue on the lock, which is held while
    sleeping because every waiter would have to wait for its slot anyway.
    """

    def __init__(self, rate_per_sec: float, *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / rate_per_sec
        self.clock = clock
        self.sleep = sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            delay = self._next - self.clock()
            if delay > 0:
                self.sleep(delay)
            self._next = self.clock() + self.interval


def claim_mailout(pool: ConnectionPool, mailout_id: UUID) -> Claim:
    """Move the mailout from 'ready' to 'sending' and queue its recipients,
    in one transaction. Raises MailoutNotFound, MailoutNotReady or MailoutInvalid."""
    with pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is None:
            raise MailoutNotFound(str(mailout_id))
        if mailout["status"] != "ready":
            raise MailoutNotReady(mailout["status"])
        if not mailout["subject"].strip():
            raise MailoutInvalid("the mailout's subject is empty")
        if not mailout["body"].strip():
            raise MailoutInvalid("the mailout's body is empty")
        if not store.claim_mailout(conn, mailout_id):
            # Someone else claimed it between our read and our UPDATE.
            current = store.get_mailout(conn, mailout_id)
            raise MailoutNotReady(current["status"] if current else "deleted")
        recipients = store.snapshot_recipients(conn, mailout_id)
    log.info("mailout %s claimed: %d recipients queued", mailout_id, recipients)
    return Claim(mailout_id, mailout["subject"], mailout["body"], recipients)


def send_claimed_mailout(
    pool: ConnectionPool,
    transport,
    settings,
    claim: Claim,
    *,
    sleep: Callable[[float], None] = time.sleep,
    pacer: Pacer | None = None,
) -> Summary:
    """Send every queued row of a claimed mailout, batch by batch, and end the
    mailout 'sent' or (when every send would fail) 'failed'."""
    run = _Run(pool, transport, settings, claim, sleep=sleep, pacer=pacer)
    return run.execute()


class _Run:
    def __init__(self, pool, transport, settings, claim: Claim, *, sleep, pacer):
        self.pool = pool
        self.transport = transport
        self.settings = settings
        self.claim = claim
        self.sleep = sleep
        self.pacer = pacer or Pacer(settings.rate_limit_per_sec, sleep=sleep)
        self.tokens = UnsubscribeTokens(settings.unsubscribe_secret, settings.unsubscribe_old_secrets)
        self.builder = MessageBuilder(
            mailout_id=str(claim.mailout_id),
            subject=claim.subject,
            body_html=claim.body,
            from_address=settings.ses_from_email,
            reply_to=settings.ses_reply_to,
        )
        self.started = time.monotonic()

    def execute(self) -> Summary:
        mailout_id = self.claim.mailout_id
        error = None
        try:
            with self.pool.connection() as conn:
                sent_so_far = store.count_sent(conn, mailout_id)
            while True:
                with self.pool.connection() as conn:
                    recipients, skipped = store.take_batch(conn, mailout_id, self.settings.batch_size)
                if not recipients and not skipped:
                    break
                outcomes, error = self.send_batch(recipients)
                with self.pool.connection() as conn:
                    store.record_outcomes(conn, mailout_id, outcomes)
                    reputation = store.reputation(conn, mailout_id)
                sent = sum(1 for o in outcomes if o.status == "sent")
                failed = sum(1 for o in outcomes if o.status == "failed")
                sent_so_far += sent
                log.info(
                    "mailout %s batch: sent %d, failed %d, skipped %d", mailout_id, sent, failed, skipped
                )
                if error:
                    break
                problem = reputation["more_queued"] and reputation_problem(sent_so_far, reputation, self.settings)
                if problem:
                    log.error("mailout %s paused by the reputation guard: %s", mailout_id, problem)
                    with self.pool.connection() as conn:
                        store.finish_mailout(conn, mailout_id, "paused", f"reputation guard: {problem}")
                    return self.summary(problem)
            with self.pool.connection() as conn:
                store.finish_mailout(conn, mailout_id, "failed" if error else "sent", error)
        except Exception as exc:  # noqa: BLE001 - the run must end in a recorded state
            error = f"{type(exc).__name__}: {exc}"
            log.exception("mailout %s stopped by an unexpected error", mailout_id)
            try:
                with self.pool.connection() as conn:
                    store.finish_mailout(conn, mailout_id, "failed", error)
            except Exception:  # noqa: BLE001
                log.exception("mailout %s: could not record the failure", mailout_id)
        return self.summary(error)

    def send_batch(self, recipients: list[store.Recipient]) -> tuple[list[store.Outcome], str | None]:
        """Send each recipient's email; stop at an account-wide error and put
        the recipients not yet attempted back in the queue."""
        outcomes = []
        for index, recipient in enumerate(recipients):
            email = self.builder.build(
                to_email=recipient.email,
                to_name=recipient.name,
                unsubscribe_url=self.unsubscribe_url(recipient.subscriber_id),
            )
            try:
                message_id = self.send_with_retries(email)
            except SendError as exc:
                if exc.kind == RECIPIENT or exc.kind == TRANSIENT:
                    outcomes.append(store.Outcome(recipient.log_id, "failed", error=str(exc)))
                    continue
                if exc.kind == IN_DOUBT:
                    outcomes.append(store.Outcome(recipient.log_id, "unknown", error=str(exc)))
                    continue
                # SES refused the call itself, so this recipient was not sent:
                # back to the queue with everyone after them.
                log.error("mailout %s stopped: %s", self.claim.mailout_id, exc)
                outcomes.extend(store.Outcome(r.log_id, "queued") for r in recipients[index:])
                return outcomes, str(exc)
            outcomes.append(store.Outcome(recipient.log_id, "sent", ses_message_id=message_id))
        return outcomes, None

    def send_with_retries(self, email) -> str:
        throttled = transient = 0
        while True:
            self.pacer.wait()
            try:
                return self.transport.send(email)
            except SendError as exc:
                if exc.kind == THROTTLED and throttled < THROTTLE_ATTEMPTS:
                    throttled += 1
                    log.warning("SES throttled us (%s); waiting before the same email again", exc)
                    self.sleep(backoff_seconds(throttled))
                elif exc.kind == TRANSIENT and transient < TRANSIENT_ATTEMPTS - 1:
                    transient += 1
                    self.sleep(backoff_seconds(transient))
                elif exc.kind == THROTTLED:
                    # Never record throttling as a failure: stop, keep it queued.
                    raise SendError(f"SES kept throttling: {exc}", kind=ACCOUNT) from exc
                else:
                    raise

    def unsubscribe_url(self, subscriber_id) -> str:
        return f"{self.settings.app_base_url}/unsubscribe?token={self.tokens.make(subscriber_id)}"

    def summary(self, error: str | None) -> Summary:
        mailout_id = self.claim.mailout_id
        with self.pool.connection() as conn:
            counts = store.count_by_status(conn, mailout_id)
            mailout = store.get_mailout(conn, mailout_id)
        return Summary(
            mailout_id=str(mailout_id),
            status=mailout["status"] if mailout else "deleted",
            recipients=self.claim.recipients,
            sent=counts.get("sent", 0) + counts.get("delivered", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            queued=counts.get("queued", 0),
            in_doubt=counts.get("sending", 0) + counts.get("unknown", 0),
            error=error,
            seconds=round(time.monotonic() - self.started, 3),
        )


def reputation_problem(sent: int, reputation: dict, settings) -> str | None:
    """Why the mailout must pause, or None.

    SES puts an account under review at a 5% bounce or 0.1% complaint rate
    and may pause it at 10% / 0.5%; stopping one mailout early protects every
    later one. Below guard_min_sent the rates say too little to act on.
    """
    if sent < settings.guard_min_sent:
        return None
    bounce_rate = reputation["bounces"] / sent
    complaint_rate = reputation["complaints"] / sent
    if bounce_rate > settings.max_bounce_rate:
        return (
            f"bounce rate {bounce_rate:.2%} ({reputation['bounces']} of {sent} sent)"
            f" is above MAX_BOUNCE_RATE {settings.max_bounce_rate:.2%}"
        )
    if complaint_rate > settings.max_complaint_rate:
        return (
            f"complaint rate {complaint_rate:.2%} ({reputation['complaints']} of {sent} sent)"
            f" is above MAX_COMPLAINT_RATE {settings.max_complaint_rate:.2%}"
        )
    return None


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
