"""Sending one batch: each recipient's SES call (SendEmail, or SendBulkEmail for several) and its retries.

Every call goes through `attempt`, which applies the retry policy and the
outcome table of attempts.py. A recipient not attempted (the run must stop)
keeps no outcome and goes back to the queue. The run's Halting (stop.py) is
looked at before every call, and given the reason when this batch must be
the last.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from uuid import UUID

from .. import store
from ..links import UnsubscribeLinks
from ..message import Footer, MessageBuilder
from ..ses import ACCESS_DENIED_CODES
from ..template import BulkContent, bulk_content
from ..transport import BulkResult, ErrorKind, SendError, Transport, can_send_bulk
from . import attempts
from .attempts import FATES, Fate, Retries, Step, cannot_write, kept_throttling
from .claim import Claim
from .errors import DatabaseUnavailable
from .guard import CircuitBreaker
from .pacer import Pacer, recipients_per_call
from .stop import LOST, Halt, Halting, StopReason, StopSignal, interrupted_by

log = logging.getLogger(__name__)


class Detour(Enum):
    """A SendBulkEmail call refused as a whole, its recipients sent another way."""

    # The credentials may not call SendBulkEmail: one SendEmail each.
    SEND_EMAIL = "send email"
    # Refused for something in it: each recipient alone finds out whose.
    APART = "apart"


class BatchSender:
    """A run's sending half: its message builder and links, SendEmail or
    SendBulkEmail, the threads of SEND_CONCURRENCY, and the circuit breaker."""

    def __init__(
        self,
        transport: Transport,
        settings,
        claim: Claim,
        rate: float,
        *,
        pacer: Pacer,
        stop: StopSignal,
        sleep: Callable[[float], None],
        halting: Halting,
        keep_heartbeat: Callable[[], bool],
    ):
        self.transport = transport
        self.settings = settings
        self.claim = claim
        self.pacer = pacer
        self.stop = stop
        self.sleep = sleep
        self.halting = halting
        # Between emails: False when the mailout is no longer the run's.
        self.keep_heartbeat = keep_heartbeat
        self.links = UnsubscribeLinks.from_settings(settings)
        self.footer = Footer.from_settings(settings)
        self.builder = MessageBuilder(
            mailout_id=str(claim.mailout_id),
            subject=claim.subject,
            body_html=claim.body,
            from_address=settings.ses_from_email,
            reply_to=settings.ses_reply_to,
            footer=self.footer,
        )
        self.bulk: BulkContent | None = None
        self.per_call = 1
        self.choose_bulk(rate)
        self.lock = threading.Lock()
        self.breaker = CircuitBreaker(settings.max_consecutive_failures)
        # Rows failed after every try met a transient error: SES never took them.
        self.unreached: set = set()
        # SEND_CONCURRENCY > 1: that many SES calls in flight, sharing one
        # transport (boto3 clients are thread-safe) and one Pacer.
        concurrency = settings.send_concurrency
        self.executor = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") if concurrency > 1 else None
        )
        # This batch's rows handed to an SES call, and the outcomes known so
        # far: if our own code fails part way, a row SES may have is
        # 'unknown' and a row no call carried goes back to the queue.
        self.handed: set[UUID] = set()
        self.settled: dict[UUID, store.Outcome] = {}

    def choose_bulk(self, rate: float) -> None:
        """SendBulkEmail, `per_call` recipients a call, when the pace leaves
        room for more than one, the transport has it and the content can be
        its template; otherwise one SendEmail per recipient."""
        per_call = recipients_per_call(rate, self.settings.batch_size)
        if self.settings.ses_bulk_send != "auto" or per_call <= 1 or not can_send_bulk(self.transport):
            return
        self.bulk, why_not = bulk_content(
            mailout_id=str(self.claim.mailout_id),
            subject=self.claim.subject,
            body_html=self.claim.body,
            unsubscribe_base=self.links.base,
            footer=self.footer,
        )
        if self.bulk is None:
            log.warning(
                "mailout %s goes out with one SendEmail per recipient: %s", self.claim.mailout_id, why_not,
                extra={"event": "bulk_off", "mailout_id": str(self.claim.mailout_id)},
            )
        else:
            self.per_call = per_call

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    @property
    def stopping(self) -> Halt | None:
        return self.halting.halt

    def stop_run(self, halt: Halt) -> None:
        self.halting.stop(halt)

    # -- one batch ----------------------------------------------------------

    def send_batch(self, recipients: list[store.Recipient]) -> list[store.Outcome]:
        """Send each recipient's email, SEND_CONCURRENCY calls at a time (all
        paced by the one Pacer), one recipient per SendEmail or `per_call`
        per SendBulkEmail. Recipients not attempted go back in the queue."""
        self.handed, self.settled = set(), {}
        size = self.per_call
        chunks = [recipients[start : start + size] for start in range(0, len(recipients), size)]
        if self.executor is None:
            results = [self.send_chunk(chunk) for chunk in chunks]
        else:
            results = list(self.executor.map(self.send_chunk, chunks))
        return [outcome for outcomes in results for outcome in outcomes]

    def send_chunk(self, chunk: list[store.Recipient]) -> list[store.Outcome]:
        """One SES call's worth of recipients; every one comes back with an
        outcome, 'queued' when it was not sent."""
        try:
            if not self.stopping:
                self.check_before_sending()
            if not self.stopping:
                if self.bulk is not None:
                    self.send_bulk(chunk)
                else:
                    self.send_each(chunk)
        except Exception as exc:  # noqa: BLE001 - a bug or a lost database must not strand rows
            return self.after_unexpected(chunk, exc)
        with self.lock:
            return [self.settled.get(r.log_id) or store.Outcome(r.log_id, "queued") for r in chunk]

    def after_unexpected(self, chunk: list[store.Recipient], exc: Exception) -> list[store.Outcome]:
        """Our own code failed while sending `chunk`: stop the run, keep what
        is known, and leave no row 'sending' that no SES call carried."""
        if isinstance(exc, DatabaseUnavailable):
            self.stop_run(Halt("failed", f"database unreachable: {exc}", StopReason.DATABASE_UNAVAILABLE))
        else:
            log.exception("mailout %s: unexpected error while sending", self.claim.mailout_id)
            self.stop_run(Halt("failed", f"{type(exc).__name__}: {exc}", StopReason.INTERNAL_ERROR))
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

    def check_still_ours(self) -> None:
        """Stop the run if the mailout is no longer ours or a stop was asked
        for: before every SES call, retries included."""
        if not self.keep_heartbeat():
            # Another run owns the mailout and has marked this batch
            # 'unknown': record what left, attempt nothing more.
            self.stop_run(LOST)
        elif self.stop.is_set():
            self.stop_run(interrupted_by(self.stop))

    def check_before_sending(self) -> None:
        """check_still_ours, and stop the run if MAX_CONSECUTIVE_FAILURES
        sends failed in a row."""
        self.check_still_ours()
        if self.stopping:
            return
        with self.lock:
            tripped = self.breaker.tripped()
            unreached = tuple(self.breaker.streak) if self.breaker.unreached else ()
        if tripped and unreached:
            # SES itself is failing, not the mailout: pause, give the rows
            # back to the queue, and let the automatic resume try again later.
            self.stop_run(Halt("paused", f"SES unavailable: {tripped}", StopReason.SES_UNAVAILABLE, unreached))
        elif tripped:
            self.stop_run(Halt("failed", tripped, StopReason.CIRCUIT_BREAKER))

    def note_outcomes(self, outcomes) -> None:
        """Settle these recipients, and tell the circuit breaker."""
        with self.lock:
            for outcome in outcomes:
                self.settled[outcome.log_id] = outcome
                self.breaker.note(outcome, unreached=outcome.log_id in self.unreached)

    # -- SendEmail, one recipient a call --------------------------------------

    def send_each(self, recipients: list[store.Recipient]) -> None:
        for recipient in recipients:
            if self.stopping:
                return
            self.send_email(recipient)

    def send_email(self, recipient: store.Recipient) -> None:
        try:
            email = self.builder.build(
                to_email=recipient.email,
                to_name=recipient.name,
                unsubscribe_url=self.links.url(recipient.subscriber_id),
            )
        except Exception as exc:  # noqa: BLE001 - one recipient's data fails that recipient alone
            self.note_outcomes([store.Outcome(recipient.log_id, "failed", error=cannot_write(exc))])
            return
        outcomes: dict[UUID, store.Outcome] = {}
        self.attempt([recipient], functools.partial(self.call_send_email, email), outcomes)
        self.note_outcomes(outcomes.values())

    def call_send_email(self, email, pending: list[store.Recipient]) -> list[BulkResult]:
        try:
            return [BulkResult(message_id=self.call_ses([pending[0].log_id], self.transport.send, email))]
        except SendError as exc:
            return [BulkResult(error=exc)]

    # -- SendBulkEmail, several recipients a call -----------------------------

    def send_bulk(self, chunk: list[store.Recipient]) -> None:
        """One SendBulkEmail call for these recipients, with the retry policy
        of every send. A recipient whose entry cannot be written fails alone."""
        content = self.bulk  # another thread may turn bulk off meanwhile
        outcomes: dict[UUID, store.Outcome] = {}
        entries = {}
        for recipient in chunk:
            try:
                entries[recipient.log_id] = content.recipient(
                    to_email=recipient.email, to_name=recipient.name, token=self.links.token(recipient.subscriber_id)
                )
            except Exception as exc:  # noqa: BLE001 - one recipient's data fails that recipient alone
                outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "failed", error=cannot_write(exc))
        call = functools.partial(self.call_send_bulk, content, entries)
        detour, rest = self.attempt([r for r in chunk if r.log_id in entries], call, outcomes)
        if detour is Detour.SEND_EMAIL:
            self.send_each(rest)
        elif detour is Detour.APART:
            self.send_apart(rest, call)
        self.note_outcomes(outcomes.values())

    def send_apart(self, recipients: list[store.Recipient], call) -> None:
        """SES refused a SendBulkEmail call for something in it: one call per
        recipient finds out whose."""
        for recipient in recipients:
            # Refused for something every recipient shares after all? The
            # circuit breaker stops the split.
            if not self.stopping:
                self.check_before_sending()
            if self.stopping:
                return
            outcomes: dict[UUID, store.Outcome] = {}
            detour, rest = self.attempt([recipient], call, outcomes)
            if detour is Detour.SEND_EMAIL:
                self.send_each(rest)
            self.note_outcomes(outcomes.values())

    def call_send_bulk(self, content: BulkContent, entries: dict, pending: list[store.Recipient]):
        """The call's results, one per recipient, or the Detour its recipients take."""
        try:
            return self.call_ses(
                [r.log_id for r in pending], self.transport.send_bulk, content, [entries[r.log_id] for r in pending]
            )
        except SendError as exc:
            if exc.code in ACCESS_DENIED_CODES:
                # The IAM policy allows SendEmail only: go on with that.
                log.warning(
                    "SendBulkEmail is not allowed for these credentials (%s); mailout %s goes on with one"
                    " SendEmail per recipient (allow ses:SendBulkEmail, or set SES_BULK_SEND=off)",
                    exc,
                    self.claim.mailout_id,
                )
                self.bulk = None
                return Detour.SEND_EMAIL
            if exc.kind is ErrorKind.RECIPIENT and len(pending) > 1:
                return Detour.APART
            return [BulkResult(error=exc)] * len(pending)

    # -- one send, with its retries -----------------------------------------

    def call_ses(self, log_ids, call, *args):
        """Make one SES call carrying these rows, noting first that SES may
        have them: if anything but a SendError comes out of the call (a bug
        of ours, say), after_unexpected marks them 'unknown', never resent."""
        with self.lock:
            self.handed.update(log_ids)
        return call(*args)

    def attempt(self, pending: list[store.Recipient], call, outcomes: dict) -> tuple[Detour | None, list]:
        """Send `pending` by `call` until each has an outcome in `outcomes`,
        the retry policy gives up, or the run must stop (those recipients
        stay queued). A Detour comes back with the recipients it takes."""
        retries = Retries()
        while pending:
            self.pacer.wait(len(pending))
            self.check_still_ours()
            if self.stopping:
                # The run stops (a person's pause, a lost lease, a Halt from
                # another call): no more SES calls, these stay queued.
                break
            results = call(pending)
            if isinstance(results, Detour):
                return results, pending
            retry, last_error, halt = self.settle(pending, results, outcomes)
            if halt is not None:
                self.stop_run(halt)
                break
            if not retry:
                break
            step, number = retries.next_step({error.kind for _, error in retry})
            if step is Step.PAUSE:
                self.stop_run(Halt("paused", kept_throttling(last_error), StopReason.THROTTLED))
                break
            if step is Step.GIVE_UP:
                with self.lock:
                    self.unreached.update(recipient.log_id for recipient, _ in retry)
                for recipient, _ in retry:
                    outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "failed", error=str(last_error))
                break
            if step is Step.SLOW_DOWN:
                self.wait_after_throttling(number, last_error, len(retry))
            else:
                self.sleep(attempts.backoff_seconds(number))
            pending = [recipient for recipient, _ in retry]
        return None, []

    def settle(self, pending: list[store.Recipient], results: list[BulkResult], outcomes: dict):
        """Each recipient's answer by the table in attempts.py: its outcome
        into `outcomes`, or onto the retry list, or a Halt for the run."""
        retry: list[tuple[store.Recipient, SendError]] = []
        last_error = halt = None
        for recipient, result in zip(pending, results):
            error = result.error
            if error is None:
                outcomes[recipient.log_id] = store.Outcome(recipient.log_id, "sent", ses_message_id=result.message_id)
                continue
            fate = FATES[error.kind]
            if fate is Fate.RETRY:
                retry.append((recipient, error))
                last_error = error
            elif fate is Fate.HALT:
                # Not sent: back to the queue with the rest.
                halt = halt or Halt("failed", str(error), StopReason.ACCOUNT)
            else:
                outcomes[recipient.log_id] = store.Outcome(recipient.log_id, fate.value, error=str(error))
        return retry, last_error, halt

    def wait_after_throttling(self, number: int, error: SendError, emails: int) -> None:
        """SES throttled us: slow the pace for a while, and back off before
        sending the same emails again."""
        self.pacer.slow_down()
        if not self.keep_heartbeat():
            self.stop_run(LOST)
            return
        log.warning(
            "SES throttled us (%s); pace now %.2f/s, waiting before sending %s again",
            error,
            self.pacer.current_rate,
            "the same email" if emails == 1 else f"the same {emails}",
        )
        self.sleep(attempts.backoff_seconds(number))
