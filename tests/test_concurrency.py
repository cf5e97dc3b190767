"""SEND_CONCURRENCY: several SES calls in flight, one pace, one ledger."""

from __future__ import annotations

import time
from collections import Counter

from amazonsender import sender
from amazonsender.ses import ACCOUNT, RECIPIENT, SendError
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import emails, max_in_any_second
from tests.support.settings import with_settings


def run(pool, transport, settings, mailout_id, **kwargs):
    claim = sender.claim_mailout(pool, mailout_id)
    return sender.send_claimed_mailout(pool, transport, settings, claim, **kwargs)


def test_calls_overlap_and_everyone_gets_one_email(pool, conn, settings):
    add_subscribers(conn, emails(40))
    mailout_id = add_mailout(conn)
    transport = FakeTransport(latency=0.05)
    started = time.monotonic()
    summary = run(pool, transport, with_settings(settings, send_concurrency=8, batch_size=20), mailout_id)
    elapsed = time.monotonic() - started
    assert summary.status == "sent" and summary.sent == 40
    assert sorted(transport.sent) == emails(40)
    assert 2 <= transport.most_in_flight <= 8
    assert elapsed < 40 * 0.05 / 2  # sequential would take 2 s
    assert set(ledger(conn, mailout_id).values()) == {"sent"}


def test_concurrent_sends_keep_the_pace(pool, conn, settings):
    add_subscribers(conn, emails(45))
    mailout_id = add_mailout(conn)
    transport = FakeTransport(latency=0.1)
    run(pool, transport, with_settings(settings, send_concurrency=8, rate_limit_per_sec=20, batch_size=15), mailout_id)
    assert len(transport.times) == 45
    assert max_in_any_second(transport.times) <= 20


def test_an_account_error_stops_new_sends_and_keeps_the_rest_queued(pool, conn, settings):
    add_subscribers(conn, emails(60))
    mailout_id = add_mailout(conn)
    paused = SendError("SendingPausedException: paused", kind=ACCOUNT)
    transport = FakeTransport(latency=0.02, answer=lambda number, address: paused if number == 8 else None)
    summary = run(pool, transport, with_settings(settings, send_concurrency=4, batch_size=60), mailout_id)
    assert summary.status == "failed" and "SendingPausedException" in summary.error
    states = Counter(ledger(conn, mailout_id).values())
    assert states["sent"] == len(transport.sent) and states["queued"] == 60 - len(transport.sent)
    assert "sending" not in states and "unknown" not in states
    # Calls already in flight may finish; nothing new starts after the error.
    assert len(transport.times) < 60
    assert Counter(transport.sent).most_common(1)[0][1] == 1

    transport.answer = None
    claim = sender.resume_mailout(pool, mailout_id, with_settings(settings, send_concurrency=4))
    resumed = sender.send_claimed_mailout(pool, transport, with_settings(settings, send_concurrency=4), claim)
    assert resumed.status == "sent"
    assert sorted(transport.sent) == emails(60)


def test_a_stop_request_pauses_with_nothing_in_doubt(pool, conn, settings):
    add_subscribers(conn, emails(50))
    mailout_id = add_mailout(conn)
    stop = sender.StopSignal()

    transport = FakeTransport(latency=0.02, hooks={11: stop.set})  # the stop comes as the 11th call starts
    summary = run(pool, transport, with_settings(settings, send_concurrency=4, batch_size=25), mailout_id, stop=stop)
    assert summary.status == "paused" and "resume" in mailout_row(conn, mailout_id)["error"]
    states = Counter(ledger(conn, mailout_id).values())
    assert set(states) <= {"sent", "queued"} and states["sent"] == len(transport.sent)


def test_the_circuit_breaker_works_under_concurrency(pool, conn, settings):
    add_subscribers(conn, emails(80))
    mailout_id = add_mailout(conn)
    rejected = SendError("MessageRejected: no", kind=RECIPIENT)
    transport = FakeTransport(latency=0.01, failures={address: rejected for address in emails(80)})
    summary = run(
        pool, transport, with_settings(settings, send_concurrency=4, max_consecutive_failures=10, batch_size=40),
        mailout_id,
    )
    assert summary.status == "failed" and "failures in a row" in summary.error
    states = Counter(ledger(conn, mailout_id).values())
    # At most the calls in flight when the tenth failure came in run past it.
    assert 10 <= states["failed"] <= 10 + 4
    assert states["queued"] == 80 - states["failed"]
