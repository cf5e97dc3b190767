"""The pace of a run: how fast emails may go to SES, and how many recipients one SES call carries.

Thread-safe and clock-injectable, with no database and no SES in it, so that
tests drive it with a fake clock.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

# Sends are spaced 1% wider than 1/rate: the time from the moment a call is
# made to SES's receipt varies by a few milliseconds, which otherwise let
# rate + 1 emails arrive within one second. The pace stays within 1% of
# RATE_LIMIT_PER_SEC.
PACE_MARGIN = 1.01
# The window also widens by how much the time from a release to its call
# varied lately (the call's mark commits in between, and a sending thread
# may wait for the interpreter): one SendBulkEmail call can carry a tenth of
# a second's allowance, so a call made late after an early one would let
# SES count a call more in some second. "Lately": the calls made in the
# last SPREAD_SECONDS.
SPREAD_SECONDS = 2.0
# After SES throttles us, send at a fraction of the pace for a while.
THROTTLE_SLOWDOWN_SECONDS = 60.0
THROTTLE_MAX_SLOWDOWN = 8
# After a short stall the pace may run this many times faster until it is back
# on schedule; a stall longer than CATCH_UP_SECONDS is not made up.
CATCH_UP = 1.25
CATCH_UP_SECONDS = 0.5


class Pacer:
    """Lets emails through at `rate` per second, evenly spaced, and never more
    than `rate` within any one second.

    Two rules, both measured from the moments emails were actually let
    through:

    - A window: the emails let through within the last PACE_MARGIN seconds
      (1% more than one second, widened by the spread below) may not
      exceed the rate. This is the hard
      guarantee SES needs: no one-second window ever carries more than the
      rate, whatever the threads, stalls or oversleeps before it. (An ideal
      schedule alone would let a late send catch up early and squeeze rate
      + 1 sends into a second; "a batch of 50, then sleep" would put 50
      emails into a fraction of a second and get throttled.)
    - A schedule: emails are due 1/rate apart (times PACE_MARGIN). After a
      short stall (a slow read or mark, a thread that came late), the
      following emails go up to CATCH_UP times faster until they are back on
      schedule, still within the window. A stall longer than
      CATCH_UP_SECONDS (idle time, a backoff) is forgiven, not made up.

    `wait(n)` lets n emails through at once (one SendBulkEmail call carries
    n recipients and SES counts each of them).

    After `slow_down()` (SES throttled us) the rate is halved, down to
    1/THROTTLE_MAX_SLOWDOWN of it, for THROTTLE_SLOWDOWN_SECONDS, and no
    earlier stall is made up.

    Thread-safe: concurrent senders queue on the lock, which is held while
    sleeping because every waiter would have to wait for its slot anyway.
    """

    def __init__(self, rate_per_sec: float, *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.rate = rate_per_sec
        self.clock = clock
        self.sleep = sleep
        self._due = None  # when the next email is due on the schedule
        self._earliest = float("-inf")  # the catch-up limit on the next release
        self._last_slot_ends = float("-inf")  # the last release + its full interval
        # The release time of each of the last `capacity` emails.
        self._released: collections.deque[float] = collections.deque(maxlen=_capacity(rate_per_sec))
        self._slowdown = 1
        self._slow_until = float("-inf")
        # (when a call was made, how long after its release), for _spread():
        # the calls that may still be the longest and the shortest delay of
        # the last SPREAD_SECONDS, oldest first, so that each answer is the
        # front of its deque and a made call costs O(1) on average.
        self._longest: collections.deque[tuple[float, float]] = collections.deque()
        self._shortest: collections.deque[tuple[float, float]] = collections.deque()
        self._delays_lock = threading.Lock()
        self._lock = threading.Lock()

    def wait(self, emails: int = 1) -> float:
        """Let `emails` through, waiting as long as the rules say; the
        moment they were let through, for `made`."""
        with self._lock:
            now = self.clock()
            if now >= self._slow_until:
                self._slowdown = 1
            rate = self.current_rate
            interval = PACE_MARGIN / rate
            window_opens = self._window_opens(emails, rate)
            if self._due is None or now - self._due > CATCH_UP_SECONDS:
                # The first email, or after a long stall: a new schedule, no debt.
                self._due = now
            if now <= self._due < window_opens:
                # On schedule but held back by the window (after a slow-down,
                # say): the schedule moves with it, so that the next emails
                # do not bunch up against the window to make up the time.
                self._due = window_opens
            release_at = max(self._due, self._earliest, window_opens)
            delay = release_at - now
            if delay > 0:
                self.sleep(delay)
                now = self.clock()
            self._released.extend([now] * min(emails, self._released.maxlen))
            self._due += emails * interval
            self._earliest = now + emails * interval / CATCH_UP
            self._last_slot_ends = now + emails * interval
            return now

    def made(self, released: float) -> None:
        """The call let through at `released` is being made now. (Its own
        lock: the pacer's is held by whoever sleeps until their slot, and
        the call must not wait for that.)"""
        with self._delays_lock:
            now = self.clock()
            delay = now - released
            while self._longest and self._longest[-1][1] <= delay:
                self._longest.pop()
            self._longest.append((now, delay))
            while self._shortest and self._shortest[-1][1] >= delay:
                self._shortest.pop()
            self._shortest.append((now, delay))
            for kept in (self._longest, self._shortest):
                while kept[0][0] < now - SPREAD_SECONDS:
                    kept.popleft()

    def _spread(self) -> float:
        """How much the delay from release to call varied lately."""
        with self._delays_lock:
            if not self._longest:
                return 0.0
            return self._longest[0][1] - self._shortest[0][1]

    def _window_opens(self, emails: int, rate: float) -> float:
        """The earliest moment `emails` more keep every window within the rate."""
        if not self._released:
            return float("-inf")
        capacity = _capacity(rate)
        # Below one per second, one email per 1/rate seconds. (A rate that is
        # not whole, 14.5/s say, allows 14 in any second.)
        window = PACE_MARGIN * max(1.0, 1 / rate) + self._spread()
        if emails > capacity:
            # More than a window holds (a slowed-down pace): spread them.
            return self._released[-1] + window * emails / capacity
        back = capacity - emails + 1
        if len(self._released) < back:
            return float("-inf")
        return self._released[-back] + window

    def slow_down(self) -> None:
        with self._lock:
            self._slowdown = min(THROTTLE_MAX_SLOWDOWN, self._slowdown * 2)
            self._slow_until = self.clock() + THROTTLE_SLOWDOWN_SECONDS
            # No catching up now: the next email waits at least its full slot.
            self._due = None
            self._earliest = max(self._earliest, self._last_slot_ends)

    @property
    def current_rate(self) -> float:
        return self.rate / self._slowdown


def _capacity(rate: float) -> int:
    """Emails one window may hold: the rate, rounded down, at least one."""
    return max(1, math.floor(rate))


# SES takes at most 50 destinations per SendBulkEmail call.
SES_BULK_MAX_RECIPIENTS = 50
# Bulk calls are made at least this many times a second, so that the pace stays
# even (one call's recipients reach SES at the same moment).
BULK_CALLS_PER_SECOND = 10


def recipients_per_call(rate: float, batch_size: int) -> int:
    """How many recipients one SES call carries at this pace: 1 (a SendEmail
    each) below 20/s; above, the largest divisor of the rate that keeps ten
    calls a second, at most 50 and at most a batch. A divisor, so that whole
    calls fill each second's allowance: at 50/s, 5 per call."""
    whole = math.floor(rate)
    for size in range(min(SES_BULK_MAX_RECIPIENTS, batch_size, whole // BULK_CALLS_PER_SECOND), 1, -1):
        if whole % size == 0:
            return size
    return 1
