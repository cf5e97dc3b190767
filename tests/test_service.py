"""The service as production runs it: a real `gunicorn wsgi:app` process
(threaded workers, several processes), a real Postgres and the SES stand-in."""

from __future__ import annotations

import subprocess
import sys
import re
import time
from collections import Counter

import pytest
import requests

from tests.support.db import add_mailout, add_subscribers
from tests.support.settings import ROOT, SHARED_SECRET, UNSUBSCRIBE_SECRET
from tests.support.processes import (
    Server,
    clean_env,
    run_gunicorn,
    service_env,
    stop_process_group,
    wait_for_status,
)
from tests.support.ses_standin import SesStandIn
from tests.support.webhooks import at_once
from tests.support.settings import REQUIRED as REQUIRED_SETTINGS  # the start-up check must name them all


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        yield standin


@pytest.fixture
def service(database_url, ses, tmp_path):
    with run_gunicorn(service_env(tmp_path, database_url, ses), tmp_path) as server:
        yield server


def seed(conn, active=40):
    """`active` subscribers who must get the mailout, and some who must not."""
    emails = [f"Reader{i:02d}@Example.org" for i in range(active)]
    add_subscribers(conn, emails)
    add_subscribers(conn, ["gone@example.org"], status="unsubscribed")
    add_subscribers(conn, ["bounced@example.org"], status="bounced")
    return add_mailout(conn), emails


def race(server: Server, mailout_id, n=30, **body) -> list[requests.Response]:
    """POST /send-mailout for one mailout from `n` threads released at once."""
    # Each worker's connection pool starts with one connection and grows only
    # under load: without this, the claims would queue for a connection and
    # barely overlap, and a claim that is not atomic could go unnoticed.
    at_once(n, lambda: requests.get(server.url + "/healthz", timeout=10))

    def post():
        return requests.post(
            f"{server.url}/send-mailout",
            json={"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET, **body},
            timeout=30,
        )

    return at_once(n, post)


def split_winner(responses, winner_status):
    counts = Counter(r.status_code for r in responses)
    assert counts == {winner_status: 1, 409: len(responses) - 1}, [r.text for r in responses]
    [winner] = [r for r in responses if r.status_code == winner_status]
    for loser in responses:
        if loser is not winner:
            answer = loser.json()
            assert answer["status"] in ("sending", "sent")
            assert f"'{answer['status']}', not 'ready'" in answer["error"]
    return winner.json()


def assert_sent_exactly_once(conn, ses: SesStandIn, mailout_id, emails):
    addresses = [address for record in ses.sent for address in record.to_addresses]
    assert sorted(addresses) == sorted(emails)  # everyone active, nobody else, nobody twice
    assert all(record.status == 200 for record in ses.requests)  # no other call was made
    assert {record.tags["mailout_id"] for record in ses.sent} == {str(mailout_id)}

    rows = conn.execute(
        "SELECT email, status, ses_message_id FROM send_logs WHERE mailout_id = %s", (mailout_id,)
    ).fetchall()
    assert {row["status"] for row in rows} == {"sent"}
    assert {row["email"]: row["ses_message_id"] for row in rows} == {
        record.to_addresses[0]: record.message_id for record in ses.sent
    }


def test_simultaneous_webhooks_send_once_in_the_background(service, conn, ses):
    mailout_id, emails = seed(conn)

    accepted = split_winner(race(service, mailout_id), 202)

    assert accepted["mailout_id"] == str(mailout_id)
    assert accepted["recipients"] == len(emails)
    final = wait_for_status(service, mailout_id)
    assert final["counts"] == {"sent": len(emails)}
    assert final["recipients"] == len(emails)
    assert final["sent_at"] is not None
    assert_sent_exactly_once(conn, ses, mailout_id, emails)


def test_simultaneous_webhooks_with_wait_answer_the_summary(service, conn, ses):
    mailout_id, emails = seed(conn)

    summary = split_winner(race(service, mailout_id, wait=True), 200)

    # The answer came when the mailout was done: no polling needed.
    assert summary["mailout_id"] == str(mailout_id)
    assert summary["status"] == "sent"
    assert (summary["recipients"], summary["sent"], summary["failed"]) == (len(emails), len(emails), 0)
    assert (summary["queued"], summary["in_doubt"], summary["error"]) == (0, 0, None)
    assert conn.execute("SELECT status FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()["status"] == "sent"
    assert_sent_exactly_once(conn, ses, mailout_id, emails)


def test_production_refuses_to_start_without_settings(tmp_path):
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app"],
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        stop_process_group(proc)

    assert proc.returncode != 0
    assert time.monotonic() - started < 10
    assert stderr.count("cannot start") == 1, stderr  # one message, not one per worker
    message = stderr[stderr.index("cannot start") :]
    missing = [name for name in REQUIRED_SETTINGS if name not in message]
    assert missing == [], stderr
    assert "Booting worker" not in stdout + stderr  # refused before any worker ran


SECRETS = (SHARED_SECRET, UNSUBSCRIBE_SECRET, "standin-secret-key")


def test_healthz_is_503_when_the_database_is_unreachable(ses, tmp_path):
    database_url = "postgresql://postgres:db-password-123@127.0.0.1:1/x"
    env = service_env(tmp_path, database_url, ses)
    # "/" needs no database: it only tells that gunicorn is serving.
    with run_gunicorn(env, tmp_path, ready_path="/", ready_status=None) as server:
        response = requests.get(server.url + "/healthz", timeout=10)

    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["status"] != "ok"
    for secret in (*SECRETS, "db-password-123", database_url):
        assert secret not in response.text


def test_healthz_is_200_when_the_database_answers(service, database_url):
    response = requests.get(service.url + "/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    for secret in (*SECRETS, database_url):
        assert secret not in response.text


def test_the_access_log_has_the_path_and_status_but_never_the_token(service):
    token = "secret-token-value.abc"
    response = requests.post(service.url + f"/unsubscribe?token={token}", timeout=10)
    assert response.status_code == 400  # not a token we made
    requests.get(service.url + "/healthz?probe=1", timeout=10)

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and '"GET /healthz" 200' not in service.log():
        time.sleep(0.05)
    log = service.log()
    assert re.search(r'127\.0\.0\.1 "POST /unsubscribe" 400 \d+ \d+ms', log), log
    assert re.search(r'127\.0\.0\.1 "GET /healthz" 200 \d+ \d+ms', log), log
    assert token not in log and "probe" not in log


def test_a_worker_freezes_what_it_loaded_and_keeps_log_records_lean():
    # In a process of its own: the hook freezes the garbage collector's
    # objects, changes logging's globals and replaces the SIGTERM handler,
    # none of which should touch the test run.
    script = """
import gc, logging, runpy, signal
hooks = runpy.run_path("gunicorn.conf.py")
assert gc.get_freeze_count() == 0 and logging._srcfile is not None
hooks["post_worker_init"](object())
print(gc.get_freeze_count(), signal.getsignal(signal.SIGTERM).__name__, logging._srcfile, logging.logThreads)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    frozen, handler, srcfile, log_threads = result.stdout.split()
    assert int(frozen) > 1000
    assert handler == "on_sigterm"
    assert (srcfile, log_threads) == ("None", "False")
