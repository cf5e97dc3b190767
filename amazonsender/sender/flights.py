"""The SES calls in flight: how many a run may have at once (SEND_CONCURRENCY, a number or auto), and waiting for a free one.

A run keeps enough calls in flight that the pace, not SES's answer time,
limits it: a call of n recipients takes a slot for its answer time, so
holding `calls_per_second` takes about calls_per_second x answer time
slots. With SEND_CONCURRENCY=auto the run measures the answer times (the
mark, the call and the recording of its outcome: everything but the wait
for the pacer) and keeps that many slots, with headroom, up to
SEND_CONCURRENCY_MAX. Too many slots cost only idle threads waiting on the
pacer, which still holds the pace; too few lose pace. So the estimate leans
high: it follows a slower answer at once (a call in flight longer than the
average counts as that slow), and a faster one gradually.

A number fixes the slots (SEND_CONCURRENCY=1: one call at a time).

Thread-safe, and clock-injectable for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

AUTO = 0
# Slots over the estimate: answer times vary call to call, and a slot also
# waits for the pacer, which releases calls evenly rather than as slots free.
HEADROOM = 1.25
EXTRA_SLOTS = 1
# Slots before the first answer: a cautious start that grows within the
# first answer time (see `limit`).
START_SLOTS = 2
# How much one answer moves the average answer time towards itself.
SMOOTHING = 0.2
# How often a wait for a slot looks at the run's stop.
POLL_SECONDS = 0.05


class Flights:
    """Slots for SES calls: `acquire` before a call (waits while all are
    taken), `release` after it with how long it took."""

    def __init__(
        self,
        setting: int,
        ceiling: int,
        calls_per_second: Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.fixed = setting if setting != AUTO else None
        self.ceiling = setting if self.fixed else ceiling
        self.calls_per_second = calls_per_second
        self.clock = clock
        self.answer_seconds: float | None = None
        self.started: dict[int, float] = {}
        # Taken and not yet let go by the pacer (see `restart`).
        self.pacing: set[int] = set()
        self.next_ticket = 0
        self.cond = threading.Condition()
        self.highest = 0  # the most slots ever in use at once

    @property
    def in_flight(self) -> int:
        return len(self.started)

    def limit(self) -> int:
        """The slots the run may use now."""
        if self.fixed:
            return self.fixed
        with self.cond:
            return self._limit()

    def _limit(self) -> int:
        seconds = self.answer_seconds
        under_way = [began for ticket, began in self.started.items() if ticket not in self.pacing]
        if under_way:
            # The oldest call in flight has taken at least this long: a
            # slower SES shows here before any answer does. (A wait for the
            # pacer is not counted: slots beyond the need wait there, and
            # would ask for more.)
            seconds = max(seconds or 0.0, self.clock() - min(under_way))
        if seconds is None:
            return min(START_SLOTS, self.ceiling)
        wanted = math.ceil(self.calls_per_second() * seconds * HEADROOM) + EXTRA_SLOTS
        return max(1, min(self.ceiling, wanted))

    def acquire(self, give_up: Callable[[], bool]) -> int | None:
        """Wait for a free slot and take it: its ticket, or None once
        `give_up()` is true (the run stops)."""
        with self.cond:
            while True:
                if give_up():
                    return None
                limit = self.fixed or self._limit()
                if len(self.started) < limit:
                    ticket = self.next_ticket
                    self.next_ticket += 1
                    self.started[ticket] = self.clock()
                    self.pacing.add(ticket)
                    self.highest = max(self.highest, len(self.started))
                    return ticket
                self.cond.wait(POLL_SECONDS)

    def restart(self, ticket: int) -> None:
        """The call starts now (after its wait for the pacer, which is not
        SES's answer time)."""
        with self.cond:
            if ticket in self.started:
                self.started[ticket] = self.clock()
                self.pacing.discard(ticket)

    def release(self, ticket: int, *, answered: bool = True) -> None:
        """The call is done; `answered` False when it made no SES call (the
        run stopped first), which says nothing of SES's answer time."""
        with self.cond:
            began = self.started.pop(ticket, None)
            self.pacing.discard(ticket)
            if answered and began is not None:
                seconds = self.clock() - began
                if self.answer_seconds is None or seconds > self.answer_seconds:
                    # Slower: follow at once, so the pace is not lost meanwhile.
                    self.answer_seconds = seconds
                else:
                    self.answer_seconds += SMOOTHING * (seconds - self.answer_seconds)
            self.cond.notify_all()

    def wait_idle(self) -> None:
        """Wait until no call is in flight."""
        with self.cond:
            while self.started:
                self.cond.wait(POLL_SECONDS)
