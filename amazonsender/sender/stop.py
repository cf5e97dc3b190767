"""Why runs stop: the StopSignal that asks running mailouts to pause after the email in flight, and the Halt a run stops on.

SIGTERM (gunicorn's worker hook, the command line) calls `request_stop`, which
sets the process's signal; every run given a signal (by default the
process's) finishes the email in flight, records its batch, puts the rest
back in the queue and ends the mailout 'paused', ready to resume. Every wait
of a run (pace, backoff, database retry) is a wait on the signal, so a stop
cuts it short instead of outliving the shutdown grace period.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

UNNAMED_REASON = "the process was asked to stop"


class StopSignal:
    """Set once, read by every run it was given to; `reason` says why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = UNNAMED_REASON

    def request(self, reason: str) -> None:
        """Ask for a stop, naming its cause (a signal's name, say)."""
        if not self._event.is_set():
            self.reason = f"the process was asked to stop ({reason})"
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


# The process's own signal: what the SIGTERM handlers set, and what a run
# listens to unless it is given another.
process_stop = StopSignal()


def request_stop(reason: str) -> None:
    """Ask every run of this process that listens to `process_stop` to pause."""
    process_stop.request(reason)


@dataclass(frozen=True)
class Halt:
    """Why a run stops before the list is done, and the state it leaves."""

    status: str
    reason: str


# The mailout is no longer this run's: the run ends without writing it.
LOST = Halt("lost", "another run took the mailout over, or its status was changed by hand; this run stopped")


def interrupted_by(stop: StopSignal) -> Halt:
    """The Halt of a run that saw `stop` set: paused, to resume."""
    return Halt("paused", f"interrupted: {stop.reason}")


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
