"""The guards that stop a run early: the reputation guard (bounces, complaints, against the emails sent so far) and the circuit breaker (failures in a row)."""

from __future__ import annotations

from .. import store


def reputation_problem(sent: int, reputation: dict, settings) -> str | None:
    """Why the mailout must pause, or None.

    SES puts an account under review at a 5% bounce or 0.1% complaint rate
    and may pause it at 10% / 0.5%; stopping one mailout early protects every
    later one. Below guard_min_sent the rates say too little to act on.
    """
    if sent < settings.guard_min_sent:
        return None
    bounce_rate = reputation["bounces"] / sent
    complaint_rate = reputation["complaints"] / sent
    if bounce_rate > settings.max_bounce_rate:
        return (
            f"bounce rate {bounce_rate:.2%} ({reputation['bounces']} of {sent} sent)"
            f" is above MAX_BOUNCE_RATE {settings.max_bounce_rate:.2%}"
        )
    if complaint_rate > settings.max_complaint_rate:
        return (
            f"complaint rate {complaint_rate:.2%} ({reputation['complaints']} of {sent} sent)"
            f" is above MAX_COMPLAINT_RATE {settings.max_complaint_rate:.2%}"
        )
    return None


class CircuitBreaker:
    """MAX_CONSECUTIVE_FAILURES failed recipients in a row stop the run: when
    every send fails, something they share is wrong (the content, the
    account, SES itself), not the recipients. A sent recipient starts the
    count again. The caller serialises access (the run's sending threads
    share one)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.last_error: str | None = None
        # The failures in a row (their ledger rows), and whether SES never
        # took any of them: every try met SES unavailable (a transient error:
        # a 5xx, a refused connection), which heals, unlike a bad mailout.
        self.streak: list = []
        self.unreached = True

    def note(self, outcome, *, unreached: bool = False) -> None:
        if outcome.status == "failed":
            self.last_error = outcome.error
            self.streak.append(outcome.log_id)
            self.unreached = self.unreached and unreached
        elif outcome.status == "sent":
            self.streak = []
            self.unreached = True

    def tripped(self) -> str | None:
        """Why the run must stop, or None."""
        failures = len(self.streak)
        if failures < self.limit:
            return None
        return f"{failures} failures in a row (MAX_CONSECUTIVE_FAILURES); last: {self.last_error or 'see send_logs'}"


class SentCount:
    """The emails sent so far, as the reputation guard counts them."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.since_base = 0
        self.new_outcomes = False
        self.unrendered_before = 0

    def recorded(self, outcomes: list[store.Outcome]) -> None:
        """(Under the run's lock.)"""
        self.since_base += sum(1 for o in outcomes if o.status == "sent")
        self.new_outcomes = self.new_outcomes or bool(outcomes)

    def due(self, run) -> bool:
        """Anything new to judge since the last look?"""
        with run.lock:
            due, self.new_outcomes = self.new_outcomes, False
        return due

    def sent(self, run, reputation: dict) -> int:
        if self.base is None:
            # Counted at the first look, not before the first call: on a long
            # list the count takes a while, which the first email need not
            # wait for. (A call recorded while it counts may be counted
            # twice: a few more sent only lowers the rates a little.)
            with run.lock:
                self.since_base = 0
            self.base = run.db(lambda conn: store.count_sent(conn, run.claim.mailout_id))
            # Rendering failures from here on take their emails out of the
            # sent count (SES never sent them).
            self.unrendered_before = reputation["rendering_failures"]
        with run.lock:
            sent = self.base + self.since_base
        return sent - (reputation["rendering_failures"] - self.unrendered_before)
