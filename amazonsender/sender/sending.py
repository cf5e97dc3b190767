"""Sending one SES call's recipients: mark their rows 'sending', make the call (SendEmail, or SendBulkEmail for several) with its retries, record the outcomes.

A row is marked right before the call that carries it and its outcome is
recorded right after, each in a transaction of its own, so a run that dies
leaves in doubt only the rows of its calls in flight. Every call goes
through `attempt`, which applies the retry policy and the outcome table of
attempts.py. A marked recipient not attempted (the run must stop) goes back
to the queue. The run's Halting (stop.py) is looked at before every call,
and given the reason when the run must stop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
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
from .call import Call, Written
from .claim import Claim
from .errors import DatabaseUnavailable
from .guard import CircuitBreaker
from .pacer import Pacer, recipients_per_call
from .stop import LOST, Halt, Halting, StopReason, StopSignal, interrupted_by, unreachable_database

log = logging.getLogger(__name__)

# A mark slower than usual by more than this (a wait for a pool connection,
# a database retry) sends its call back to the pacer before SES: within the
# pace's margin, so a late call cannot crowd SES's second. "Usual" is the
# marks' running average, so a far database (a steady round trip) costs no
# second wait.
REPACE_SLOWER_BY_SECONDS = 0.02
MARK_SMOOTHING = 0.1


class Detour(Enum):
    """A SendBulkEmail call refused as a whole, its recipients sent another way."""

    # The credentials may not call SendBulkEmail: one SendEmail each.
    SEND_EMAIL = "send email"
    # Refused for something in it: each recipient alone finds out whose.
    APART = "apart"


class CallSender:
    """A run's sending half: its message builder and links, SendEmail or
    SendBulkEmail, and the circuit breaker; `send_call` runs in the run's
    sending threads, so what they share is behind a lock."""

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
        db: Callable,
        recorded: Callable[[list[store.Outcome]], None],
        marked: Callable[[list[store.Recipient]], None],
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
        # The run's patient database access (Run.db), and whom to tell of
        # the outcomes once they are recorded.
        self.db = db
        self.recorded = recorded
        # Told of a call's rows once the mark is done (the run reads no more
        # around them).
        self.marked = marked
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
        # The usual time of a mark (mark_was_slow).
        self.mark_seconds: float | None = None
        # Rows failed after every try met a transient error: SES never took them.
        self.unreached: set = set()

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

    def bulk_off(self) -> None:
        """From now on one SendEmail per recipient (the run's next calls carry one)."""
        self.bulk = None
        self.per_call = 1

    @property
    def stopping(self) -> Halt | None:
        return self.halting.halt

    def stop_run(self, halt: Halt) -> None:
        self.halting.stop(halt)

    # -- one call -------------------------------------------------------------

    def send_call(self, chunk: list[store.Recipient], started: Callable[[], None] = lambda: None) -> bool:
        """Wait for the pace, mark the rows, send, record: one SES call's
        worth of recipients (one for SendEmail, `per_call` for SendBulkEmail).
        `started()` once the pace lets the call go. True if SES was asked."""
        call = Call()
        try:
            if not self.stopping:
                # Written before the pace lets the call go, so that little
                # but the mark stands between that moment and SES's.
                written = self.write(chunk)
                call.released = self.pacer.wait(len(chunk))
                started()
                self.check_before_sending()
            if not self.stopping and self.mark(call, chunk) and not self.stopping:
                if written.content is not None:
                    self.send_bulk(call, call.marked, written)
                else:
                    self.send_each(call, call.marked, paced=True, written=written)
            outcomes = call.outcomes()
        except Exception as exc:  # noqa: BLE001 - a bug or a lost database must not strand rows
            outcomes = self.after_unexpected(call, exc)
        self.record(outcomes)
        return bool(call.handed)

    def write(self, chunk: list[store.Recipient], *, bulk: bool = True) -> Written:
        """Each recipient's email (SendEmail) or entry (SendBulkEmail, while
        `bulk` and it is on); a recipient whose data cannot be written fails
        alone."""
        written = Written(self.bulk if bulk else None)
        for recipient in chunk:
            try:
                if written.content is None:
                    message = self.builder.build(
                        to_email=recipient.email,
                        to_name=recipient.name,
                        unsubscribe_url=self.links.url(recipient.subscriber_id),
                    )
                else:
                    message = written.content.recipient(
                        to_email=recipient.email, to_name=recipient.name, token=self.links.token(recipient.subscriber_id)
                    )
                written.messages[recipient.log_id] = message
            except Exception as exc:  # noqa: BLE001 - one recipient's data fails that recipient alone
                written.problems[recipient.log_id] = cannot_write(exc)
        return written

    def mark(self, call: Call, chunk: list[store.Recipient]) -> bool:
        """Mark the chunk's rows 'sending' for this call (committed before
        the call); False when none may go (the mailout is no longer ours, or
        another run took the rows)."""
        ids = [r.log_id for r in chunk]
        began = time.monotonic()
        marked = self.db(
            lambda conn: store.mark_sending(conn, self.claim.mailout_id, self.claim.runner_id, call.id, ids)
        )
        self.marked(chunk)
        if marked is None:
            self.stop_run(LOST)
            return False
        taken = set(marked)
        call.marked = [r for r in chunk if r.log_id in taken]
        if call.marked and self.mark_was_slow(time.monotonic() - began):
            # The mark waited (a pool connection, a database retry): calls the
            # pacer let go meanwhile would reach SES together. Take a slot
            # again, so they go out at the pace; a stop meanwhile gives the
            # rows back to the queue.
            call.released = self.pacer.wait(len(call.marked))
            self.check_still_ours()
        return bool(call.marked)

    def mark_was_slow(self, seconds: float) -> bool:
        """Was this mark slower than usual by more than REPACE_SLOWER_BY_SECONDS?"""
        with self.lock:
            usual = self.mark_seconds
            if usual is None:
                self.mark_seconds = seconds
                return False
            self.mark_seconds = usual + MARK_SMOOTHING * (seconds - usual)
        return seconds > usual + REPACE_SLOWER_BY_SECONDS

    def record(self, outcomes: list[store.Outcome]) -> None:
        """Record the call's outcomes, then tell the run. A database gone for
        good leaves the rows 'sending' (in doubt, never sent again); the log
        keeps the SES ids of the emails that left."""
        if not outcomes:
            return
        try:
            self.db(lambda conn: store.record_outcomes(conn, self.claim.mailout_id, outcomes))
        except DatabaseUnavailable as exc:
            self.stop_run(unreachable_database(exc))
            for outcome in outcomes:
                if outcome.status == "sent":
                    log.error(
                        "mailout %s: send_logs row %s was sent (SES id %s) but not recorded",
                        self.claim.mailout_id,
                        outcome.log_id,
                        outcome.ses_message_id,
                        extra={"event": "unrecorded", "mailout_id": str(self.claim.mailout_id)},
                    )
            return
        except Exception:  # noqa: BLE001 - the rows stay 'sending': in doubt, never sent twice
            log.exception("mailout %s: a call's outcomes could not be recorded", self.claim.mailout_id)
            self.stop_run(Halt("failed", "a call's outcomes could not be recorded", StopReason.INTERNAL_ERROR))
            return
        self.recorded(outcomes)

    def after_unexpected(self, call: Call, exc: Exception) -> list[store.Outcome]:
        """Our own code failed during the call: stop the run, keep what is
        known, and leave no row 'sending' that no SES request carried."""
        if isinstance(exc, DatabaseUnavailable):
            self.stop_run(unreachable_database(exc))
        else:
            log.exception("mailout %s: unexpected error while sending", self.claim.mailout_id)
            self.stop_run(Halt("failed", f"{type(exc).__name__}: {exc}", StopReason.INTERNAL_ERROR))
        with self.lock:
            return [
                call.settled.get(r.log_id)
                or (
                    store.Outcome(r.log_id, "unknown", error=f"in doubt after an unexpected error: {exc}"[:500])
                    if r.log_id in call.handed
                    else store.Outcome(r.log_id, "queued")
                )
                for r in call.marked
            ]

    def check_still_ours(self) -> None:
        """Stop the run if the mailout is no longer ours or a stop was asked
        for: before every SES call, retries included."""
        if not self.keep_heartbeat():
            # Another run owns the mailout and has marked our calls in
            # flight 'unknown': record what left, attempt nothing more.
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

    def note_outcomes(self, call: Call, outcomes) -> None:
        """Settle these recipients, and tell the circuit breaker."""
        with self.lock:
            for outcome in outcomes:
                call.settled[outcome.log_id] = outcome
                self.breaker.note(outcome, unreached=outcome.log_id in self.unreached)

    # -- SendEmail, one recipient a call --------------------------------------

    def send_each(
        self, call: Call, recipients: list[store.Recipient], *, paced: bool = False, written: Written | None = None
    ) -> None:
        """One SendEmail per recipient; `paced` when the pacer already let
        the first one through; `written`: their emails, written already."""
        if written is None or written.content is not None:
            # A bulk call's detour: their emails, not their entries.
            written = self.write(recipients, bulk=False)
        for recipient in recipients:
            if self.stopping:
                return
            self.send_email(call, recipient, written, paced=paced)
            paced = False

    def send_email(self, call: Call, recipient: store.Recipient, written: Written, *, paced: bool) -> None:
        problem = written.problems.get(recipient.log_id)
        if problem is not None:
            self.note_outcomes(call, [store.Outcome(recipient.log_id, "failed", error=problem)])
            return
        email = written.messages[recipient.log_id]
        outcomes: dict[UUID, store.Outcome] = {}
        self.attempt([recipient], functools.partial(self.call_send_email, call, email), outcomes, paced=paced)
        self.note_outcomes(call, outcomes.values())

    def call_send_email(self, call: Call, email, pending: list[store.Recipient]) -> list[BulkResult]:
        try:
            return [BulkResult(message_id=self.call_ses(call, [pending[0].log_id], self.transport.send, email))]
        except SendError as exc:
            return [BulkResult(error=exc)]

    # -- SendBulkEmail, several recipients a call -----------------------------

    def send_bulk(self, call: Call, chunk: list[store.Recipient], written: Written) -> None:
        """One SendBulkEmail call for these recipients, with the retry policy
        of every send. A recipient whose entry cannot be written fails alone."""
        content = written.content
        outcomes: dict[UUID, store.Outcome] = {
            r.log_id: store.Outcome(r.log_id, "failed", error=written.problems[r.log_id])
            for r in chunk
            if r.log_id in written.problems
        }
        entries = {r.log_id: written.messages[r.log_id] for r in chunk if r.log_id in written.messages}
        send = functools.partial(self.call_send_bulk, call, content, entries)
        detour, rest = self.attempt([r for r in chunk if r.log_id in entries], send, outcomes, paced=True)
        if detour is Detour.SEND_EMAIL:
            self.send_each(call, rest)
        elif detour is Detour.APART:
            self.send_apart(call, rest, send)
        self.note_outcomes(call, outcomes.values())

    def send_apart(self, call: Call, recipients: list[store.Recipient], send) -> None:
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
            detour, rest = self.attempt([recipient], send, outcomes)
            if detour is Detour.SEND_EMAIL:
                self.send_each(call, rest)
            self.note_outcomes(call, outcomes.values())

    def call_send_bulk(self, call: Call, content: BulkContent, entries: dict, pending: list[store.Recipient]):
        """The call's results, one per recipient, or the Detour its recipients take."""
        try:
            return self.call_ses(
                call, [r.log_id for r in pending], self.transport.send_bulk, content,
                [entries[r.log_id] for r in pending],
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
                self.bulk_off()
                return Detour.SEND_EMAIL
            if exc.kind is ErrorKind.RECIPIENT and len(pending) > 1:
                return Detour.APART
            return [BulkResult(error=exc)] * len(pending)

    # -- one send, with its retries -----------------------------------------

    def call_ses(self, call: Call, log_ids, send, *args):
        """Make one SES request carrying these rows, noting first that SES may
        have them: if anything but a SendError comes out of it (a bug of
        ours, say), after_unexpected marks them 'unknown', never resent."""
        with self.lock:
            call.handed.update(log_ids)
        if call.released is not None:
            self.pacer.made(call.released)
            call.released = None
        return send(*args)

    def attempt(
        self, pending: list[store.Recipient], send, outcomes: dict, *, paced: bool = False
    ) -> tuple[Detour | None, list]:
        """Send `pending` by `send` until each has an outcome in `outcomes`,
        the retry policy gives up, or the run must stop (those recipients
        stay queued). A Detour comes back with the recipients it takes.
        `paced`: the pacer let the first request through already."""
        retries = Retries()
        while pending:
            if not paced:
                self.pacer.wait(len(pending))
                self.check_still_ours()
            paced = False
            if self.stopping:
                # The run stops (a person's pause, a lost lease, a Halt from
                # another call): no more SES calls, these stay queued.
                break
            results = send(pending)
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
