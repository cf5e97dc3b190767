"""Automatic resume, in this process (issue 14, item 1): the stop reasons a
run records, the watcher's rules and backoff with its clock injected (no
sleeping), a person's pause, and what `mailout status` and GET /mailouts/<id>
say. tests/test_auto_resume_processes.py runs it in real gunicorn processes.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from amazonsender import sender
from amazonsender.sender.stop import StopReason, next_resume_in, retry_delay
from amazonsender.sender.watch import Watcher, verdict
from amazonsender.transport import ErrorKind, SendError
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, take_rows
from tests.support.settings import SHARED_SECRET
from tests.support.sending import stopped

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def emails(n: int) -> list[str]:
    return [f"reader{i:02d}@example.org" for i in range(n)]


@pytest.fixture(autouse=True)
def fresh_stop_signal():
    sender.process_stop.clear()
    yield
    sender.process_stop.clear()


def db_now(conn) -> datetime:
    return conn.execute("SELECT now() AS t").fetchone()["t"]


def join(threads):
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


# --- the backoff, without sleeping ---------------------------------------------------------


def test_the_backoff_is_a_minute_doubling_up_to_an_hour():
    assert [retry_delay(n) for n in range(9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert retry_delay(10_000) == 3600
    assert next_resume_in(StopReason.THROTTLED, 2) == 240
    assert next_resume_in(StopReason.SHUTDOWN, 2) is None  # at once
    assert next_resume_in(StopReason.GUARD, 0) is None  # never


def row(status="paused", reason=None, **values):
    return {"status": status, "stop_reason": reason, "heartbeat_age_seconds": None, "next_resume_at": None,
            "auto_resume_attempts": 0, **values}


def test_the_verdict_on_each_kind_of_stop(settings):
    shutdown = verdict(row(reason="shutdown"), settings, NOW)
    assert shutdown.automatic and shutdown.due(NOW)
    later = verdict(row(reason="throttled", next_resume_at=NOW + timedelta(minutes=2), auto_resume_attempts=1),
                    settings, NOW)
    assert later.automatic and later.at == NOW + timedelta(minutes=2) and "attempt 2" in later.why
    assert not later.due(NOW) and later.due(NOW + timedelta(minutes=2))
    for reason in ("guard", "operator", "account", "circuit_breaker", "unwritable", "internal_error", None):
        found = verdict(row("failed", reason), settings, NOW)
        assert not found.automatic and found.at is None and found.why, reason
    assert "person paused" in verdict(row(reason="operator"), settings, NOW).why
    # A run is sending it: not interrupted; its run gone: resumed now.
    assert verdict(row("sending", heartbeat_age_seconds=5.0), settings, NOW) is None
    stale = verdict(row("sending", heartbeat_age_seconds=settings.heartbeat_stale_seconds + 1.0), settings, NOW)
    assert stale.due(NOW) and "no heartbeat" in stale.why
    for status in ("draft", "ready", "sent"):
        assert verdict(row(status), settings, NOW) is None
    off = verdict(row(reason="shutdown"), settings.__class__(**{**settings.__dict__, "auto_resume": False}), NOW)
    assert not off.automatic and "AUTO_RESUME is off" in off.why


# --- the watcher, its clock injected ----------------------------------------------------------


def test_a_shutdown_pause_resumes_at_once_and_finishes(pool, conn, settings):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    transport = FakeTransport()
    join(Watcher(pool, transport, settings).check_once())
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"], row["auto_resume_attempts"]) == ("sent", None, 0)
    assert sorted(transport.sent) == sorted(ledger(conn, mailout_id))
    assert transport.asked == 1  # paced by the account, as `mailout resume` is


def test_a_stop_that_heals_waits_for_its_backoff_and_each_attempt_is_recorded(pool, conn, settings):
    mailout_id = stopped(pool, conn, StopReason.THROTTLED)
    due = mailout_row(conn, mailout_id)["next_resume_at"]
    assert due == pytest.approx(db_now(conn) + timedelta(seconds=60), abs=timedelta(seconds=5))
    # SES still cannot be asked when the backoff ends: paused again, the
    # next attempt twice as far.
    transport = FakeTransport(account_error=SendError("could not connect", kind=ErrorKind.TRANSIENT))

    assert Watcher(pool, transport, settings, clock=lambda: due - timedelta(seconds=1)).check_once() == []
    assert mailout_row(conn, mailout_id)["status"] == "paused" and transport.asked == 0

    assert Watcher(pool, transport, settings, clock=lambda: due).check_once() == []
    first = mailout_row(conn, mailout_id)
    assert (first["status"], first["stop_reason"], first["auto_resume_attempts"]) == (
        "paused", "ses_unavailable", 1,
    )
    assert transport.asked == 1
    assert first["next_resume_at"] - first["heartbeat_at"] == timedelta(seconds=120)

    again = first["next_resume_at"]
    assert Watcher(pool, transport, settings, clock=lambda: again - timedelta(seconds=1)).check_once() == []
    Watcher(pool, transport, settings, clock=lambda: again).check_once()
    second = mailout_row(conn, mailout_id)
    assert second["auto_resume_attempts"] == 2
    assert second["next_resume_at"] - second["heartbeat_at"] == timedelta(seconds=240)

    # SES answers again: the next attempt finishes it, and the count starts over.
    healthy = FakeTransport()
    join(Watcher(pool, healthy, settings, clock=lambda: second["next_resume_at"]).check_once())
    done = mailout_row(conn, mailout_id)
    assert (done["status"], done["stop_reason"], done["auto_resume_attempts"]) == ("sent", None, 0)
    assert len(healthy.sent) == 6


@pytest.mark.parametrize(
    "reason", [StopReason.GUARD, StopReason.OPERATOR, StopReason.ACCOUNT, StopReason.CIRCUIT_BREAKER,
               StopReason.UNWRITABLE, StopReason.INTERNAL_ERROR, None],
)
def test_what_waits_for_a_person_is_never_resumed(pool, conn, settings, reason):
    mailout_id = stopped(pool, conn, reason, status="failed")
    transport = FakeTransport()
    watcher = Watcher(pool, transport, settings, clock=lambda: NOW + timedelta(days=365))
    assert watcher.check_once() == []
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"]) == ("failed", reason and reason.value)
    assert transport.calls == [] and transport.asked == 0


def test_a_refusing_account_ends_paused_as_account_and_is_not_tried_again(pool, conn, settings):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    transport = FakeTransport(account_error=SendError("SendingPausedException", kind=ErrorKind.ACCOUNT))
    assert Watcher(pool, transport, settings).check_once() == []
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"], row["next_resume_at"]) == ("paused", "account", None)
    assert "SES refuses this account" in row["error"]
    for _ in range(3):
        assert Watcher(pool, transport, settings, clock=lambda: NOW + timedelta(days=1)).check_once() == []
    assert transport.asked == 1 and transport.calls == []


def test_a_stale_run_is_resumed_its_rows_in_flight_marked_unknown(pool, conn, settings):
    add_subscribers(conn, emails(5))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    with pool.connection() as c:
        take_rows(c, mailout_id, 2)  # a dead run's batch in flight
        c.execute("UPDATE mailouts SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (mailout_id,))
    transport = FakeTransport()
    join(Watcher(pool, transport, settings).check_once())
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert sorted(ledger(conn, mailout_id).values()) == ["sent"] * 3 + ["unknown"] * 2
    assert len(transport.sent) == 3


def test_a_live_run_is_left_alone(pool, conn, settings):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    sender.claim_mailout(pool, mailout_id)
    assert Watcher(pool, FakeTransport(), settings).check_once() == []
    assert mailout_row(conn, mailout_id)["status"] == "sending"


def test_two_watchers_at_once_resume_a_mailout_once(pool, conn, settings):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN, n=20)
    transport = FakeTransport()
    watchers = [Watcher(pool, transport, settings) for _ in range(4)]
    barrier = threading.Barrier(len(watchers))
    started = []

    def check(watcher):
        barrier.wait()
        started.extend(watcher.check_once())

    threads = [threading.Thread(target=check, args=(w,)) for w in watchers]
    for thread in threads:
        thread.start()
    join(threads)
    assert len(started) == 1
    join(started)
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert sorted(transport.sent) == sorted(ledger(conn, mailout_id))  # each once


def test_nothing_is_resumed_once_the_process_is_stopping(pool, conn, settings):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    sender.request_stop("SIGTERM")
    assert Watcher(pool, FakeTransport(), settings).check_once() == []
    assert mailout_row(conn, mailout_id)["status"] == "paused"


# --- the reasons runs record ---------------------------------------------------------------------


def test_a_stopping_process_records_shutdown_and_ctrl_c_records_operator(pool, conn, settings):
    for code, expected in ((StopReason.SHUTDOWN, "shutdown"), (StopReason.OPERATOR, "operator")):
        add_subscribers(conn, [f"{expected}{i}@example.org" for i in range(3)])
        mailout_id = add_mailout(conn)
        claim = sender.claim_mailout(pool, mailout_id)
        stop = sender.StopSignal()
        stop.request("SIGINT" if code is StopReason.OPERATOR else "SIGTERM", code)
        sender.send_claimed_mailout(pool, FakeTransport(), settings, claim, stop=stop)
        row = mailout_row(conn, mailout_id)
        assert (row["status"], row["stop_reason"], row["next_resume_at"]) == ("paused", expected, None)


def test_an_account_error_mid_send_records_account(pool, conn, settings):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    refused = SendError("Sending paused for this account", kind=ErrorKind.ACCOUNT, code="SendingPausedException")
    sender.send_claimed_mailout(pool, FakeTransport(answer=lambda n, a: refused if n == 2 else None), settings, claim)
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"]) == ("failed", "account")


def test_the_database_refuses_a_word_outside_the_vocabulary(conn):
    import psycopg

    mailout_id = add_mailout(conn, status="paused")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE mailouts SET stop_reason = 'tired' WHERE id = %s", (mailout_id,))


# --- a person's pause -------------------------------------------------------------------------------


def test_a_pause_stops_a_running_run_after_the_emails_in_flight_and_stays(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    paused = {}

    def pause_after_the_first_batch(counts):
        if not paused:
            paused["was"] = sender.pause_mailout(pool, mailout_id)

    transport = FakeTransport()
    summary = sender.send_claimed_mailout(pool, transport, settings, claim, progress=pause_after_the_first_batch)

    assert paused["was"] == "sending"
    assert "a person paused it" in summary.error
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"]) == ("paused", "operator")
    assert "mailout resume" in row["error"]
    statuses = ledger(conn, mailout_id)
    assert set(statuses.values()) == {"sent", "queued"}  # nothing left 'sending'
    assert sorted(a for a, s in statuses.items() if s == "sent") == sorted(transport.sent)
    assert 0 < len(transport.sent) < 12

    # The watcher leaves it; a person's resume finishes it.
    assert Watcher(pool, transport, settings, clock=lambda: NOW + timedelta(days=1)).check_once() == []
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    assert sender.send_claimed_mailout(pool, transport, settings, resumed).status == "sent"
    assert sorted(transport.sent) == sorted(emails(12))


def test_only_a_mailout_under_way_can_be_paused(pool, conn):
    for status in ("draft", "ready", "sent"):
        with pytest.raises(sender.MailoutNotPausable):
            sender.pause_mailout(pool, add_mailout(conn, status=status))
    with pytest.raises(sender.MailoutNotFound):
        sender.pause_mailout(pool, __import__("uuid").uuid4())
    throttled = stopped(pool, conn, StopReason.THROTTLED)
    assert sender.pause_mailout(pool, throttled) == "paused"
    row = mailout_row(conn, throttled)
    assert (row["stop_reason"], row["next_resume_at"]) == ("operator", None)


def test_post_pause_needs_the_secret_and_get_says_why_it_stopped(client, pool, conn):
    mailout_id = stopped(pool, conn, StopReason.THROTTLED)
    url = f"/mailouts/{mailout_id}"
    auth = {"Authorization": f"Bearer {SHARED_SECRET}"}

    before = client.get(url, headers=auth).get_json()
    assert before["stop_reason"] == "throttled"
    assert before["auto_resume"]["automatic"] is True and before["auto_resume"]["at"]
    assert before["auto_resume_attempts"] == 0

    assert client.post(url + "/pause").status_code == 401
    answer = client.post(url + "/pause", headers=auth)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["was"] == "paused" and answer.get_json()["stop_reason"] == "operator"
    after = client.get(url, headers=auth).get_json()
    assert after["stop_reason"] == "operator"
    assert after["auto_resume"] == {"automatic": False, "at": None, "why": after["auto_resume"]["why"]}

    ready = add_mailout(conn)
    refused = client.post(f"/mailouts/{ready}/pause", headers=auth)
    assert refused.status_code == 409 and refused.get_json()["status"] == "ready"


def test_the_command_line_pauses_and_says_whether_it_resumes_by_itself(invoke, pool, conn):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    status = invoke("mailout", "status", mailout_id)
    assert "stopped    shutdown" in status.output
    assert "resumes by itself  yes, now" in status.output

    result = invoke("mailout", "pause", mailout_id)
    assert result.exit_code == 0, result.output
    assert "paused (was 'paused')" in result.output
    status = invoke("mailout", "status", mailout_id)
    assert "stopped    operator" in status.output
    assert "resumes by itself  no: a person paused it" in status.output

    refused = invoke("mailout", "pause", add_mailout(conn))
    assert refused.exit_code == 1 and "is 'ready'" in refused.output
