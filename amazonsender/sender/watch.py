"""Automatic resume: which interrupted mailouts resume by themselves and when, and the watcher thread every service process runs to resume them.

With AUTO_RESUME on (the default), gunicorn.conf.py starts one Watcher per
worker. It looks on start, then every quarter of HEARTBEAT_STALE_SECONDS:

- a mailout paused by a shutdown (SIGTERM, a deploy) resumes at once;
- a 'sending' one whose heartbeat is older than HEARTBEAT_STALE_SECONDS
  (kill -9, OOM, a lost machine) resumes, its in-flight rows marked 'unknown'
  as `mailout resume` does;
- one stopped for something that heals (SES kept throttling, SES or the
  database unreachable) resumes after a backoff: one minute, doubling, at
  most an hour (stop.retry_delay), each attempt counted on the row.

Anything else (the reputation guard, a person's pause, SES refusing the
account, the circuit breaker, a mailout that cannot be written, a bug)
waits for a person. Every resume goes through the conditional resume claim
(claim.resume_mailout), so with several processes watching exactly one wins;
the claim re-checks the stop reason and the backoff, so a person's pause made
meanwhile stands. The resumed run is paced by SES's account as `mailout
resume` is (preflight.pace_resumed): an account SES refuses ends 'paused'
with the reason `account`, and is not tried again.

Whoever starts the watcher may hand it RunHooks, told as each resumed run
starts and ends (the web layer writes a Notion page's status with them:
notion/runs.py), so that this package never imports who listens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import store
from ..transport import Transport
from .claim import resume_mailout
from .errors import AccountCannotSend, MailoutInvalid, MailoutNotFound, MailoutNotResumable, RunnerAlive, SesUnavailable
from .preflight import pace_resumed
from .run import Summary, send_in_thread
from .stop import RESUME_AFTER_BACKOFF, RESUMES_BY_ITSELF, StopReason, StopSignal, process_stop

log = logging.getLogger(__name__)

REASONS = tuple(sorted(reason.value for reason in RESUMES_BY_ITSELF))
COUNTED = tuple(sorted(reason.value for reason in RESUME_AFTER_BACKOFF))

WHY_NOT = {
    StopReason.GUARD: "the reputation guard paused it: look at its bounces and complaints, then resume by hand",
    StopReason.OPERATOR: "a person paused it: it waits for `mailout resume`",
    StopReason.ACCOUNT: "SES refuses the account: fix the account, then resume by hand",
    StopReason.CIRCUIT_BREAKER: "every send failed in a row (circuit breaker): fix the cause, then resume by hand",
    StopReason.UNWRITABLE: "the mailout cannot be written as an email: fix it, then resume by hand",
    StopReason.INTERNAL_ERROR: "an unexpected error stopped it, which a resume could repeat: resume by hand",
}


class RunHooks(Protocol):
    """Told about the watcher's runs; a hook's failure never stops one."""

    def started(self, mailout_id: UUID) -> None: ...

    def ended(self, mailout_id: UUID, summary: Summary | None) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """Whether an interrupted mailout resumes by itself, when, and why (not)."""

    automatic: bool
    at: datetime | None
    why: str

    def due(self, now: datetime) -> bool:
        return self.automatic and self.at is not None and self.at <= now

    def to_dict(self) -> dict:
        return {"automatic": self.automatic, "at": self.at.isoformat() if self.at else None, "why": self.why}


def verdict(mailout: dict, settings, now: datetime) -> Verdict | None:
    """The verdict on a mailout row (as store.get_mailout or
    store.interrupted_mailouts give it) at `now`; None when it is not
    interrupted (not started, finished, or a run is sending it)."""
    status = mailout["status"]
    if status == "sending":
        age = mailout["heartbeat_age_seconds"]
        stale = settings.heartbeat_stale_seconds
        if age is not None and float(age) < stale:
            return None
        why = "its run is gone (no heartbeat for {} s)".format("ever" if age is None else f"{float(age):.0f}")
        return _if_on(settings, Verdict(True, now, why + "; resumed by the next check of a live service process"))
    if status not in ("paused", "failed"):
        return None
    reason = mailout["stop_reason"]
    if reason is None:
        return Verdict(False, None, "it stopped before stop reasons were recorded: resume by hand")
    reason = StopReason(reason)
    if reason is StopReason.SHUTDOWN:
        return _if_on(settings, Verdict(True, now, "its process was asked to stop: resumed at once by a live process"))
    if reason in RESUME_AFTER_BACKOFF:
        at = mailout["next_resume_at"] or now
        attempts = mailout["auto_resume_attempts"]
        why = f"{reason.value} heals by itself: automatic attempt {attempts + 1} (backoff 1 min doubling, 1 h at most)"
        return _if_on(settings, Verdict(True, max(at, now), why))
    return Verdict(False, None, WHY_NOT.get(reason, f"stopped as '{reason.value}': resume by hand"))


def _if_on(settings, resumes: Verdict) -> Verdict:
    if settings.auto_resume:
        return resumes
    return Verdict(False, None, f"{resumes.why.split(':')[0]}, but AUTO_RESUME is off: resume by hand")


class Watcher:
    """Resumes interrupted mailouts from one process; its runs are threads of
    that process and listen to its StopSignal, as a webhook's send does."""

    def __init__(
        self,
        pool: ConnectionPool,
        transport: Transport,
        settings,
        *,
        stop: StopSignal = process_stop,
        clock: Callable[[], datetime] | None = None,
        hooks: RunHooks | None = None,
    ):
        self.pool = pool
        self.hooks = hooks
        self.transport = transport
        self.settings = settings
        self.stop = stop
        # None: the database's clock, the one next_resume_at is written with.
        self.clock = clock
        self.interval = settings.heartbeat_stale_seconds / 4
        self.runs: list[threading.Thread] = []
        self.thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self.thread = threading.Thread(target=self.watch, name="auto-resume", daemon=True)
        self.thread.start()
        return self

    def watch(self) -> None:
        log.info("auto-resume: watching for interrupted mailouts every %.0f s", self.interval)
        while not self.stop.is_set():
            try:
                self.check_once()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("auto-resume: database unreachable (%s); looking again later", str(exc).strip()[:200])
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad check
                log.exception("auto-resume: the check failed")
            if self.stop.wait(self.interval):
                break

    def check_once(self) -> list[threading.Thread]:
        """Resume every interrupted mailout that is due; the runs started."""
        if self.stop.is_set():
            return []
        with self.pool.connection() as conn:
            rows = store.interrupted_mailouts(conn, REASONS)
        started = []
        for row in rows:
            now = self.clock() if self.clock else row["db_now"]
            found = verdict(row, self.settings, now)
            if found is None or not found.due(now) or self.stop.is_set():
                continue
            thread = self.resume(row, found, now)
            if thread is not None:
                started.append(thread)
        return started

    def resume(self, row: dict, found: Verdict, now: datetime) -> threading.Thread | None:
        mailout_id = row["id"]
        automatic = store.Automatic(REASONS, COUNTED, now)
        try:
            claim = resume_mailout(self.pool, mailout_id, self.settings, automatic=automatic)
        except (RunnerAlive, MailoutNotResumable, MailoutNotFound):
            return None  # another process (or a person) took it first, or it changed meanwhile
        except MailoutInvalid as exc:
            log.error("auto-resume: mailout %s cannot be resumed: %s", mailout_id, exc)
            return None
        log.warning(
            "auto-resume: mailout %s resumed by itself (%s)",
            mailout_id,
            found.why,
            extra={"event": "auto_resumed", "mailout_id": str(mailout_id), "status": row["status"],
                   "counts": {"unknown": claim.in_doubt_marked, "attempt": claim.auto_attempts}},
        )
        try:
            claim, _queued, _to_queue = pace_resumed(self.pool, self.transport, self.settings, claim)
        except (AccountCannotSend, SesUnavailable) as exc:
            log.error("auto-resume: mailout %s paused again: %s", mailout_id, exc)
            self._tell("ended", mailout_id, None)
            return None
        thread = threading.Thread(
            target=self._send, args=(claim,), name=f"mailout-{mailout_id}", daemon=True
        )
        self.runs = [t for t in self.runs if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _send(self, claim) -> None:
        self._tell("started", claim.mailout_id)
        send_in_thread(
            self.pool, self.transport, self.settings, claim, stop=self.stop, what="automatically resumed send",
            finished=lambda summary: self._tell("ended", claim.mailout_id, summary),
        )  # fmt: skip

    def _tell(self, what: str, mailout_id: UUID, *args) -> None:
        if self.hooks is None:
            return
        try:
            getattr(self.hooks, what)(mailout_id, *args)
        except Exception:  # noqa: BLE001 - a hook's failure changes nothing sent
            log.exception("auto-resume: mailout %s: its %s hook failed", mailout_id, what)


def start_watching(
    pool: ConnectionPool, transport: Transport, settings, hooks: RunHooks | None = None
) -> Watcher | None:
    """The process's watcher, started, when AUTO_RESUME is on; `hooks` are
    told about each run it resumes."""
    if not settings.auto_resume:
        log.info("AUTO_RESUME is off: interrupted mailouts wait for `mailout resume`")
        return None
    return Watcher(pool, transport, settings, hooks=hooks).start()
