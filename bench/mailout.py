"""One mailout through the real service: POST /send-mailout, followed at the
stand-in until it is done or capped (send_mailout), and how it ended."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .context import Context
from .report import achieved_rate
from .service import SHARED_SECRET, Gunicorn, Monitor, StandIn



@dataclass
class SendRun:
    emails: int
    duplicates: int
    times: list[float]
    webhook_seconds: float
    first_email_seconds: float | None
    stopped: str
    usage: dict
    ledger: dict
    calls: dict
    # The 202's `recipients`, and the ledger rows committed just after it came.
    recipients_answered: int | None = None
    queued_at_answer: int | None = None

    @property
    def calls_note(self) -> str:
        """Which SES calls carried the emails, e.g. '100 SendBulkEmail calls (5.0 per call)'."""
        bulk, single = self.calls.get("SendBulkEmail", 0), self.calls.get("SendEmail", 0)
        parts = []
        if bulk:
            in_bulk = self.emails - single
            parts.append(f"{bulk:,} SendBulkEmail calls ({in_bulk / bulk:.1f} recipients per call)")
        if single:
            parts.append(f"{single:,} SendEmail calls")
        return ", ".join(parts)

    @property
    def rate(self) -> float | None:
        return achieved_rate(self.times) if self.times else None


def send_mailout(
    ctx: Context,
    server: Gunicorn,
    mailout_id,
    *,
    max_emails: int | None,
    max_seconds: float,
    want_times: bool = True,
    first_email_timeout: float = 120.0,
    on_first_email=None,
) -> SendRun:
    """POST /send-mailout and follow the send at the stand-in until it is
    done, `max_emails` have arrived or `max_seconds` have passed since the
    first email; then pause the mailout with SQL (the run stops at its next
    batch) and wait for the stand-in to go quiet."""
    standin, db = ctx.standin, ctx.db
    standin.reset()
    monitor = Monitor(server, standin.pid).start()
    try:
        started = time.monotonic()
        status, answer = server.post_json(
            "/send-mailout", {"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET}, timeout=900
        )
        answered = time.monotonic()
        if status != 202:
            raise RuntimeError(f"webhook answered {status}: {answer}\n{server.log_tail()}")
        queued_at_answer = db.ledger_rows(mailout_id)
        first = None
        stopped = "finished"
        next_status_check = 0.0
        while True:
            stats = standin.stats()
            now = time.monotonic()
            if first is None and stats["first"] is not None:
                first = stats["first"]
                if on_first_email:
                    on_first_email()
            if max_emails is not None and stats["emails"] >= max_emails:
                stopped = f"paused after {max_emails:,} emails"
                break
            if first is not None and now - first > max_seconds:
                stopped = f"paused at the {max_seconds:g} s cap"
                break
            if first is None and now - answered > first_email_timeout:
                stopped = f"no email within {first_email_timeout:g} s"
                break
            if now >= next_status_check:
                next_status_check = now + 0.5
                if db.mailout_status(mailout_id) != "sending":
                    break
            time.sleep(0.02)
        if stopped != "finished":
            db.pause(mailout_id)
            settle(standin)
        else:
            time.sleep(0.2)
    finally:
        usage = monitor.stop()
    stats = standin.stats(times=True)
    return SendRun(
        emails=stats["emails"],
        duplicates=stats["duplicates"],
        times=stats["times"] if want_times else [],
        webhook_seconds=answered - started,
        first_email_seconds=(stats["first"] - started) if stats["first"] is not None else None,
        stopped=stopped,
        usage=usage,
        ledger=db.ledger_counts(mailout_id),
        calls=stats.get("calls", {}),
        recipients_answered=answer.get("recipients") if isinstance(answer, dict) else None,
        queued_at_answer=queued_at_answer,
    )


def settle(standin: StandIn, quiet: float = 1.0, limit: float = 20.0) -> None:
    """Wait until no email has arrived for `quiet` seconds (bounded)."""
    deadline = time.monotonic() + limit
    last = standin.stats()["emails"]
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now_count = standin.stats()["emails"]
        if now_count != last:
            last, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return


def describe_stop(run: SendRun, expected: int | None = None) -> str:
    parts = [run.stopped]
    if run.duplicates:
        parts.append(f"{run.duplicates} DUPLICATE recipients at the stand-in")
    if expected is not None and run.stopped == "finished" and run.emails != expected:
        parts.append(f"{run.emails} of {expected} emails arrived")
    return "; ".join(parts)

