"""The run loop: read queued rows ahead, hand them to the sending threads one SES call at a time, ask the guard; until the list is done or the run must stop.

The run also queues the recipients: a page of the snapshot before a read
whenever less than a page is queued ahead (queueing.py), and the mailout
ends 'sent' only once the last page is in and nothing is left queued.

Exactly once: each call's rows are marked 'sending' and committed right
before the call, and each gets its outcome right after SES answers
(sending.py). A row only goes out from 'queued', so a row a dead run left
'sending' is in doubt and never sent again; and only the calls in flight
can leave rows so.

The loop reads ahead (ahead.py) while calls are in flight, and keeps as
many calls in flight as SEND_CONCURRENCY allows (flights.py: a number, or
as many as SES's answer time needs to hold the pace).

Why a run stops before the list is done travels one way: into the run's
Halting (stop.py), which keeps the first reason (losing the mailout to
another run outranks any); the sending threads look there before every SES
call, and this loop stops handing out calls on it, waits for the calls in
flight, and ends the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import metrics, store
from ..transport import Transport
from . import attempts
from .claim import Claim
from .errors import DatabaseUnavailable
from .ahead import ReadAhead
from .flights import Flights
from .guard import SentCount, reputation_problem
from .lease import Lease
from .pacer import Pacer
from .queueing import Queueing
from .sending import CallSender
from .stop import (
    LOST,
    Halt,
    Halting,
    StopReason,
    StopSignal,
    interrupted_by,
    next_resume_in,
    process_stop,
    unreachable_database,
)

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
    """Send every queued row of a claimed mailout, call by call, and end the
    mailout 'sent', 'failed' (every send would fail) or 'paused' (stopped on
    purpose, or by the reputation guard): always in a resumable state."""
    run = Run(pool, transport, settings, claim, sleep=sleep, pacer=pacer, stop=stop, progress=progress)
    return run.execute()


def send_in_thread(
    pool: ConnectionPool,
    transport: Transport,
    settings,
    claim: Claim,
    *,
    stop: StopSignal = process_stop,
    what: str,
    finished: Callable[[Summary | None], None] | None = None,
) -> None:
    """send_claimed_mailout for a thread of its own (the webhook's background
    send, the watcher's resume): its end, or its crash, goes to the log.
    `finished` is then called with the summary (None after a crash): how
    the web layer tells a Notion page, without the sender knowing Notion."""
    summary = None
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
    if finished is not None:
        try:
            finished(summary)
        except Exception:  # noqa: BLE001 - a report's failure changes nothing sent
            log.exception("mailout %s: reporting its end failed", claim.mailout_id)


# The most rows one read takes, however many calls are in flight.
MAX_READ = 5_000


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
        self.ahead = ReadAhead()
        self.queueing = Queueing(claim.mailout_id, claim.runner_id)
        self.lease = Lease(pool, claim.mailout_id, claim.runner_id, settings.heartbeat_stale_seconds, self.lost)
        self.sending = CallSender(
            transport,
            settings,
            claim,
            rate,
            pacer=self.pacer,
            stop=stop,
            sleep=self.sleep,
            halting=self.halting,
            keep_heartbeat=self.keep_heartbeat,
            db=self.db,
            recorded=self.recorded,
            marked=self.ahead.through,
        )
        self.flights = Flights(
            settings.send_concurrency,
            settings.send_concurrency_max,
            lambda: self.pacer.current_rate / self.sending.per_call,
        )
        self.drained = False
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.counts = {"sent": 0, "failed": 0, "skipped": 0, "unknown": 0}
        self.guard = SentCount()

    # -- the loop ---------------------------------------------------------

    def execute(self) -> Summary:
        executor = ThreadPoolExecutor(max_workers=self.flights.ceiling, thread_name_prefix="send")
        try:
            with self.lease.beating():
                return self.send_all(executor)
        finally:
            executor.shutdown(wait=True)

    def send_all(self, executor: ThreadPoolExecutor) -> Summary:
        mailout_id = self.claim.mailout_id
        try:
            self.check_mailout_can_be_written()
            if self.dispatch(executor):
                return self.summary(None)
            # No more calls: those in flight record what became of them first.
            self.flights.wait_idle()
            return self.end(self.stopping)
        except DatabaseUnavailable as exc:
            return self.database_gone(exc)
        except Exception as exc:  # noqa: BLE001 - the run must end in a recorded state
            log.exception("mailout %s stopped by an unexpected error", mailout_id)
            halt = Halt("failed", f"{type(exc).__name__}: {exc}", StopReason.INTERNAL_ERROR)
            self.stop_run(halt)
            self.flights.wait_idle()
            return self.end(halt)

    def dispatch(self, executor: ThreadPoolExecutor) -> bool:
        """Hand out the calls until the list is done (True) or the run must stop."""
        while not self.stopping:
            if self.stop.is_set():
                self.stop_run(interrupted_by(self.stop))
                break
            size = self.read_size()
            if len(self.ahead) < size and not self.drained and not self.read(size):
                break
            recipients = self.ahead.next_call(self.sending.per_call)
            if recipients is None:
                if self.stopping or not self.queueing.done:
                    continue  # the next page may bring some
                # Nothing left to read: once the calls in flight are through,
                # nothing is left to send, unless rows came back to the queue
                # as it ended (a run it was taken from gave back what it
                # never sent), which the next read finds.
                self.flights.wait_idle()
                if self.read(size) and not len(self.ahead) and self.finish_sent():
                    return True
                continue
            ticket = self.flights.acquire(lambda: self.stopping is not None or self.stop.is_set())
            if ticket is None:
                self.ahead.through(recipients)
                continue
            try:
                executor.submit(self.send_call, recipients, ticket)
            except BaseException:
                # Refused (the interpreter is shutting down): nothing waits for it.
                self.ahead.through(recipients)
                self.flights.release(ticket, answered=False)
                raise
        return False

    def send_call(self, recipients: list[store.Recipient], ticket: int) -> None:
        """One call, in a sending thread."""
        answered = False
        try:
            answered = self.sending.send_call(recipients, started=lambda: self.flights.restart(ticket))
        except Exception:  # noqa: BLE001 - send_call records its own failures; this is a last resort
            log.exception("mailout %s: a sending thread failed", self.claim.mailout_id)
            self.stop_run(Halt("failed", "a sending thread failed", StopReason.INTERNAL_ERROR))
        finally:
            self.ahead.through(recipients)
            self.flights.release(ticket, answered=answered)

    def read_size(self) -> int:
        """Rows to read at once: a batch, or a round of calls in flight if more."""
        return min(MAX_READ, max(self.settings.batch_size, self.sending.per_call * self.flights.limit()))

    def read(self, size: int) -> bool:
        """Queue a page if one is due, read the next rows, and ask the guard.
        False when the run must stop."""
        if self.queueing.wanted() and not self.db(self.queueing.next_page):
            self.stop_run(LOST)
            return False
        after = self.ahead.cursor
        # Reading on from the last row read needs no exclusions: only a read
        # from the start may meet rows read and not yet marked.
        exclude = self.ahead.exclude() if after is None else []
        batch = self.db(lambda conn: self.read_batch(conn, size, exclude, after))
        if batch is None:
            self.stop_run(LOST)
            return False
        recipients, skipped, last = batch
        self.queueing.taken(len(recipients) + skipped)
        full = len(recipients) + skipped >= size
        # A short read ends a pass through the queue; rows queued behind it
        # meanwhile (a page's ids fall anywhere) are for the next pass.
        self.ahead.cursor = last if full else None
        # From the start, and short: the queue is empty but for what is read,
        # so no more reads until that is sent.
        self.drained = self.queueing.done and not full and after is None
        self.ahead.add(recipients)
        self.note_skipped(skipped)
        if self.guard.due(self):
            self.check_reputation()
        return not self.stopping

    def check_reputation(self) -> None:
        reputation = self.db(lambda conn: store.reputation(conn, self.claim.mailout_id))
        sent = self.guard.sent(self, reputation)
        more = reputation["more_queued"] or not self.queueing.done
        problem = more and reputation_problem(sent, reputation, self.settings)
        if problem:
            self.stop_run(Halt("paused", f"reputation guard: {problem}", StopReason.GUARD))
        self.report()

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

    def read_batch(self, conn, size: int, exclude: list, after):
        if not self.lease.renew(conn):
            return None
        self.lease.renewed()
        return store.read_batch(conn, self.claim.mailout_id, size, exclude, after)

    def recorded(self, outcomes: list[store.Outcome]) -> None:
        """A call's outcomes are in the ledger (from a sending thread)."""
        with self.lock:
            for outcome in outcomes:
                if outcome.status in self.counts:
                    self.counts[outcome.status] += 1
                    metrics.EMAILS.labels(outcome.status).inc()
            self.guard.recorded(outcomes)

    def note_skipped(self, skipped: int) -> None:
        if skipped:
            with self.lock:
                self.counts["skipped"] += skipped
            metrics.EMAILS.labels("skipped").inc(skipped)

    def report(self) -> None:
        """The counts so far, to the log and the progress callback: once a read."""
        with self.lock:
            counts = dict(self.counts)
        log.info(
            "mailout %s: %s so far this run (pace %.2f/s, %d calls in flight)",
            self.claim.mailout_id,
            ", ".join(f"{name} {n}" for name, n in counts.items()),
            self.pacer.current_rate,
            self.flights.in_flight,
            extra={
                "event": "batch",
                "mailout_id": str(self.claim.mailout_id),
                "counts": counts,
                "rate": round(self.pacer.current_rate, 3),
            },
        )
        if self.progress:
            self.progress(counts)

    # -- how a run ends -------------------------------------------------------

    def record_end(self, conn, halt: Halt, reason: str) -> None:
        """The stop, in one transaction: rows SES never took back to the
        queue, then the mailout's status, reason and next automatic resume."""
        requeue = set(halt.requeue)
        if halt.code is StopReason.SES_UNAVAILABLE:
            # And calls in flight as the breaker tripped that gave up on SES since.
            with self.sending.lock:
                requeue |= self.sending.unreached
        if requeue:
            store.requeue_unreached(conn, self.claim.mailout_id, list(requeue))
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
        # them twice; the sending threads logged the SES ids of the calls
        # they could not record.
        self.stop_run(unreachable_database(exc))
        self.flights.wait_idle()
        log.error("mailout %s stopped: the database stayed unreachable: %s", self.claim.mailout_id, exc)
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
