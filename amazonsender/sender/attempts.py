"""What a failed send leads to: the one error-kind-to-outcome table and the one retry policy, for SendEmail and SendBulkEmail alike.

A send is one SendEmail for one recipient, or one SendBulkEmail for several;
each recipient's answer is a message id or a SendError whose ErrorKind
(transport.py) decides its fate here. Throttled and transient answers are
sent again, all the recipients that got one together, under one `Retries`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from ..addresses import AddressError
from ..transport import ErrorKind, SendError

TRANSIENT_ATTEMPTS = 3
THROTTLE_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


class Fate(Enum):
    """What happens to a recipient whose send failed. FAILED and UNKNOWN are
    the ledger statuses it is recorded with."""

    FAILED = "failed"
    UNKNOWN = "unknown"
    # Sent again, if the retry policy allows.
    RETRY = "retry"
    # Every send would fail: the run stops, and the recipient goes back to
    # the queue with the rest.
    HALT = "halt"


FATES = {
    ErrorKind.RECIPIENT: Fate.FAILED,
    # SES may have the email: never sent again.
    ErrorKind.IN_DOUBT: Fate.UNKNOWN,
    ErrorKind.THROTTLED: Fate.RETRY,
    ErrorKind.TRANSIENT: Fate.RETRY,
    ErrorKind.ACCOUNT: Fate.HALT,
}


class Step(Enum):
    """What the retry policy says to do with the recipients to retry."""

    # Throttled: slow the pace, back off, and send them again.
    SLOW_DOWN = "slow down"
    # Transient only: back off and send them again.
    BACK_OFF = "back off"
    # Throttled THROTTLE_ATTEMPTS times: pause the run; they stay queued
    # (throttling is never a recipient's failure).
    PAUSE = "pause"
    # Transient TRANSIENT_ATTEMPTS times: they failed.
    GIVE_UP = "give up"


@dataclass
class Retries:
    """The retries of one send so far: throttled and transient are counted
    apart, and a throttled answer among the retried ones counts as throttled."""

    throttled: int = 0
    transient: int = 0

    def next_step(self, kinds: set[ErrorKind]) -> tuple[Step, int]:
        """The step after an attempt whose retryable answers had these
        kinds, and the number of the wait it is (for backoff_seconds)."""
        if ErrorKind.THROTTLED in kinds:
            if self.throttled >= THROTTLE_ATTEMPTS:
                return Step.PAUSE, self.throttled
            self.throttled += 1
            return Step.SLOW_DOWN, self.throttled
        if self.transient >= TRANSIENT_ATTEMPTS - 1:
            return Step.GIVE_UP, self.transient
        self.transient += 1
        return Step.BACK_OFF, self.transient


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of
    BACKOFF_BASE_SECONDS * 2^(attempt-1), capped at BACKOFF_MAX_SECONDS."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def kept_throttling(error: SendError) -> str:
    """Why a run paused after Step.PAUSE."""
    return f"SES kept throttling after {THROTTLE_ATTEMPTS} waits: {error}"


def cannot_write(exc: Exception) -> str:
    """The reason a recipient failed before any SES call: its address, name
    or link could not be written."""
    if isinstance(exc, AddressError):
        return f"SES cannot send to this address: {exc}"
    return f"this recipient's email could not be written: {type(exc).__name__}: {exc}"
