"""Automatic resume against real gunicorn processes, a real Postgres and the
SES stand-in (issue 14, item 1, "Done when"): a deploy (SIGTERM) or a crash
(kill -9) in the middle of a send finishes by itself once a new process
runs, nobody twice and nobody missing, no command typed; what waits for a
person (their pause, the guard, a refusing account) stays as it is across
restarts; two workers watching resume a mailout once.

No timing assertions beyond generous waits.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests

from amazonsender.sender.stop import StopReason
from tests.support.db import mailout_row
from tests.support.processes import run_gunicorn, service_env, start_send, wait_for_status
from tests.support.settings import SHARED_SECRET
from tests.support.ses_standin import SesStandIn
from tests.support.sending import stopped
from tests.support.delivery import assert_each_received_once, received, rows, seed, statuses, wait_until

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}
# The smallest the settings allow: a watcher looks every 2.5 s.
STALE = "10"


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        yield standin


def auto_resumes(log: str) -> int:
    return len(re.findall(r'"event": ?"auto_resumed"', log))


def account_checks(ses: SesStandIn) -> int:
    return sum(1 for r in ses.requests if r.method == "GET" and r.route.endswith("/account"))


def stop_with_sigterm(server) -> None:
    os.kill(server.proc.pid, signal.SIGTERM)  # the master, as `docker stop` does
    try:
        server.proc.wait(timeout=35)
    except Exception:
        pytest.fail(f"gunicorn did not stop on SIGTERM:\n{server.log()}")


def test_a_deploy_mid_send_finishes_by_itself_in_the_next_process(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 40)
    slow = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="5", BATCH_SIZE="10", WEB_CONCURRENCY="1")

    with run_gunicorn(slow, tmp_path) as old:
        start_send(old, mailout_id)
        wait_until(lambda: len(ses.sent) >= 3, 15, "three emails sent")
        stop_with_sigterm(old)
    paused = mailout_row(conn, mailout_id)
    assert (paused["status"], paused["stop_reason"]) == ("paused", "shutdown"), paused["error"]
    sent_before = len(ses.sent)
    assert 0 < sent_before < len(emails)

    # The new release: two workers, both watching; nobody types anything.
    new_env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="200", BATCH_SIZE="10",
                          WEB_CONCURRENCY="2")
    with run_gunicorn(new_env, tmp_path) as new:
        answer = wait_for_status(new, mailout_id, "sent", timeout=60)
        time.sleep(3)  # a second watcher's check after the end changes nothing
        log = new.log(tail=None)

    assert answer["stop_reason"] is None and answer["auto_resume"] is None
    assert_each_received_once(ses, conn, mailout_id, emails)
    assert log.count("auto-resume: watching") == 2, log[-3000:]
    assert auto_resumes(log) == 1, log[-3000:]


def test_a_crash_mid_send_finishes_once_the_heartbeat_is_stale(database_url, conn, ses, tmp_path):
    mailout_id, emails = seed(conn, 60)
    ses.latency = 0.005
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="30", BATCH_SIZE="10", WEB_CONCURRENCY="1",
                      HEARTBEAT_STALE_SECONDS=STALE)

    with run_gunicorn(env, tmp_path) as crashed:
        start_send(crashed, mailout_id)
        wait_until(lambda: len(ses.sent) >= 12, 15, "a dozen emails sent")
        os.killpg(crashed.proc.pid, signal.SIGKILL)
        crashed.proc.wait(timeout=10)
    time.sleep(0.2)  # what the dead process had written reaches Postgres and the stand-in
    assert mailout_row(conn, mailout_id)["status"] == "sending"
    in_flight = statuses(conn, mailout_id)["sending"]

    with run_gunicorn(env, tmp_path) as new:
        answer = wait_for_status(new, mailout_id, "sent", timeout=60)
        log = new.log(tail=None)

    counts = received(ses, mailout_id)
    ledger = rows(conn, mailout_id)
    unknown = {email for email, row in ledger.items() if row["status"] == "unknown"}
    assert [email for email, n in counts.items() if n > 1] == []  # nobody twice
    assert set(ledger) == set(emails)
    assert {row["status"] for row in ledger.values()} <= {"sent", "unknown"}
    assert len(unknown) == in_flight <= 10  # only the batch in flight is in doubt
    assert {email for email in emails if counts[email]} | unknown == set(emails)  # nobody missing
    assert answer["counts"].get("unknown", 0) == len(unknown)
    assert auto_resumes(log) == 1


def test_what_waits_for_a_person_stays_as_it_is_across_restarts(database_url, conn, pool, ses, tmp_path):
    guard = stopped(pool, conn, StopReason.GUARD)
    mailout_id, emails = seed(conn, 40)
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="5", BATCH_SIZE="5", WEB_CONCURRENCY="1",
                      HEARTBEAT_STALE_SECONDS=STALE)

    with run_gunicorn(env, tmp_path) as first:
        start_send(first, mailout_id)
        wait_until(lambda: len(ses.sent) >= 3, 15, "three emails sent")
        answer = requests.post(f"{first.url}/mailouts/{mailout_id}/pause", headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        # The run notices at its next heartbeat or batch, and stops.
        wait_until(lambda: statuses(conn, mailout_id)["sending"] == 0, 15, "the batch in flight recorded")
        sent = len(ses.sent)
        time.sleep(3)
        assert len(ses.sent) == sent

    for _ in range(2):  # a restart, and another
        with run_gunicorn(env, tmp_path) as server:
            time.sleep(6)  # two checks of the watcher, at least
            status = requests.get(f"{server.url}/mailouts/{mailout_id}", headers=AUTH, timeout=10).json()
            log = server.log(tail=None)
        assert (status["status"], status["stop_reason"]) == ("paused", "operator")
        assert status["auto_resume"]["automatic"] is False
        assert auto_resumes(log) == 0
    assert len(ses.sent) == sent
    assert set(statuses(conn, mailout_id)) == {"sent", "queued"}
    assert (mailout_row(conn, guard)["status"], mailout_row(conn, guard)["stop_reason"]) == ("paused", "guard")


def test_a_refusing_account_is_not_retried_in_a_loop(database_url, conn, pool, ses, tmp_path):
    mailout_id, emails = seed(conn, 20)
    ses.pause_sending(from_send=6)
    env = service_env(tmp_path, database_url, ses, RATE_LIMIT_PER_SEC="200", BATCH_SIZE="5", WEB_CONCURRENCY="2",
                      SES_BULK_SEND="off", HEARTBEAT_STALE_SECONDS=STALE)
    # Paused by a deploy, before SES turned the account off: the next
    # process resumes it, asks SES, and leaves it paused as 'account'.
    deployed = stopped(pool, conn, StopReason.SHUTDOWN, n=3)
    ses.set_account(sending_enabled=False)

    with run_gunicorn(env, tmp_path) as server:
        wait_until(lambda: mailout_row(conn, deployed)["stop_reason"] == "account", 20, "the resume refused")
        ses.set_account(sending_enabled=True)  # the webhook's own check passes; SendEmail still refuses
        start_send(server, mailout_id)
        failed = wait_for_status(server, mailout_id, "failed", timeout=30)
        checks = account_checks(ses)
        sends = len(ses.send_requests)
        time.sleep(6)  # two checks of each watcher, at least
        log = server.log(tail=None)

    assert failed["stop_reason"] == "account" and failed["auto_resume"]["automatic"] is False
    with run_gunicorn(env, tmp_path) as restarted:
        time.sleep(6)
        log += restarted.log(tail=None)
    assert (account_checks(ses), len(ses.send_requests)) == (checks, sends)
    assert (mailout_row(conn, mailout_id)["status"], mailout_row(conn, mailout_id)["stop_reason"]) == (
        "failed", "account",
    )
    deployed_row = mailout_row(conn, deployed)
    assert (deployed_row["status"], deployed_row["stop_reason"]) == ("paused", "account")
    assert "SES refuses" in deployed_row["error"] or "disabled" in deployed_row["error"]
    assert auto_resumes(log) == 1  # the deployed one, once
