"""Faults against the service as production runs it: a real gunicorn (or the
command line), a real Postgres, and SES replaced by the local stand-in, so
that boto3's own error parsing turns every fault into the exception a real
SES answer would.

Each test ends with the ledger checked against what the stand-in received:
nobody gets the mailout twice, nobody is silently dropped, and what the
operator sees (the mailout's status and error, the summary) matches it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from amazonsender import db
from tests.support.db import mailout_row
from tests.support.processes import (
    cli_process,
    finished,
    run_cli,
    run_gunicorn,
    service_env,
    start_send,
    wait_for_status,
)
from tests.support.postgres import private_postgres as private_postgres_server, restart_postgres
from tests.support.ses_standin import SesStandIn
from tests.support.delivery import assert_each_received_once, received, rows, seed, statuses, wait_until

# One seed per session for the kill moments; FAULT_SEED=<n> replays a run.
SEED = int(os.environ.get("FAULT_SEED") or random.randrange(1_000_000))
KILL_RUNS = 8


@pytest.fixture
def ses():
    """The stand-in, with an account that lets the service go as fast as
    RATE_LIMIT_PER_SEC says (the service paces at the lower of the two)."""
    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        yield standin


def service_log(stderr: str) -> str:
    """The service's own log lines, for a failure message."""
    return "\n".join(line[:300] for line in stderr.splitlines() if "botocore" not in line)


def resume_env(tmp_path: Path, database_url: str, ses: SesStandIn, **values) -> dict:
    """The operator's `mailout resume`: the production settings, fast."""
    return service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="500", **values)


# --- 1. kill -9 at random moments ---------------------------------------------------


KILL_RECIPIENTS = 60
KILL_BATCH = 10


@pytest.mark.parametrize("run", range(KILL_RUNS))
def test_kill_9_at_a_random_moment_never_sends_twice(run, database_url, conn, ses, tmp_path):
    rng = random.Random(SEED * 1000 + run)
    mailout_id, emails = seed(conn, KILL_RECIPIENTS)
    # 60 emails at 60/s with a little SES latency: about a second of
    # sending, six batches; the kill lands anywhere in it.
    ses.latency = 0.005
    # One worker: the send runs in one anyway, and it starts faster.
    env = service_env(
        tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="60", BATCH_SIZE=str(KILL_BATCH), WEB_CONCURRENCY="1"
    )
    delay = rng.uniform(0.0, 0.9)
    context = f"FAULT_SEED={SEED} run {run}: SIGKILL {delay:.3f}s after the 202"

    with run_gunicorn(env, tmp_path) as server:
        start_send(server, mailout_id)
        time.sleep(delay)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    # A request the dead process had written still reaches the stand-in, and
    # a COMMIT it had written still reaches Postgres: read after them.
    time.sleep(0.2)
    before = statuses(conn, mailout_id)
    status_before = mailout_row(conn, mailout_id)["status"]

    if status_before == "sent":
        # The kill came after the end: nothing to resume.
        result = None
    else:
        assert status_before == "sending", context  # a dead run leaves no other state
        result = run_cli("mailout", "resume", str(mailout_id), "--force", env=resume_env(tmp_path, database_url, ses),
                         tmp_path=tmp_path)
        assert result.returncode == 0, f"{context}\n{result.stdout}\n{result.stderr}"

    counts = received(ses, mailout_id)
    ledger = rows(conn, mailout_id)
    by_status = Counter(row["status"] for row in ledger.values())
    unknown = {email for email, row in ledger.items() if row["status"] == "unknown"}
    arrived_in_doubt = sum(1 for email in unknown if counts[email])
    print(
        f"{context}: before resume {dict(before)}; after {dict(by_status)};"
        f" {len(unknown)} unknown, {arrived_in_doubt} of them had reached SES"
    )

    assert [email for email, n in counts.items() if n > 1] == [], context  # ZERO duplicates
    assert set(counts) <= set(emails), context
    assert set(ledger) == set(emails), context
    assert set(by_status) <= {"sent", "unknown"}, f"{context}: {dict(by_status)}"
    # Everyone either got it (the ledger has SES's message id) or is in doubt.
    for email, row in ledger.items():
        if row["status"] == "sent":
            assert counts[email] == 1, (context, email)
            [message_id] = [r.message_id for r in ses.sent if r.to_addresses == [email]]
            assert row["ses_message_id"] == message_id, (context, email)
    assert set(emails) == {email for email in emails if counts[email]} | unknown, context
    # Only the batch in flight can be in doubt.
    assert len(unknown) <= KILL_BATCH, f"{context}: {len(unknown)} unknown"
    assert before["sending"] == len(unknown), context
    assert mailout_row(conn, mailout_id)["status"] == "sent", context

    if result is not None:
        summary = result.summary
        assert summary["status"] == "sent", context
        assert summary["recipients"] == KILL_RECIPIENTS
        assert summary["sent"] == by_status["sent"], context
        assert summary["in_doubt"] == by_status["unknown"], context
        assert (summary["failed"], summary["skipped"], summary["queued"], summary["error"]) == (0, 0, 0, None)
        assert f"{len(unknown)} were in flight" in result.stdout, result.stdout


# --- 2. throttling below our rate ----------------------------------------------------


def test_throttling_below_our_rate_is_absorbed_and_everything_is_delivered(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 60)
    ses.throttle_above_per_second = 20
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="60", BATCH_SIZE="10")

    started = time.monotonic()
    with run_gunicorn(env, tmp_path) as server:
        start_send(server, mailout_id)
        answer = wait_for_status(server, mailout_id, "sent", timeout=40)
        log = server.log(tail=None)
    seconds = time.monotonic() - started

    assert answer["counts"] == {"sent": len(emails)}
    assert answer["error"] is None
    assert_each_received_once(ses, conn, mailout_id, emails)
    throttled = ses.throttled
    print(f"throttled answers absorbed: {len(throttled)}; {len(emails)} sent in {seconds:.1f}s (with start-up)")
    assert throttled, "the stand-in never throttled: the test did not test anything"
    # Each throttled email was sent again, and then accepted (once).
    assert {r.to_addresses[0] for r in throttled} <= set(emails)
    assert all(r.error_code == "TooManyRequestsException" for r in throttled)
    # The sender slowed down: far fewer throttled answers than emails.
    assert len(throttled) < len(emails) // 3
    # No one-second window ever held more than SES allows.
    accepted = sorted(r.accepted_at for r in ses.sent)
    assert max(sum(1 for t in accepted if start <= t < start + 1.0) for start in accepted) <= 20
    assert "SES throttled us" in log


# --- 3. a paused account -------------------------------------------------------------


def test_a_paused_account_stops_after_the_calls_in_flight_and_resumes_afterwards(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 30)
    ses.pause_sending(from_send=13)
    # One SendEmail per recipient (tests/test_bulk.py pauses bulk calls
    # part-way), as many calls in flight as SEND_CONCURRENCY=auto keeps: those
    # already under way when SES first refuses are refused too.
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="200", BATCH_SIZE="10", SES_BULK_SEND="off")

    with run_gunicorn(env, tmp_path) as server:
        start_send(server, mailout_id)
        answer = wait_for_status(server, mailout_id, "failed", timeout=20)
        time.sleep(0.3)  # nothing more goes out after the stop

    sends = ses.send_requests
    # The 13th is refused, and so are the calls already in flight beside it
    # (SEND_CONCURRENCY=auto); no call starts after the stop.
    assert len(sends) >= 13
    assert [r.status for r in sends] == [200] * 12 + [400] * (len(sends) - 12)
    assert {r.error_code for r in sends[12:]} == {"SendingPausedException"}
    assert "SendingPausedException" in answer["error"]
    assert f"resume with: python -m amazonsender mailout resume {mailout_id}" in answer["error"]
    # The refused ones and the rest back in the queue; nothing failed,
    # nothing in doubt.
    assert answer["counts"] == {"sent": 12, "queued": 18}
    ledger = rows(conn, mailout_id)
    for refused in sends[12:]:
        assert ledger[refused.to_addresses[0]]["status"] == "queued"
        assert ledger[refused.to_addresses[0]]["error_message"] is None

    # The account is fine again; the operator resumes (no --force for 'failed').
    ses.resume_sending()
    result = run_cli("mailout", "resume", str(mailout_id), env=resume_env(tmp_path, database_url, ses),
                     tmp_path=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.summary["status"] == "sent"
    assert (result.summary["sent"], result.summary["queued"], result.summary["in_doubt"]) == (30, 0, 0)
    assert "18 still queued, 0 were in flight" in result.stdout
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert_each_received_once(ses, conn, mailout_id, emails)


# --- 4. rejected addresses -----------------------------------------------------------


def test_rejected_addresses_fail_with_the_reason_and_the_rest_is_sent(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 20)
    sandbox, content = emails[3], emails[11]
    sandbox_reason = f"Email address is not verified. The following identities failed the check in region US-EAST-1: {sandbox}"
    ses.fail_address(sandbox, "MessageRejected", 400, sandbox_reason)
    ses.fail_address(content, "MessageRejected", 400, "Illegal address")
    # SendEmail's error text is asserted (tests/test_bulk.py covers a rejected
    # entry of a bulk call).
    env = service_env(tmp_path, database_url, ses, BATCH_SIZE="6", SES_BULK_SEND="off")

    with run_gunicorn(env, tmp_path) as server:
        start_send(server, mailout_id)
        answer = wait_for_status(server, mailout_id, "sent", timeout=20)

    assert answer["counts"] == {"sent": 18, "failed": 2}
    assert answer["error"] is None
    ledger = rows(conn, mailout_id)
    assert ledger[sandbox]["status"] == "failed"
    assert ledger[sandbox]["error_message"] == f"MessageRejected: {sandbox_reason}"
    assert ledger[content]["status"] == "failed"
    assert ledger[content]["error_message"] == "MessageRejected: Illegal address"
    assert ledger[sandbox]["ses_message_id"] is None and ledger[content]["ses_message_id"] is None
    # A rejection is final: each was asked once, not retried.
    attempts = Counter(r.to_addresses[0] for r in ses.send_requests)
    assert attempts[sandbox] == attempts[content] == 1
    others = [email for email in emails if email not in (sandbox, content)]
    assert sorted(received(ses, mailout_id).elements()) == sorted(others)
    assert all(ledger[email]["status"] == "sent" for email in others)


# --- 5. the database restarted mid-send ------------------------------------------------


@pytest.fixture
def private_postgres():
    """A Postgres of this test's own (tests/support/postgres.py); yields (server, url)."""
    with private_postgres_server() as pair:
        yield pair


def blocked_record(url: str) -> dict | None:
    """The service's backend whose record of a call's outcomes waits on the row lock the test holds."""
    with psycopg.connect(url, autocommit=True, **db.connect_kwargs()) as watcher:
        return watcher.execute(
            """
            SELECT pid, query FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE send_logs l%SET status = o.status%'
            """
        ).fetchone()


@pytest.mark.parametrize("moment", ["between statements", "inside a transaction"])
def test_the_database_restarted_mid_send(moment, private_postgres, ses, tmp_path):
    """The send goes on across a Postgres restart and ends 'sent', each
    email sent once. "inside a transaction": Postgres crashes (an immediate
    stop) in the middle of the statement that records a call's outcomes
    after its emails went out (held up by a lock the test takes on the
    call's rows), so the outcomes are lost and must be written again,
    without sending anything again."""
    server, url = private_postgres
    with psycopg.connect(url, autocommit=True, **db.connect_kwargs()) as conn:
        mailout_id, emails = seed(conn, 60)
    # 60 emails at 20/s: three seconds, a database call every tenth of a second.
    env = service_env(tmp_path, url, ses, RATE_LIMIT_PER_SEC="20", BATCH_SIZE="5", DB_RETRY_SECONDS="30")

    with cli_process("mailout", "send", str(mailout_id), env=env, tmp_path=tmp_path) as proc:
        wait_until(lambda: len(ses.sent) >= 16 or proc.poll() is not None, 20, "16 emails sent")
        assert proc.poll() is None, "the send ended before the restart"
        if moment == "inside a transaction":
            # Slow answers keep a call's rows 'sending' long enough to lock them.
            ses.latency = 0.3
            holder = psycopg.connect(url, **db.connect_kwargs())
            locked = wait_until(
                lambda: holder.execute(
                    "SELECT id, email FROM send_logs WHERE mailout_id = %s AND status = 'sending' FOR UPDATE",
                    (mailout_id,),
                ).fetchall(),
                10,
                "a call in flight",
            )
            wait_until(lambda: blocked_record(url), 10, "the call's record waits")
            ses.latency = 0.0
            # Its emails went out; their outcomes are not written.
            assert {row["email"] for row in locked} <= {a for m in ses.sent for a in m.to_addresses}
            # Immediate: in a fast stop the holder's session may end first and
            # let the waiting statement commit before its own session ends.
            restart_postgres(server, down_seconds=1.5, mode="immediate")
            holder.close()
        else:
            restart_postgres(server, down_seconds=1.5)
        sent_during_restart = len(ses.sent)
        result = finished(proc, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert sent_during_restart < len(emails), "the send was over before the database came back"
    if moment == "inside a transaction":
        # The cut statement failed in the sender, which retried the batch's record.
        assert "database unreachable" in result.stderr, service_log(result.stderr)
    else:
        # The outage was felt (by the pool, or by a statement that was cut
        # off), and ridden out.
        assert "error connecting" in result.stderr or "database unreachable" in result.stderr
    assert result.summary["status"] == "sent"
    assert (result.summary["sent"], result.summary["in_doubt"], result.summary["queued"]) == (60, 0, 0)
    with psycopg.connect(url, autocommit=True, **db.connect_kwargs()) as conn:
        assert mailout_row(conn, mailout_id)["status"] == "sent"
        assert_each_received_once(ses, conn, mailout_id, emails)  # every row 'sent', none left 'sending'


# --- 6. SIGTERM mid-send --------------------------------------------------------------


SLOW = {"RATE_LIMIT_PER_SEC": "5", "BATCH_SIZE": "10"}


def assert_paused_cleanly(conn, ses, mailout_id, emails) -> Counter:
    """After an orderly stop: 'paused' with how to resume; every email that
    went out is recorded 'sent', nothing is in doubt, the rest is queued."""
    mailout = mailout_row(conn, mailout_id)
    assert mailout["status"] == "paused"
    assert "SIGTERM" in mailout["error"]
    assert f"resume with: python -m amazonsender mailout resume {mailout_id}" in mailout["error"]
    by_status = statuses(conn, mailout_id)
    assert set(by_status) <= {"sent", "queued"}, dict(by_status)  # no 'sending', no 'unknown'
    assert 0 < by_status["sent"] < len(emails)
    assert by_status["sent"] + by_status["queued"] == len(emails)
    counts = received(ses, mailout_id)
    assert max(counts.values()) == 1
    ledger = rows(conn, mailout_id)
    assert {email for email, row in ledger.items() if row["status"] == "sent"} == set(counts)
    return by_status


def resume_and_check(tmp_path, database_url, conn, ses, mailout_id, emails, queued: int) -> None:
    result = run_cli("mailout", "resume", str(mailout_id), env=resume_env(tmp_path, database_url, ses),
                     tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{queued} still queued, 0 were in flight" in result.stdout
    assert result.summary["status"] == "sent"
    assert (result.summary["sent"], result.summary["in_doubt"]) == (len(emails), 0)
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert_each_received_once(ses, conn, mailout_id, emails)


def test_sigterm_to_gunicorn_pauses_after_the_email_in_flight(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 40)
    env = service_env(tmp_path, database_url, ses, **SLOW)

    with run_gunicorn(env, tmp_path) as server:
        start_send(server, mailout_id)
        wait_until(lambda: len(ses.sent) >= 3, 10, "three emails sent")
        time.sleep(0.5)
        os.kill(server.proc.pid, signal.SIGTERM)  # the master, as `docker stop` does
        try:
            server.proc.wait(timeout=35)
        except Exception:
            pytest.fail(f"gunicorn did not stop on SIGTERM:\n{server.log()}")
        log = server.log(tail=None)

    by_status = assert_paused_cleanly(conn, ses, mailout_id, emails)
    print(f"gunicorn SIGTERM: {dict(by_status)}")
    assert f"python -m amazonsender mailout resume {mailout_id}" in log

    resume_and_check(tmp_path, database_url, conn, ses, mailout_id, emails, by_status["queued"])


def test_sigterm_to_mailout_send_pauses_after_the_email_in_flight(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 40)
    env = service_env(tmp_path, database_url, ses, **SLOW)

    with cli_process("mailout", "send", str(mailout_id), env=env, tmp_path=tmp_path) as proc:
        wait_until(lambda: len(ses.sent) >= 3 or proc.poll() is not None, 20, "three emails sent")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        result = finished(proc, timeout=30)

    assert result.returncode != 0
    assert result.summary["status"] == "paused"
    by_status = assert_paused_cleanly(conn, ses, mailout_id, emails)
    print(f"mailout send SIGTERM: {dict(by_status)}")
    assert (result.summary["sent"], result.summary["queued"], result.summary["in_doubt"]) == (
        by_status["sent"], by_status["queued"], 0,
    )
    assert f"python -m amazonsender mailout resume {mailout_id}" in result.stderr

    resume_and_check(tmp_path, database_url, conn, ses, mailout_id, emails, by_status["queued"])


def test_sigterm_while_ses_throttles_pauses_promptly(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 20)
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="50", BATCH_SIZE="10")

    with cli_process("mailout", "send", str(mailout_id), env=env, tmp_path=tmp_path) as proc:
        wait_until(lambda: len(ses.sent) >= 3 or proc.poll() is not None, 20, "three emails sent")
        ses.fail_next(1000, "TooManyRequestsException", 429, "Maximum sending rate exceeded.")
        wait_until(lambda: len(ses.throttled) >= 2, 10, "two throttled answers")
        proc.send_signal(signal.SIGTERM)
        # The email being retried was refused by SES each time: it can go
        # back to the queue at once.
        result = finished(proc, timeout=4)

    assert result.summary["status"] == "paused"
    by_status = assert_paused_cleanly(conn, ses, mailout_id, emails)
    ses.clear_failures()
    resume_and_check(tmp_path, database_url, conn, ses, mailout_id, emails, by_status["queued"])
