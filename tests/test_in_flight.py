"""Only the SES calls in flight can be in doubt (issue 15, "Done when"):
kill -9, a Postgres restart and SIGTERM in the middle of a send, against a
real gunicorn or `mailout send`, a real Postgres and the SES stand-in; and
SEND_CONCURRENCY=auto keeping as many calls in flight as a 250 ms SES needs.

A row is marked 'sending' right before the call that carries it, so after a
kill -9 every row the stand-in never received is still 'queued' but those
of a call that was on its way, and the resume (automatic, or the
operator's) sends everyone else exactly once.

No timing assertions: every wait is bounded and generous; what is counted
is rows, requests and how many requests the stand-in held at once.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time

import psycopg
import pytest

from amazonsender import db, sender
from tests.support.db import mailout_row
from tests.support.delivery import (
    assert_each_received_once,
    at_once,
    received,
    seed,
    statuses,
    unanswered,
    wait_until,
)
from tests.support.postgres import private_postgres as private_postgres_server, restart_postgres
from tests.support.processes import cli_process, finished, run_cli, run_gunicorn, service_env, start_send, wait_for_status
from tests.support.ses_standin import SesStandIn
from tests.support.settings import with_settings

# The smallest the settings allow: a dead run's mailout is resumed by the
# next process within about this long.
STALE = "10"


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        yield standin


@pytest.fixture
def private_postgres():
    with private_postgres_server() as pair:
        yield pair


def ledger(conn, mailout_id) -> dict[str, dict]:
    """Each address's row, with the call that marked it."""
    result = conn.execute(
        "SELECT email, status, ses_message_id, batch_id FROM send_logs WHERE mailout_id = %s", (mailout_id,)
    ).fetchall()
    return {row["email"]: row for row in result}


def concurrency_env(concurrency: str) -> dict:
    """SEND_CONCURRENCY as the test asks: "default" leaves it unset (auto)."""
    return {} if concurrency == "default" else {"SEND_CONCURRENCY": concurrency}


def kill_9(server) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    # A request the dead process had written still reaches the stand-in, and
    # a COMMIT it had written still reaches Postgres: read after them.
    time.sleep(0.3)


def check_after_kill(conn, ses, mailout_id, emails, *, most: int) -> set[str]:
    """Right after a kill -9: at most `most` rows in doubt, all of one call;
    every address the stand-in received is recorded 'sent' (with its id) or
    in doubt, every other one still 'queued'. The addresses in doubt."""
    rows = ledger(conn, mailout_id)
    counts = received(ses, mailout_id)
    assert mailout_row(conn, mailout_id)["status"] == "sending"  # a dead run leaves it so
    assert set(rows) == set(emails)
    doubt = {email for email, row in rows.items() if row["status"] == "sending"}
    by_status = statuses(conn, mailout_id)
    print(f"after kill -9: {dict(by_status)}; received {len(counts)}; in doubt {sorted(doubt)}")
    assert len(doubt) <= most, f"{len(doubt)} rows in doubt, more than one call's {most}: {dict(by_status)}"
    assert len({rows[email]["batch_id"] for email in doubt}) <= 1, "rows of several calls in doubt"
    assert set(by_status) <= {"sent", "sending", "queued"}, dict(by_status)
    assert [email for email, n in counts.items() if n > 1] == []
    sent = {email for email, row in rows.items() if row["status"] == "sent"}
    assert sent == set(counts) - doubt, "received and not in doubt is recorded 'sent', and only that"
    ids = {r.to_addresses[0]: r.message_id for r in ses.sent if r.tags.get("mailout_id") == str(mailout_id)}
    assert all(rows[email]["ses_message_id"] == ids[email] for email in sent)
    never_reached = set(emails) - set(counts)
    assert {rows[email]["status"] for email in never_reached - doubt} <= {"queued"}
    assert 0 < len(sent) and by_status["queued"] > 0, "the kill did not land mid-send"
    return doubt


def check_after_resume(conn, ses, mailout_id, emails, doubt: set[str]) -> None:
    """Resumed to the end: the rows in doubt are 'unknown' and none was sent
    again; everyone else received exactly once and recorded 'sent'."""
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    rows = ledger(conn, mailout_id)
    counts = received(ses, mailout_id)
    assert [email for email, n in counts.items() if n > 1] == []  # nobody twice
    assert set(counts) <= set(emails)
    assert {email for email, row in rows.items() if row["status"] == "unknown"} == doubt
    others = [email for email in emails if email not in doubt]
    assert all(counts[email] == 1 and rows[email]["status"] == "sent" for email in others), [
        (email, counts[email], rows[email]["status"]) for email in others if counts[email] != 1
        or rows[email]["status"] != "sent"
    ]


# --- 1. kill -9 on the SendEmail path: one recipient in doubt at most ----------------


@pytest.mark.parametrize("concurrency", ["default", "1"])
def test_kill_9_on_the_send_email_path_leaves_one_recipient_in_doubt_at_most(
    concurrency, database_url, conn, ses, tmp_path
):
    mailout_id, emails = seed(conn, 60)
    ses.latency = 0.04
    # 10/s: one recipient per SES call (pacer.recipients_per_call); batches
    # of the default 50, so a batch is far more than a call.
    env = service_env(
        tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="10", BATCH_SIZE="50", WEB_CONCURRENCY="1",
        HEARTBEAT_STALE_SECONDS=STALE, **concurrency_env(concurrency),
    )

    with run_gunicorn(env, tmp_path) as crashed:
        start_send(crashed, mailout_id)
        wait_until(lambda: len(ses.sent) >= 8, 30, "eight emails sent")
        kill_9(crashed)
    assert ses.bulk_requests == []
    doubt = check_after_kill(conn, ses, mailout_id, emails, most=1)

    # The next process resumes it by itself once the dead run's heartbeat is stale.
    with run_gunicorn(env, tmp_path) as new:
        answer = wait_for_status(new, mailout_id, "sent", timeout=90)
    assert answer["counts"].get("unknown", 0) == len(doubt)
    check_after_resume(conn, ses, mailout_id, emails, doubt)


# --- 2. kill -9 on the SendBulkEmail path: one call's recipients at most --------------


def test_kill_9_on_the_bulk_path_leaves_one_calls_recipients_in_doubt_at_most(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 200)
    ses.latency = 0.04
    # 50/s with SendBulkEmail: 5 recipients per call, ten calls a second.
    env = service_env(
        tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="50", BATCH_SIZE="50", SES_BULK_SEND="auto",
        WEB_CONCURRENCY="1",
    )

    with run_gunicorn(env, tmp_path) as crashed:
        start_send(crashed, mailout_id)
        wait_until(lambda: len(ses.sent) >= 20, 30, "twenty emails sent")
        kill_9(crashed)
    assert ses.send_email_requests == [] and ses.bulk_requests
    assert {len(r.to_addresses) for r in ses.bulk_requests} == {5}
    doubt = check_after_kill(conn, ses, mailout_id, emails, most=5)

    # The operator's resume, at once (--force: the dead run's heartbeat is fresh).
    resume_env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="500", BATCH_SIZE="50")
    result = run_cli("mailout", "resume", str(mailout_id), "--force", env=resume_env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(doubt)} were in flight" in result.stdout, result.stdout
    summary = result.summary
    assert (summary["status"], summary["sent"], summary["in_doubt"], summary["queued"]) == (
        "sent", len(emails) - len(doubt), len(doubt), 0,
    )
    check_after_resume(conn, ses, mailout_id, emails, doubt)


# --- 3. Postgres restarted mid-send, many calls in flight ------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_postgres_restart_with_calls_in_flight_is_ridden_out(mode, private_postgres, ses, tmp_path):
    """The send goes on across the restart (DB_RETRY_SECONDS) and ends
    'sent'; a call whose marking or recording the restart cut off is written
    again, so nothing is left in doubt and nobody gets it twice."""
    server, url = private_postgres
    with psycopg.connect(url, autocommit=True, **db.connect_kwargs()) as conn:
        mailout_id, emails = seed(conn, 160)
    ses.latency = 0.25
    # 40 SendEmail calls a second answered in 250 ms: about ten at SES at once.
    env = service_env(
        tmp_path, url, ses, RATE_LIMIT_PER_SEC="40", BATCH_SIZE="50", SES_BULK_SEND="off", DB_RETRY_SECONDS="30"
    )

    with cli_process("mailout", "send", str(mailout_id), env=env, tmp_path=tmp_path) as proc:
        wait_until(lambda: (len(ses.sent) >= 40 and len(unanswered(ses)) >= 3) or proc.poll() is not None, 30,
                   "forty emails sent, several calls in flight")
        assert proc.poll() is None, "the send ended before the restart"
        in_flight = len(unanswered(ses))
        restart_postgres(server, down_seconds=1.5, mode=mode)
        sent_during_restart = len(ses.sent)
        result = finished(proc, timeout=90)

    print(f"{mode} restart with {in_flight} calls at SES; {sent_during_restart} sent by the time it was back")
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert sent_during_restart < len(emails), "the send was over before the database came back"
    assert "error connecting" in result.stderr or "database unreachable" in result.stderr
    summary = result.summary
    assert (summary["status"], summary["sent"], summary["in_doubt"], summary["queued"]) == ("sent", 160, 0, 0)
    with psycopg.connect(url, autocommit=True, **db.connect_kwargs()) as conn:
        assert mailout_row(conn, mailout_id)["status"] == "sent"
        assert_each_received_once(ses, conn, mailout_id, emails)  # none left 'sending', nobody twice


# --- 4. SIGTERM with many calls in flight ----------------------------------------------


def test_sigterm_with_many_calls_in_flight_records_them_all_and_pauses(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 200)
    ses.latency = 0.25
    env = service_env(
        tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="40", BATCH_SIZE="50", SES_BULK_SEND="off",
        WEB_CONCURRENCY="1",
    )

    def several_in_flight():
        calls = unanswered(ses)
        return calls if len(ses.sent) >= 30 and len(calls) >= 5 else None

    with run_gunicorn(env, tmp_path) as old:
        start_send(old, mailout_id)
        calls = wait_until(several_in_flight, 30, "thirty emails sent and five calls at SES")
        os.kill(old.proc.pid, signal.SIGTERM)  # the master, as `docker stop` does
        try:
            old.proc.wait(timeout=35)
        except Exception:
            pytest.fail(f"gunicorn did not stop on SIGTERM:\n{old.log()}")

    paused = mailout_row(conn, mailout_id)
    assert (paused["status"], paused["stop_reason"]) == ("paused", "shutdown"), paused["error"]
    rows = ledger(conn, mailout_id)
    counts = received(ses, mailout_id)
    by_status = statuses(conn, mailout_id)
    print(f"SIGTERM with {len(calls)} calls at SES: {dict(by_status)}")
    assert set(by_status) <= {"sent", "queued"}, dict(by_status)  # nothing left 'sending'
    assert 0 < by_status["queued"]
    assert max(counts.values()) == 1
    assert {email for email, row in rows.items() if row["status"] == "sent"} == set(counts)
    # The calls at SES when the signal came were answered and recorded.
    assert all(rows[r.to_addresses[0]]["status"] == "sent" for r in calls)

    # The next release resumes it by itself.
    with run_gunicorn(service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="200"), tmp_path) as new:
        answer = wait_for_status(new, mailout_id, "sent", timeout=60)
    assert answer["stop_reason"] is None
    assert_each_received_once(ses, conn, mailout_id, emails)


# --- 5. auto concurrency converges to what a 250 ms SES needs ---------------------------


RATE = 40
LATENCY = 0.25


def test_auto_concurrency_keeps_the_calls_a_slow_ses_needs_in_flight(pool, conn, settings, standin_transport):
    ses, transport = standin_transport
    ses.latency = LATENCY
    mailout_id, emails = seed(conn, 150)
    auto = with_settings(settings, send_concurrency=0, rate_limit_per_sec=float(RATE), ses_bulk_send="off",
                         batch_size=50)
    sender.stop_requested.clear()

    claim = sender.claim_mailout(pool, mailout_id)
    summary = sender.send_claimed_mailout(pool, transport, auto, claim)

    assert (summary.status, summary.sent, summary.in_doubt) == ("sent", 150, 0)
    assert_each_received_once(ses, conn, mailout_id, emails)
    requests = ses.send_requests
    assert len(requests) == 150 and all(r.answered_at is not None for r in requests)
    held = at_once(requests)
    # The steady part: past the cautious start, before the list runs out.
    steady = held[len(held) // 4 : len(held) * 3 // 4]
    # Flights' own limit at this pace and answer time, and a little for the
    # time a call spends around SES (its mark and record).
    ceiling = math.ceil(RATE * LATENCY * 1.25) + 1 + 2
    print(f"calls at SES at once: most {max(held)}, steady median {statistics.median(steady)}, ceiling {ceiling}")
    assert max(held) <= ceiling
    assert max(steady) >= 8, steady
