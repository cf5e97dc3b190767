"""Claims a mailout and sends it: no Flask in here.

The webhook, the command line and the tests all call `claim_mailout` (or
`resume_mailout`) and then `send_claimed_mailout` with a connection pool and
a transport.

Exactly once, in three steps:
1. the claim moves the mailout `ready -> sending` with a conditional UPDATE and,
   in the same transaction, queues one ledger row per active subscriber;
2. before a batch is sent its rows are marked 'sending' and committed;
3. after SES answers, each row gets its outcome (message id or error).
A recipient is therefore never sent twice: a row only goes out from 'queued',
and a row found 'sending' after a crash is in doubt and never sent again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.utils import parseaddr
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import metrics, store
from ..addresses import AddressError, bare_address, is_one_address, ses_address
from ..message import Footer, MessageBuilder
from ..ses import ACCESS_DENIED_CODES, ACCOUNT, IN_DOUBT, RECIPIENT, THROTTLED, TRANSIENT, BulkResult, SendError
from ..template import bulk_content
from ..links import UnsubscribeTokens
# The package's API, from the modules that own each part.
from .errors import (  # noqa: F401
    AccountCannotSend,
    DatabaseUnavailable,
    MailoutInvalid,
    MailoutNotFound,
    MailoutNotReady,
    MailoutNotResumable,
    RunnerAlive,
    SesUnavailable,
)
from .guard import reputation_problem
from .pacer import (  # noqa: F401
    BULK_CALLS_PER_SECOND,
    CATCH_UP,
    CATCH_UP_SECONDS,
    PACE_MARGIN,
    SES_BULK_MAX_RECIPIENTS,
    THROTTLE_MAX_SLOWDOWN,
    THROTTLE_SLOWDOWN_SECONDS,
    Pacer,
    _capacity,
    recipients_per_call,
)
from .preflight import check_mailout_can_start, pace_for, ready_mailout, sendable  # noqa: F401

log = logging.getLogger(__name__)

TRANSIENT_ATTEMPTS = 3
THROTTLE_ATTEMPTS = 8
# Not an SES answer: a retry or a pacing wait cut short because a stop was
# requested. SES has not accepted the email, so it goes back to the queue.
STOPPED = "stopped"
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0

# Set by SIGTERM (gunicorn's worker hook, the command line): every run in this
# process finishes the email in flight, records its batch, puts the rest back
# in the queue and ends the mailout 'paused', ready to resume.
stop_requested = threading.Event()
stop_reason = "the process was asked to stop"


def request_stop(reason: str) -> None:
    global stop_reason
    if not stop_requested.is_set():
        stop_reason = f"the process was asked to stop ({reason})"
        log.warning("stop requested (%s): running mailouts will pause after the email in flight", reason)
    stop_requested.set()


@dataclass(frozen=True)
class Claim:
    mailout_id: UUID
    subject: str
    body: str
    recipients: int
    runner_id: UUID
    # Rows a dead run left 'sending', now 'unknown' (resume only).
    in_doubt_marked: int = 0
    # The pace for this run; None means RATE_LIMIT_PER_SEC.
    rate_per_sec: float | None = None


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


def claim_mailout(pool: ConnectionPool, mailout_id: UUID, *, rate_per_sec: float | None = None) -> Claim:
    """Move the mailout from 'ready' to 'sending' and queue its recipients,
    in one transaction. Raises MailoutNotFound, MailoutNotReady or MailoutInvalid."""
    runner_id = uuid.uuid4()
    with pool.connection() as conn:
        mailout = ready_mailout(conn, mailout_id)
        if not store.claim_mailout(conn, mailout_id, runner_id):
            # Someone else claimed it between our read and our UPDATE.
            current = store.get_mailout(conn, mailout_id)
            raise MailoutNotReady(current["status"] if current else "deleted")
        recipients = store.snapshot_recipients(conn, mailout_id)
    log.info(
        "mailout %s claimed: %d recipients queued",
        mailout_id,
        recipients,
        extra={"event": "claimed", "mailout_id": str(mailout_id), "counts": {"recipients": recipients}},
    )
    return Claim(mailout_id, mailout["subject"], mailout["body"], recipients, runner_id, rate_per_sec=rate_per_sec)


def resume_mailout(pool: ConnectionPool, mailout_id: UUID, settings, *, force: bool = False) -> Claim:
    """Take over a mailout whose run ended early ('failed', 'paused', or
    'sending' with a stale heartbeat) and mark the rows its last run left
    'sending' as 'unknown'. Raises MailoutNotFound, MailoutNotResumable,
    MailoutInvalid or RunnerAlive."""
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
        if not store.claim_for_resume(conn, mailout_id, runner_id, settings.heartbeat_stale_seconds, force):
            current = store.get_mailout(conn, mailout_id)
            if current and current["status"] == "sending":
                raise RunnerAlive(float(current["heartbeat_age_seconds"] or 0))
            raise MailoutNotResumable(current["status"] if current else "deleted", "another resume took it first")
        in_doubt = store.mark_in_doubt(conn, mailout_id)
    log.info(
        "mailout %s resumed (was '%s'); %d emails in flight when the last run stopped are marked unknown",
        mailout_id,
        status,
        in_doubt,
        extra={"event": "resumed", "mailout_id": str(mailout_id), "counts": {"unknown": in_doubt}},
    )
    return Claim(
        mailout_id, mailout["subject"], mailout["body"], mailout["recipients"] or 0, runner_id, in_doubt_marked=in_doubt
    )


def send_claimed_mailout(
    pool: ConnectionPool,
    transport,
    settings,
    claim: Claim,
    *,
    sleep: Callable[[float], None] | None = None,
    pacer: Pacer | None = None,
    stop: threading.Event = stop_requested,
    progress: Callable[[dict], None] | None = None,
) -> Summary:
    """Send every queued row of a claimed mailout, batch by batch, and end the
    mailout 'sent', 'failed' (every send would fail) or 'paused' (stopped on
    purpose, or by the reputation guard): always in a resumable state."""
    run = _Run(pool, transport, settings, claim, sleep=sleep, pacer=pacer, stop=stop, progress=progress)
    return run.execute()


@dataclass(frozen=True)
class _Halt:
    """Why a run stops before the list is done, and the state it leaves."""

    status: str
    reason: str


class _Run:
    def __init__(self, pool, transport, settings, claim: Claim, *, sleep, pacer, stop, progress):
        self.pool = pool
        self.transport = transport
        self.settings = settings
        self.claim = claim
        # By default every wait (pace, backoff, database retry) is a wait on
        # the stop event, so SIGTERM cuts it short instead of outliving the
        # shutdown grace period.
        self.sleep = sleep or stop.wait
        self.stop = stop
        self.progress = progress
        rate = claim.rate_per_sec or settings.rate_limit_per_sec
        self.pacer = pacer or Pacer(rate, sleep=self.sleep)
        self.tokens = UnsubscribeTokens(settings.unsubscribe_secret, settings.unsubscribe_old_secrets)
        footer = Footer.from_settings(settings)
        self.builder = MessageBuilder(
            mailout_id=str(claim.mailout_id),
            subject=claim.subject,
            body_html=claim.body,
            from_address=settings.ses_from_email,
            reply_to=settings.ses_reply_to,
            footer=footer,
        )
        self.bulk = None
        self.per_call = 1
        per_call = recipients_per_call(rate, settings.batch_size)
        if settings.ses_bulk_send == "auto" and per_call > 1 and hasattr(transport, "send_bulk"):
            self.bulk, why_not = bulk_content(
                mailout_id=str(claim.mailout_id),
                subject=claim.subject,
                body_html=claim.body,
                unsubscribe_base=f"{settings.app_base_url}/unsubscribe?token=",
                footer=footer,
            )
            if self.bulk is None:
                log.warning(
                    "mailout %s goes out with one SendEmail per recipient: %s", claim.mailout_id, why_not,
                    extra={"event": "bulk_off", "mailout_id": str(claim.mailout_id)},
                )
            else:
                self.per_call = per_call
        self.started = time.monotonic()
        self.last_heartbeat = self.started
        self.lost = False
        self.unrecorded: list[store.Outcome] = []
        self.lock = threading.Lock()
        self.consecutive_failures = 0
        self.last_error: str | None = None
        # SEND_CONCURRENCY > 1: that many SES calls in flight, sharing one
        # transport (boto3 clients are thread-safe) and one Pacer.
        concurrency = settings.send_concurrency
        self.executor = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") if concurrency > 1 else None
        )
        self.counts = {"sent": 0, "failed": 0, "skipped": 0, "unknown": 0}
        # This batch's rows handed to an SES call, and the outcomes known so
        # far: if our own code fails part way, a row SES may have is
        # 'unknown' and a row no call carried goes back to the queue.
        self.handed: set[UUID] = set()
        self.settled: dict[UUID, store.Outcome] = {}

    # -- the loop ---------------------------------------------------------

    def execute(self) -> Summary:
        done = threading.Event()
        beating = threading.Thread(target=self.beat, args=(done,), name="heartbeat", daemon=True)
        beating.start()
        try:
            return self.send_all()
        finally:
            done.set()
            beating.join()
            if self.executor is not None:
                self.executor.shutdown(wait=True)

    def beat(self, done: threading.Event) -> None:
        """Write the heartbeat every quarter of HEARTBEAT_STALE_SECONDS for as
        long as the run lives, whatever it is waiting for (a slow pace, an SES
        answer, a backoff), so a resume never mistakes it for a dead run."""
        interval = self.settings.heartbeat_stale_seconds / 4
        while not done.wait(interval):
            try:
                with self.pool.connection() as conn:
                    owned = store.heartbeat(conn, self.claim.mailout_id, self.claim.runner_id)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("heartbeat not written (database unreachable): %s", str(exc).strip()[:200])
                continue
            if not owned:
                self.lost = True
                return

    def send_all(self) -> Summary:
        mailout_id = self.claim.mailout_id
        try:
            # Counted after the first batch, not before it: at a million rows
            # the count takes a few hundred ms, which the first email need not
            # wait for.
            sent_so_far = None
            halt = self.cannot_write_mailout()
            if halt:
                return self.halt(halt)
            while True:
                if self.stop.is_set():
                    return self.halt(_Halt("paused", f"interrupted: {stop_reason}"))
                # Made before the call, so a retry after a lost COMMIT answer
                # finds the rows the first attempt took.
                batch_id = uuid.uuid4()
                batch = self.db(lambda conn: self.take_batch(conn, batch_id))
                if batch is None:
                    return self.lost_ownership()
                recipients, skipped = batch
                if not recipients and not skipped:
                    break
                outcomes, halt = self.send_batch(recipients)
                self.unrecorded = outcomes
                reputation = self.db(lambda conn: self.record_batch(conn, outcomes))
                self.unrecorded = []
                if sent_so_far is None:
                    sent_so_far = self.db(lambda conn: store.count_sent(conn, mailout_id))
                    # Rendering failures from here on take their emails out
                    # of the sent count (SES never sent them).
                    unrendered_before = reputation["rendering_failures"]
                else:
                    sent_so_far += sum(1 for o in outcomes if o.status == "sent")
                sent_for_guard = sent_so_far - (reputation["rendering_failures"] - unrendered_before)
                self.count(outcomes, skipped)
                if self.lost:
                    return self.lost_ownership()
                if halt:
                    return self.halt(halt)
                problem = reputation["more_queued"] and reputation_problem(sent_for_guard, reputation, self.settings)
                if problem:
                    return self.halt(_Halt("paused", f"reputation guard: {problem}"))
            self.db(lambda conn: store.finish_mailout(conn, mailout_id, self.claim.runner_id, "sent"))
            log.info(
                "mailout %s sent",
                mailout_id,
                extra={"event": "sent", "mailout_id": str(mailout_id), "counts": dict(self.counts)},
            )
            return self.summary(None)
        except DatabaseUnavailable as exc:
            # Nothing more can be recorded. Every email that left has a
            # 'sending' row at least, so a resume will mark those unknown
            # and never send them twice; the log keeps the SES ids of the
            # batch that could not be recorded.
            log.error("mailout %s stopped: the database stayed unreachable: %s", mailout_id, exc)
            for outcome in self.unrecorded:
                if outcome.status == "sent":
                    log.error(
                        "mailout %s: send_logs row %s was sent (SES id %s) but not recorded",
                        mailout_id,
                        outcome.log_id,
                        outcome.ses_message_id,
                        extra={"event": "unrecorded", "mailout_id": str(mailout_id)},
                    )
            return self.summary(f"database unreachable: {exc}", from_database=False)
        except Exception as exc:  # noqa: BLE001 - the run must end in a recorded state
            log.exception("mailout %s stopped by an unexpected error", mailout_id)
            self.record_once_more()
            return self.halt(_Halt("failed", f"{type(exc).__name__}: {exc}"))

    def record_once_more(self) -> None:
        """After an unexpected error between sending a batch and recording it:
        one more try, so that rows SES never saw do not stay 'sending'."""
        if not self.unrecorded:
            return
        try:
            with self.pool.connection() as conn:
                store.record_outcomes(conn, self.claim.mailout_id, self.unrecorded)
            self.unrecorded = []
        except Exception:  # noqa: BLE001 - the error that brought us here is logged already
            log.exception("mailout %s: the batch's outcomes could not be recorded", self.claim.mailout_id)

    def cannot_write_mailout(self) -> _Halt | None:
        """Encode what every message shares before any row is taken: a
        mailout that cannot be written stops here with every row queued."""
        try:
            self.builder.prepare()
        except Exception as exc:  # noqa: BLE001 - whatever it is, nothing was sent
            return _Halt("failed", f"the mailout cannot be written as an email: {exc}")
        return None

    def take_batch(self, conn, batch_id: UUID):
        if not store.heartbeat(conn, self.claim.mailout_id, self.claim.runner_id):
            return None
        self.last_heartbeat = time.monotonic()
        return store.take_batch(conn, self.claim.mailout_id, self.settings.batch_size, batch_id)

    def keep_heartbeat(self) -> bool:
        """Between emails, at most every quarter of HEARTBEAT_STALE_SECONDS:
        is the mailout still this run's? (Writes the heartbeat too.) False
        when another run took it over or its status was changed by hand."""
        if self.lost:
            return False
        with self.lock:
            if time.monotonic() - self.last_heartbeat < self.settings.heartbeat_stale_seconds / 4:
                return True
            self.last_heartbeat = time.monotonic()
        return self.db(lambda conn: store.heartbeat(conn, self.claim.mailout_id, self.claim.runner_id))

    def lost_ownership(self) -> Summary:
        log.warning(
            "mailout %s is no longer this run's (a forced resume took it, or its status was changed by hand);"
            " this run stops",
            self.claim.mailout_id,
        )
        return self.summary("another run took the mailout over, or its status was changed by hand; this run stopped")

    def record_batch(self, conn, outcomes: list[store.Outcome]) -> dict:
        store.record_outcomes(conn, self.claim.mailout_id, outcomes)
        store.heartbeat(conn, self.claim.mailout_id, self.claim.runner_id)
        return store.reputation(conn, self.claim.mailout_id)

    def count(self, outcomes: list[store.Outcome], skipped: int) -> None:
        for outcome in outcomes:
            if outcome.status in self.counts:
                self.counts[outcome.status] += 1
                metrics.EMAILS.labels(outcome.status).inc()
        self.counts["skipped"] += skipped
        if skipped:
            metrics.EMAILS.labels("skipped").inc(skipped)
        log.info(
            "mailout %s batch done: %s so far this run (pace %.2f/s)",
            self.claim.mailout_id,
            ", ".join(f"{name} {n}" for name, n in self.counts.items()),
            self.pacer.current_rate,
            extra={
                "event": "batch",
                "mailout_id": str(self.claim.mailout_id),
                "counts": dict(self.counts),
                "rate": round(self.pacer.current_rate, 3),
            },
        )
        if self.progress:
            self.progress(dict(self.counts))

    def halt(self, halt: _Halt) -> Summary:
        mailout_id = self.claim.mailout_id
        reason = halt.reason
        if halt.status == "paused" or halt.status == "failed":
            reason = f"{halt.reason}; resume with: python -m amazonsender mailout resume {mailout_id}"
        log.error(
            "mailout %s stopped as '%s': %s",
            mailout_id,
            halt.status,
            reason,
            extra={"event": "stopped", "mailout_id": str(mailout_id), "status": halt.status, "counts": dict(self.counts)},
        )
        try:
            self.db(lambda conn: store.finish_mailout(conn, mailout_id, self.claim.runner_id, halt.status, reason))
        except DatabaseUnavailable:
            log.error("mailout %s: could not record the stop; it stays 'sending' until resumed", mailout_id)
            return self.summary(halt.reason, from_database=False)
        return self.summary(halt.reason)

    # -- one batch ----------------------------------------------------------

    def send_batch(self, recipients: list[store.Recipient]) -> tuple[list[store.Outcome], _Halt | None]:
        """Send each recipient's email, SEND_CONCURRENCY calls at a time (all
        paced by the one Pacer), one recipient per SendEmail or `per_call`
        per SendBulkEmail. On a reason to stop, the recipients not yet
        attempted go back in the queue, and the reason is returned."""
        halts: list[_Halt] = []
        self.handed, self.settled = set(), {}

        def attempt(chunk: list[store.Recipient]) -> list[store.Outcome]:
            try:
                halt = None if halts or self.lost else self.reason_to_stop_before_sending()
                if halt:
                    halts.append(halt)
                if halts or self.lost:
                    return [store.Outcome(recipient.log_id, "queued") for recipient in chunk]
                if self.bulk is not None:
                    outcomes, halt = self.send_chunk(chunk)
                else:
                    outcomes, halt = self.send_one_by_one(chunk)
            except Exception as exc:  # noqa: BLE001 - a bug or a lost database must not strand rows
                return self.after_unexpected(chunk, exc, halts)
            if halt:
                halts.append(halt)
            return outcomes

        size = self.per_call
        chunks = [recipients[start : start + size] for start in range(0, len(recipients), size)]
        if self.executor is None:
            results = [attempt(chunk) for chunk in chunks]
        else:
            results = list(self.executor.map(attempt, chunks))
        return [outcome for outcomes in results for outcome in outcomes], (halts[0] if halts else None)

    def after_unexpected(self, chunk: list[store.Recipient], exc: Exception, halts: list[_Halt]) -> list[store.Outcome]:
        """Our own code failed while sending `chunk`: stop the run, keep what
        is known, and leave no row 'sending' that no SES call carried."""
        if isinstance(exc, DatabaseUnavailable):
            halts.append(_Halt("failed", f"database unreachable: {exc}"))
        else:
            log.exception("mailout %s: unexpected error while sending", self.claim.mailout_id)
            halts.append(_Halt("failed", f"{type(exc).__name__}: {exc}"))
        with self.lock:
            return [
                self.settled.get(r.log_id)
                or (
                    store.Outcome(r.log_id, "unknown", error=f"in doubt after an unexpected error: {exc}"[:500])
                    if r.log_id in self.handed
                    else store.Outcome(r.log_id, "queued")
                )
                for r in chunk
            ]

    def call_ses(self, log_ids, call, *args):
        """Make one SES call carrying these rows, noting first that SES may
        have them: if anything but a SendError comes out of the call (a bug
        of ours, say), after_unexpected marks them 'unknown', never resent."""
        with self.lock:
            self.handed.update(log_ids)
        return call(*args)

    def reason_to_stop_before_sending(self) -> _Halt | None:
        if not self.keep_heartbeat():
            # Another run owns the mailout and has marked this batch
            # 'unknown': record what left, attempt nothing more.
            self.lost = True
            return None
        if self.stop.is_set():
            return _Halt("paused", f"interrupted: {stop_reason}")
        with self.lock:
            failures, last_error = self.consecutive_failures, self.last_error
        if failures >= self.settings.max_consecutive_failures:
            return _Halt(
                "failed",
                f"{failures} failures in a row (MAX_CONSECUTIVE_FAILURES); last: {last_error or 'see send_logs'}",
            )
        return None

    def send_one(self, recipient: store.Recipient) -> tuple[store.Outcome | None, _Halt | None]:
        try:
            email = self.builder.build(
                to_email=recipient.email,
                to_name=recipient.name,
                unsubscribe_url=self.unsubscribe_url(recipient.subscriber_id),
            )
        except Exception as exc:  # noqa: BLE001 - one recipient's data fails that recipient alone
            outcome = store.Outcome(recipient.log_id, "failed", error=cannot_write(exc))
            self.note_outcomes([outcome])
            return outcome, None
        try:
            message_id = self.send_with_retries(email, recipient.log_id)
        except SendError as exc:
            if exc.kind in (RECIPIENT, TRANSIENT):
                outcome = store.Outcome(recipient.log_id, "failed", error=str(exc))
                self.note_outcomes([outcome])
                return outcome, None
            if exc.kind == IN_DOUBT:
                outcome = store.Outcome(recipient.log_id, "unknown", error=str(exc))
                self.note_outcomes([outcome])
                return outcome, None
            if exc.kind == STOPPED:
                return None, _Halt("paused", f"interrupted: {stop_reason}")
            if exc.kind == THROTTLED:
                # Never a failure: this recipient goes back to the queue.
                return None, kept_throttling(exc)
            # Account-wide: SES refused the call itself, so this recipient
            # was not sent and goes back to the queue with the rest.
            return None, _Halt("failed", str(exc))
        outcome = store.Outcome(recipient.log_id, "sent", ses_message_id=message_id)
        self.note_outcomes([outcome])
        return outcome, None

    def note_outcomes(self, outcomes) -> None:
        """Count failures in a row for the circuit breaker: a failed
        recipient adds one, a sent one starts again from zero."""
        with self.lock:
            for outcome in outcomes:
                self.settled[outcome.log_id] = outcome
                if outcome.status == "failed":
                    self.consecutive_failures += 1
                    self.last_error = outcome.error
                elif outcome.status == "sent":
                    self.consecutive_failures = 0

    def wait_after_throttling(self, attempt: int, error: SendError, what: str) -> None:
        """SES throttled us: slow the pace for a while, and back off before
        sending `what` again."""
        self.pacer.slow_down()
        self.keep_heartbeat()
        log.warning(
            "SES throttled us (%s); pace now %.2f/s, waiting before sending %s again",
            error,
            self.pacer.current_rate,
            what,
        )
        self.sleep(backoff_seconds(attempt))

    def send_with_retries(self, email, log_id: UUID) -> str:
        throttled = transient = 0
        while True:
            self.pacer.wait()
            if self.stop.is_set():
                raise SendError("stopped before sending", kind=STOPPED)
            try:
                return self.call_ses([log_id], self.transport.send, email)
            except SendError as exc:
                if exc.kind == THROTTLED and throttled < THROTTLE_ATTEMPTS:
                    throttled += 1
                    self.wait_after_throttling(throttled, exc, "the same email")
                elif exc.kind == TRANSIENT and transient < TRANSIENT_ATTEMPTS - 1:
                    transient += 1
                    self.sleep(backoff_seconds(transient))
                else:
                    raise

    def send_one_by_one(self, chunk: list[store.Recipient]) -> tuple[list[store.Outcome], _Halt | None]:
        outcomes = []
        for recipient in chunk:
            outcome, halt = self.send_one(recipient)
            if halt:
                queued = [store.Outcome(r.log_id, "queued") for r in chunk[len(outcomes) :]]
                return outcomes + queued, halt
            outcomes.append(outcome)
        return outcomes, None

    def send_chunk(self, chunk: list[store.Recipient]) -> tuple[list[store.Outcome], _Halt | None]:
        """One SendBulkEmail call for these recipients, with the retries of
        send_with_retries: a throttled or transient answer, for the call or
        for some of its recipients, sends those recipients again. Recipients
        not attempted because of a halt go back to the queue."""
        content = self.bulk  # another thread may turn bulk off meanwhile
        outcomes: dict = {}
        alone: dict = {}  # sent one by one, already counted
        entries = {}
        for recipient in chunk:
            try:
                entries[recipient.log_id] = content.recipient(
                    to_email=recipient.email, to_name=recipient.name, token=self.tokens.make(recipient.subscriber_id)
                )
            except Exception as exc:  # noqa: BLE001 - one recipient's data fails that recipient alone
                outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "failed", error=cannot_write(exc))
        halt = None
        pending = [recipient for recipient in chunk if recipient.log_id in entries]
        throttled = transient = 0
        while pending and halt is None:
            self.pacer.wait(len(pending))
            if self.stop.is_set():
                halt = _Halt("paused", f"interrupted: {stop_reason}")
                break
            try:
                results = self.call_ses(
                    [r.log_id for r in pending], self.transport.send_bulk, content, [entries[r.log_id] for r in pending]
                )
            except SendError as exc:
                results = [BulkResult(error=exc)] * len(pending)
                if exc.code in ACCESS_DENIED_CODES:
                    # The IAM policy allows SendEmail only: go on with that.
                    log.warning(
                        "SendBulkEmail is not allowed for these credentials (%s); mailout %s goes on with one"
                        " SendEmail per recipient (allow ses:SendBulkEmail, or set SES_BULK_SEND=off)",
                        exc,
                        self.claim.mailout_id,
                    )
                    self.bulk = None
                    single, halt = self.send_one_by_one(pending)
                    alone.update((outcome.log_id, outcome) for outcome in single)
                    break
                if exc.kind == RECIPIENT and len(pending) > 1:
                    # SES refused the whole call for something in it: each
                    # recipient alone finds out whose.
                    for recipient in pending:
                        # Refused for something every recipient shares after
                        # all? The circuit breaker stops the split.
                        halt = self.reason_to_stop_before_sending()
                        if halt or self.lost:
                            break
                        single, halt = self.send_chunk([recipient])
                        alone[recipient.log_id] = single[0]
                        if halt:
                            break
                    break
            retry: list[store.Recipient] = []
            retry_kinds = set()
            for recipient, result in zip(pending, results):
                error = result.error
                if error is None:
                    outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "sent", ses_message_id=result.message_id)
                elif error.kind == RECIPIENT:
                    outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "failed", error=str(error))
                elif error.kind == IN_DOUBT:
                    outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "unknown", error=str(error))
                elif error.kind in (THROTTLED, TRANSIENT):
                    retry.append(recipient)
                    retry_kinds.add(error.kind)
                    last_error = error
                elif error.kind == ACCOUNT:
                    # Not sent: back to the queue with the rest.
                    halt = halt or _Halt("failed", str(error))
                else:  # STOPPED
                    halt = halt or _Halt("paused", f"interrupted: {stop_reason}")
            if halt is not None or not retry:
                break
            if THROTTLED in retry_kinds:
                if throttled >= THROTTLE_ATTEMPTS:
                    halt = kept_throttling(last_error)
                    break
                throttled += 1
                self.wait_after_throttling(throttled, last_error, f"the same {len(retry)}")
            else:
                if transient >= TRANSIENT_ATTEMPTS - 1:
                    for recipient in retry:
                        outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "failed", error=str(last_error))
                    break
                transient += 1
                self.sleep(backoff_seconds(transient))
            pending = retry
        self.note_outcomes(outcomes.values())
        outcomes.update(alone)
        return [outcomes.get(r.log_id) or store.Outcome(r.log_id, "queued") for r in chunk], halt

    def unsubscribe_url(self, subscriber_id) -> str:
        return f"{self.settings.app_base_url}/unsubscribe?token={self.tokens.make(subscriber_id)}"

    # -- the database, patiently ----------------------------------------------

    def db(self, work):
        """Run `work(conn)` in one transaction, retrying a lost connection with
        backoff for up to DB_RETRY_SECONDS. Every piece of work given here is
        safe to repeat."""
        deadline = time.monotonic() + self.settings.db_retry_seconds
        attempt = 0
        while True:
            try:
                with self.pool.connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                attempt += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.stop.is_set():
                    raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
                log.warning("database unreachable (%s); retrying", str(exc).strip()[:200])
                self.sleep(min(backoff_seconds(attempt), left))

    def summary(self, error: str | None, *, from_database: bool = True) -> Summary:
        mailout_id = self.claim.mailout_id
        counts, status = {}, "unknown"
        if from_database:
            try:
                with self.pool.connection() as conn:
                    counts = store.count_by_status(conn, mailout_id)
                    mailout = store.get_mailout(conn, mailout_id)
                status = mailout["status"] if mailout else "deleted"
            except (psycopg.OperationalError, PoolTimeout):
                from_database = False
        if not from_database:
            # This run's own counts; the ledger has the rest.
            counts = {"sent": self.counts["sent"], "failed": self.counts["failed"],
                      "skipped": self.counts["skipped"], "unknown": self.counts["unknown"]}
        return Summary(
            mailout_id=str(mailout_id),
            status=status,
            recipients=self.claim.recipients,
            sent=counts.get("sent", 0) + counts.get("delivered", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            queued=counts.get("queued", 0),
            in_doubt=counts.get("sending", 0) + counts.get("unknown", 0),
            error=error,
            seconds=round(time.monotonic() - self.started, 3),
        )


TEST_SUBJECT_PREFIX = "[TEST] "


def is_one_test_address(value: str) -> bool:
    """One address SES can send to, as `a@b.c` or `Name <a@b.c>`, and not
    two in one entry, which would get round the webhook's MAX_TEST_RECIPIENTS."""
    return is_one_address(value)


def test_key(address: str) -> str:
    """How a test address is found on the list: its address alone, as stored."""
    bare = bare_address(address)
    try:
        return ses_address(bare).lower()
    except AddressError:
        return bare.lower()


def send_test(pool: ConnectionPool, transport, settings, mailout_id: UUID, addresses: list[str]) -> list[dict]:
    """Send the mailout to a few test addresses, subject prefixed [TEST],
    through the same message builder and transport, without touching the
    mailout's state or its ledger. Repeatable, whatever the status. Raises
    MailoutNotFound, or MailoutInvalid for a subject or body that cannot go out."""
    with pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is None:
            raise MailoutNotFound(str(mailout_id))
        sendable(mailout)
        subscribers = store.subscribers_by_email(conn, [test_key(address) for address in addresses])
    builder = MessageBuilder(
        mailout_id=str(mailout_id),
        subject=TEST_SUBJECT_PREFIX + mailout["subject"],
        body_html=mailout["body"],
        from_address=settings.ses_from_email,
        reply_to=settings.ses_reply_to,
        footer=Footer.from_settings(settings),
    )
    tokens = UnsubscribeTokens(settings.unsubscribe_secret, settings.unsubscribe_old_secrets)
    pacer = Pacer(settings.rate_limit_per_sec, sleep=stop_requested.wait)
    results = []
    for address in addresses:
        if stop_requested.is_set():
            results.append({"to": address, "status": "failed", "error": f"not sent: {stop_reason}"})
            continue
        subscriber = subscribers.get(test_key(address))
        # A test address that is not on the list gets a link that works and
        # changes nothing (no subscriber has the nil id).
        subscriber_id = subscriber["id"] if subscriber else UUID(int=0)
        try:
            email = builder.build(
                to_email=bare_address(address),
                to_name=subscriber["from_name"] if subscriber else parseaddr(address)[0],
                unsubscribe_url=f"{settings.app_base_url}/unsubscribe?token={tokens.make(subscriber_id)}",
            )
        except Exception as exc:  # noqa: BLE001 - this address fails alone, with the reason
            results.append({"to": address, "status": "failed", "error": cannot_write(exc)})
            continue
        pacer.wait()
        try:
            results.append({"to": address, "status": "sent", "ses_message_id": transport.send(email)})
        except SendError as exc:
            results.append({"to": address, "status": "failed", "error": str(exc)})
    log.info(
        "mailout %s test-sent to %d addresses",
        mailout_id,
        len(addresses),
        extra={"event": "test_send", "mailout_id": str(mailout_id)},
    )
    return results


def cannot_write(exc: Exception) -> str:
    """The reason a recipient failed before any SES call: its address, name
    or link could not be written."""
    if isinstance(exc, AddressError):
        return f"SES cannot send to this address: {exc}"
    return f"this recipient's email could not be written: {type(exc).__name__}: {exc}"


def kept_throttling(error: SendError) -> _Halt:
    """SES still throttled after THROTTLE_ATTEMPTS waits: pause, and leave
    the recipients queued (throttling is never a recipient's failure)."""
    return _Halt("paused", f"SES kept throttling after {THROTTLE_ATTEMPTS} waits: {error}")


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of
    BACKOFF_BASE_SECONDS * 2^(attempt-1), capped at BACKOFF_MAX_SECONDS."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
