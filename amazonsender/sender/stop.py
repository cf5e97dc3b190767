"""Why runs stop: the StopSignal that asks running mailouts to pause after the calls in flight, the Halt a run stops on, and the StopReason it records.

SIGTERM (gunicorn's worker hook, the command line) calls `request_stop`, which
sets the process's signal; every run given a signal (by default the
process's) makes no new SES call, lets the calls in flight finish and
records their outcomes, leaves the rest in the queue and ends the mailout 'paused', ready to resume. Every wait
of a run (pace, backoff, database retry) is a wait on the signal, so a stop
cuts it short instead of outliving the shutdown grace period.

Every Halt carries a StopReason, written on the mailout row as `stop_reason`
(a CHECK constraint in sql/010_stop_reasons.sql keeps to the same words);
the watcher (watch.py) reads it to decide whether the mailout resumes by
itself, and when.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

UNNAMED_REASON = "the process was asked to stop"


class StopReason(str, Enum):
    """Why a run stopped, as the mailout row records it."""

    # The process was asked to stop (SIGTERM: a deploy, `docker stop`).
    SHUTDOWN = "shutdown"
    # These heal by themselves: SES kept throttling, SES or the database
    # could not be reached.
    THROTTLED = "throttled"
    SES_UNAVAILABLE = "ses_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    # A person must look first.
    GUARD = "guard"  # the reputation guard (bounces, complaints)
    OPERATOR = "operator"  # `mailout pause`, POST /mailouts/<id>/pause, Ctrl-C
    ACCOUNT = "account"  # SES refuses the account (paused, disabled, unverified, credentials, quota)
    CIRCUIT_BREAKER = "circuit_breaker"  # MAX_CONSECUTIVE_FAILURES sends failed in a row
    UNWRITABLE = "unwritable"  # the mailout cannot be written as an email
    INTERNAL_ERROR = "internal_error"  # a bug of ours
    # Never written: the run lost the mailout to another run or to a person.
    LOST = "lost"


# Resumed by the watcher as soon as it sees them.
RESUME_AT_ONCE = frozenset({StopReason.SHUTDOWN})
# Resumed by the watcher after a backoff (retry_delay).
RESUME_AFTER_BACKOFF = frozenset({StopReason.THROTTLED, StopReason.SES_UNAVAILABLE, StopReason.DATABASE_UNAVAILABLE})
RESUMES_BY_ITSELF = RESUME_AT_ONCE | RESUME_AFTER_BACKOFF

RETRY_FIRST_SECONDS = 60
RETRY_MAX_SECONDS = 3600


def next_resume_in(code: StopReason, attempts: int) -> int | None:
    """Seconds from the stop to the next automatic resume, when the stop
    heals with a backoff; None otherwise (at once, or never)."""
    return retry_delay(attempts) if code in RESUME_AFTER_BACKOFF else None


def retry_delay(attempts: int) -> int:
    """Seconds before the next automatic resume of a mailout stopped for
    something that heals, after `attempts` automatic resumes already: one
    minute, doubling, at most an hour."""
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(attempts, 12))


class StopSignal:
    """Set once, read by every run it was given to; `reason` says why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = UNNAMED_REASON
        self.code = StopReason.SHUTDOWN

    def request(self, reason: str, code: StopReason = StopReason.SHUTDOWN) -> None:
        """Ask for a stop, naming its cause (a signal's name, say): SHUTDOWN
        (resumed by the next live process) or OPERATOR (Ctrl-C: a person's)."""
        if not self._event.is_set():
            self.reason = f"the process was asked to stop ({reason})"
            self.code = code
            log.warning("stop requested (%s): running mailouts will pause after the email in flight", reason)
        self._event.set()

    def set(self) -> None:
        """Ask for a stop without naming a cause."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to `timeout` seconds, or less if a stop comes; True if it did."""
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()
        self.reason = UNNAMED_REASON
        self.code = StopReason.SHUTDOWN


# The process's own signal: what the SIGTERM handlers set, and what a run
# listens to unless it is given another.
process_stop = StopSignal()


def request_stop(reason: str, code: StopReason = StopReason.SHUTDOWN) -> None:
    """Ask every run of this process that listens to `process_stop` to pause."""
    process_stop.request(reason, code)


@dataclass(frozen=True)
class Halt:
    """Why a run stops before the list is done, and the state it leaves."""

    status: str
    reason: str
    code: StopReason
    # Ledger rows recorded 'failed' that SES never took (every try of theirs
    # met SES unavailable): they go back to the queue as the run ends.
    requeue: tuple = ()


# The mailout is no longer this run's: the run ends without writing it.
LOST = Halt(
    "lost",
    "another run took the mailout over, a person paused it, or its status was changed by hand; this run stopped",
    StopReason.LOST,
)


def interrupted_by(stop: StopSignal) -> Halt:
    """The Halt of a run that saw `stop` set: paused, to resume."""
    return Halt("paused", f"interrupted: {stop.reason}", stop.code)


def unreachable_database(exc: Exception) -> Halt:
    """The Halt of a run whose database stayed unreachable: failed, and
    nothing more can be recorded."""
    return Halt("failed", f"database unreachable: {exc}", StopReason.DATABASE_UNAVAILABLE)


class Halting:
    """A run's one way to stop: the first Halt given stands, except that
    losing the mailout outranks any. Every sending step looks here before an
    SES call, and the run loop ends the run on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.halt: Halt | None = None

    def stop(self, halt: Halt) -> None:
        with self._lock:
            if self.halt is None or halt is LOST:
                self.halt = halt
