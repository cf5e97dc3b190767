"""The run loop: take a batch of queued rows, send them, record their outcomes, ask the guard; until the list is done or the run must stop.

The run also queues the recipients: a page of the snapshot before a batch
whenever less than a page is queued ahead (queueing.py), and the mailout
ends 'sent' only once the last page is in and nothing is left queued.

Exactly once: a batch's rows are marked 'sending' and committed before any of
them goes to SES, and each gets its outcome after SES answers. A row only
goes out from 'queued', so a row a dead run left 'sending' is in doubt and
never sent again.

Why a run stops before the list is done travels one way: into the run's
Halting (stop.py), which keeps the first reason (losing the mailout to
another run outranks any); the sending steps (sending.py) look there before
every SES call, and this loop ends the run on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import metrics, store
from ..transport import Transport
from . import attempts
from .claim import Claim
from .errors import DatabaseUnavailable
from .guard import reputation_problem
from .lease import Lease
from .pacer import Pacer
from .queueing import Queueing
from .sending import BatchSender
from .stop import LOST, Halt, Halting, StopReason, StopSignal, interrupted_by, next_resume_in, process_stop

log = logging.getLogger(__name__)


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


def send_claimed_mailout(
    pool: ConnectionPool,
    transport: Transport,
    settings,
    claim: Claim,
    *,
    sleep: Callable[[float], None] | None = None,
    pacer: Pacer | None = None,
    stop: StopSignal = process_stop,
    progress: Callable[[dict], None] | None = None,
) -> Summary:
    """Send every queued row of a claimed mailout, batch by batch, and end the
    mailout 'sent', 'failed' (every send would fail) or 'paused' (stopped on
    purpose, or by the reputation guard): always in a resumable state."""
    run = Run(pool, transport, settings, claim, sleep=sleep, pacer=pacer, stop=stop, progress=progress)
    return run.execute()


def send_in_thread(
    pool: ConnectionPool, transport: Transport, settings, claim: Claim, *, stop: StopSignal = process_stop, what: str
) -> None:
    """send_claimed_mailout for a thread of its own (the webhook's background
    send, the watcher's resume): its end, or its crash, goes to the log."""
    try:
        summary = send_claimed_mailout(pool, transport, settings, claim, stop=stop)
        log.info(
            "mailout %s finished: %s",
            claim.mailout_id,
            summary.status,
            extra={"event": "finished", "mailout_id": str(claim.mailout_id), "counts": summary.to_dict()},
        )
    except Exception:  # noqa: BLE001 - a thread's error must reach the log
        log.exception("mailout %s: %s crashed", claim.mailout_id, what)


class Run:
    def __init__(self, pool, transport: Transport, settings, claim: Claim, *, sleep, pacer, stop: StopSignal, progress):
        self.pool = pool
        self.settings = settings
        self.claim = claim
        # By default every wait (pace, backoff, database retry) is a wait on
        # the stop signal, so a stop cuts it short.
        self.sleep = sleep or stop.wait
        self.stop = stop
        self.progress = progress
        rate = claim.rate_per_sec or settings.rate_limit_per_sec
        self.pacer = pacer or Pacer(rate, sleep=self.sleep)
        self.halting = Halting()
        self.queueing = Queueing(claim.mailout_id, claim.runner_id)
        self.lease = Lease(pool, claim.mailout_id, claim.runner_id, settings.heartbeat_stale_seconds, self.lost)
        self.sending = BatchSender(
            transport,
            settings,
            claim,
            rate,
            pacer=self.pacer,
            stop=stop,
            sleep=self.sleep,
            halting=self.halting,
            keep_heartbeat=self.keep_heartbeat,
        )
        self.started = time.monotonic()
        self.unrecorded: list[store.Outcome] = []
        self.counts = {"sent": 0, "failed": 0, "skipped": 0, "unknown": 0}

    # -- the loop ---------------------------------------------------------

    def execute(self) -> Summary:
        try:
            with self.lease.beating():
                return self.send_all()
        finally:
            self.sending.close()

    def send_all(self) -> Summary:
        mailout_id = self.claim.mailout_id
        try:
            self.check_mailout_can_be_written()
            sent = _SentCount()
            while not self.stopping:
                if self.stop.is_set():
                    self.stop_run(interrupted_by(self.stop))
                    break
                if self.queueing.wanted() and not self.db(self.queueing.next_page):
                    self.stop_run(LOST)
                    break
                # Made before the call, so a retry after a lost COMMIT answer
                # finds the rows the first attempt took.
                batch_id = uuid.uuid4()
                batch = self.db(lambda conn: self.take_batch(conn, batch_id))
                if batch is None:
                    self.stop_run(LOST)
                    break
                recipients, skipped = batch
                self.queueing.taken(len(recipients) + skipped)
                if not recipients and not skipped:
                    if not self.queueing.done:
                        continue  # the next page may bring some
                    if self.finish_sent():
                        return self.summary(None)
                    # Rows came back to the queue as it ended (a run it was
                    # taken from gave back what it never sent), or it is no
                    # longer this run's: the next take says which.
                    continue
                outcomes = self.sending.send_batch(recipients)
                self.unrecorded = outcomes
                reputation = self.db(lambda conn: self.record_batch(conn, outcomes))
                self.unrecorded = []
                sent_for_guard = sent.after_batch(self, outcomes, reputation)
                self.count(outcomes, skipped)
                if not self.stopping:
                    more = reputation["more_queued"] or not self.queueing.done
                    problem = more and reputation_problem(sent_for_guard, reputation, self.settings)
                    if problem:
                        self.stop_run(Halt("paused", f"reputation guard: {problem}", StopReason.GUARD))
            return self.end(self.stopping)
        except DatabaseUnavailable as exc:
            return self.database_gone(exc)
        except Exception as exc:  # noqa: BLE001 - the run must end in a recorded state
            log.exception("mailout %s stopped by an unexpected error", mailout_id)
            self.record_once_more()
            return self.end(Halt("failed", f"{type(exc).__name__}: {exc}", StopReason.INTERNAL_ERROR))

    @property
    def stopping(self) -> Halt | None:
        return self.halting.halt

    def stop_run(self, halt: Halt) -> None:
        self.halting.stop(halt)

    def lost(self) -> None:
        self.stop_run(LOST)

    def check_mailout_can_be_written(self) -> None:
        """Encode what every message shares before any row is taken: a
        mailout that cannot be written stops here with every row queued."""
        try:
            self.sending.builder.prepare()
        except Exception as exc:  # noqa: BLE001 - whatever it is, nothing was sent
            self.stop_run(Halt("failed", f"the mailout cannot be written as an email: {exc}", StopReason.UNWRITABLE))

    def take_batch(self, conn, batch_id: UUID):
        if not self.lease.renew(conn):
            return None
        self.lease.renewed()
        return store.take_batch(conn, self.claim.mailout_id, self.settings.batch_size, batch_id)

    def record_batch(self, conn, outcomes: list[store.Outcome]) -> dict:
        store.record_outcomes(conn, self.claim.mailout_id, outcomes)
        self.lease.renew(conn)
        return store.reputation(conn, self.claim.mailout_id)

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

    # -- how a run ends -------------------------------------------------------

    def record_end(self, conn, halt: Halt, reason: str) -> None:
        """The stop, in one transaction: rows SES never took back to the
        queue, then the mailout's status, reason and next automatic resume."""
        if halt.requeue:
            store.requeue_unreached(conn, self.claim.mailout_id, list(halt.requeue))
        store.finish_mailout(
            conn, self.claim.mailout_id, self.claim.runner_id, halt.status, reason,
            stop_reason=halt.code, resume_in=next_resume_in(halt.code, self.claim.auto_attempts),
        )

    def finish_sent(self) -> bool:
        """End the mailout 'sent'; False if a row is queued again or the
        mailout is no longer this run's."""
        mailout_id = self.claim.mailout_id
        if not self.db(lambda conn: store.finish_mailout(conn, mailout_id, self.claim.runner_id, "sent")):
            return False
        log.info(
            "mailout %s sent",
            mailout_id,
            extra={"event": "sent", "mailout_id": str(mailout_id), "counts": dict(self.counts)},
        )
        return True

    def end(self, halt: Halt) -> Summary:
        mailout_id = self.claim.mailout_id
        if halt is LOST:
            log.warning(
                "mailout %s is no longer this run's (paused by an operator, taken by a forced resume, or its"
                " status changed by hand); this run stops",
                mailout_id,
            )
            return self.summary(halt.reason)
        reason = f"{halt.reason}; resume with: python -m amazonsender mailout resume {mailout_id}"
        log.error(
            "mailout %s stopped as '%s': %s",
            mailout_id,
            halt.status,
            reason,
            extra={"event": "stopped", "mailout_id": str(mailout_id), "status": halt.status, "counts": dict(self.counts)},
        )
        try:
            self.db(lambda conn: self.record_end(conn, halt, reason))
        except DatabaseUnavailable:
            log.error("mailout %s: could not record the stop; it stays 'sending' until resumed", mailout_id)
            return self.summary(halt.reason, from_database=False)
        return self.summary(halt.reason)

    def database_gone(self, exc: DatabaseUnavailable) -> Summary:
        # Nothing more can be recorded. Every email that left has a 'sending'
        # row at least, so a resume will mark those unknown and never send
        # them twice; the log keeps the SES ids of the batch that could not
        # be recorded.
        mailout_id = self.claim.mailout_id
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

    def summary(self, error: str | None, *, from_database: bool = True) -> Summary:
        mailout_id = self.claim.mailout_id
        counts, status, recipients = {}, "unknown", self.claim.recipients
        if from_database:
            try:
                with self.pool.connection() as conn:
                    counts = store.count_by_status(conn, mailout_id)
                    mailout = store.get_mailout(conn, mailout_id)
                status = mailout["status"] if mailout else "deleted"
                # Once the snapshot is complete: the rows really queued.
                recipients = mailout["recipients"] if mailout and mailout["recipients"] is not None else recipients
            except (psycopg.OperationalError, PoolTimeout):
                from_database = False
        if not from_database:
            # This run's own counts; the ledger has the rest.
            counts = {"sent": self.counts["sent"], "failed": self.counts["failed"],
                      "skipped": self.counts["skipped"], "unknown": self.counts["unknown"]}
        return Summary(
            mailout_id=str(mailout_id),
            status=status,
            recipients=recipients,
            sent=counts.get("sent", 0) + counts.get("delivered", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            queued=counts.get("queued", 0),
            in_doubt=counts.get("sending", 0) + counts.get("unknown", 0),
            error=error,
            seconds=round(time.monotonic() - self.started, 3),
        )

    def keep_heartbeat(self) -> bool:
        """Between emails, at most every quarter of HEARTBEAT_STALE_SECONDS:
        is the mailout still this run's? (Writes the heartbeat too.) False
        when another run took it over or its status was changed by hand."""
        if self.stopping is LOST:
            return False
        if not self.lease.due():
            return True
        return self.db(self.lease.renew)

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
                self.sleep(min(attempts.backoff_seconds(attempt), left))


class _SentCount:
    """The emails sent so far, as the reputation guard counts them."""

    def __init__(self) -> None:
        self.sent: int | None = None
        self.unrendered_before = 0

    def after_batch(self, run: Run, outcomes: list[store.Outcome], reputation: dict) -> int:
        if self.sent is None:
            # Counted after the first batch, not before it: on a long list
            # the count takes a while, which the first email need not wait for.
            self.sent = run.db(lambda conn: store.count_sent(conn, run.claim.mailout_id))
            # Rendering failures from here on take their emails out of the
            # sent count (SES never sent them).
            self.unrendered_before = reputation["rendering_failures"]
        else:
            self.sent += sum(1 for o in outcomes if o.status == "sent")
        return self.sent - (reputation["rendering_failures"] - self.unrendered_before)
