"""Crash safety in one process: resume, heartbeats and run ownership, an
orderly stop, the circuit breaker, throttling, and the database going away,
against a real Postgres (no network: transports are test doubles, and the
command line talks to the local SES stand-in)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from uuid import uuid4

import pytest

from amazonsender import sender, store
from amazonsender.ses import ACCOUNT, RECIPIENT, THROTTLED, TRANSIENT, SendError
from tests.fakes import FakeClock, FakeTransport, FlakyPool
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, emails, send_order, take_rows
from tests.support.settings import with_settings

THROTTLE = SendError("TooManyRequestsException: Maximum sending rate exceeded.", kind=THROTTLED)


pytestmark = pytest.mark.usefixtures("no_stop_request")


def log_rows(conn, mailout_id) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT email, status, error_message, ses_message_id FROM send_logs WHERE mailout_id = %s", (mailout_id,)
    ).fetchall()
    return {row["email"]: row for row in rows}


def take_one_batch(pool, mailout_id, size) -> list[str]:
    """What a run does before its calls, committed: their rows are now
    'sending'. A process killed right after this leaves them so."""
    with pool.connection() as connection:
        recipients, _ = take_rows(connection, mailout_id, size)
    return [r.email for r in recipients]


def make_heartbeat_stale(conn, mailout_id, age="10 minutes"):
    conn.execute(
        "UPDATE mailouts SET heartbeat_at = now() - %s::interval WHERE id = %s", (age, mailout_id)
    )


def assert_nobody_twice(*address_lists):
    counts = Counter(a for addresses in address_lists for a in addresses)
    assert [a for a, n in counts.items() if n > 1] == []


# --- resume: which mailouts it takes ----------------------------------------------


def test_resume_of_an_unknown_mailout(pool, settings):
    with pytest.raises(sender.MailoutNotFound):
        sender.resume_mailout(pool, uuid4(), settings)


@pytest.mark.parametrize(
    "status, hint", [("draft", "draft"), ("ready", "mailout send"), ("sent", "finished")]
)
def test_resume_refuses_a_mailout_that_did_not_end_early(pool, conn, settings, status, hint):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn, status=status)

    with pytest.raises(sender.MailoutNotResumable) as caught:
        sender.resume_mailout(pool, mailout_id, settings)

    assert caught.value.status == status
    assert f"'{status}'" in str(caught.value) and hint in str(caught.value)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == status and row["runner_id"] is None
    assert ledger(conn, mailout_id) == {}


def test_resume_refuses_a_finished_mailout_and_sends_nothing(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    with pytest.raises(sender.MailoutNotResumable, match="finished"):
        sender.resume_mailout(pool, mailout_id, settings, force=True)

    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sent" and row["runner_id"] == claim.runner_id
    assert set(ledger(conn, mailout_id).values()) == {"sent"}


@pytest.mark.parametrize("status", ["failed", "paused"])
def test_resume_takes_a_failed_or_paused_mailout_and_sends_the_rest(
    pool, conn, settings, recording_transport, status
):
    add_subscribers(conn, emails(8))
    mailout_id = add_mailout(conn, subject="Autumn", body="<p>Leaves</p>")
    first = sender.claim_mailout(pool, mailout_id)
    conn.execute(
        "UPDATE mailouts SET status = %s, error = 'stopped early' WHERE id = %s", (status, mailout_id)
    )

    claim = sender.resume_mailout(pool, mailout_id, settings)

    assert claim.runner_id != first.runner_id
    assert (claim.subject, claim.body, claim.recipients, claim.in_doubt_marked) == ("Autumn", "<p>Leaves</p>", 8, 0)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["runner_id"] == claim.runner_id
    assert row["error"] is None and row["heartbeat_at"] is not None

    summary = sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    assert summary.status == "sent" and summary.sent == 8 and summary.in_doubt == 0
    assert sorted(recording_transport.addresses) == emails(8)


def test_resume_refuses_a_sending_mailout_whose_runner_is_alive_unless_forced(pool, conn, settings):
    add_subscribers(conn, emails(8))
    mailout_id = add_mailout(conn)
    live = claim_and_queue(pool, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, 3)
    make_heartbeat_stale(conn, mailout_id, "42 seconds")

    with pytest.raises(sender.RunnerAlive) as caught:
        sender.resume_mailout(pool, mailout_id, settings)

    assert 41 <= caught.value.age_seconds < 50
    assert re.search(r"last heartbeat 4\d s ago", str(caught.value))
    assert "--force" in str(caught.value)
    # Refused means untouched: the live run still owns it, its batch is not in doubt.
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["runner_id"] == live.runner_id
    assert [ledger(conn, mailout_id)[a] for a in in_flight] == ["sending"] * 3

    forced = sender.resume_mailout(pool, mailout_id, settings, force=True)

    assert forced.in_doubt_marked == 3
    assert mailout_row(conn, mailout_id)["runner_id"] == forced.runner_id


@pytest.mark.parametrize(
    "age, stale_seconds, taken",
    [("10 minutes", 120, True), ("60 seconds", 120, False), ("60 seconds", 30, True), ("3 seconds", 5, False)],
)
def test_a_sending_mailout_is_taken_without_force_once_its_heartbeat_is_stale(
    pool, conn, settings, age, stale_seconds, taken
):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    dead = sender.claim_mailout(pool, mailout_id)
    make_heartbeat_stale(conn, mailout_id, age)
    settings = with_settings(settings, heartbeat_stale_seconds=stale_seconds)

    if taken:
        claim = sender.resume_mailout(pool, mailout_id, settings)
        assert mailout_row(conn, mailout_id)["runner_id"] == claim.runner_id != dead.runner_id
    else:
        with pytest.raises(sender.RunnerAlive):
            sender.resume_mailout(pool, mailout_id, settings)
        assert mailout_row(conn, mailout_id)["runner_id"] == dead.runner_id


def test_a_sending_mailout_that_never_had_a_heartbeat_is_resumable(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    sender.claim_mailout(pool, mailout_id)
    conn.execute("UPDATE mailouts SET heartbeat_at = NULL WHERE id = %s", (mailout_id,))

    claim = sender.resume_mailout(pool, mailout_id, settings)
    summary = sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    assert summary.status == "sent" and sorted(recording_transport.addresses) == emails(3)


def test_two_resumes_at_once_exactly_one_wins(pool, conn, settings):
    add_subscribers(conn, emails(10))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, 4)
    conn.execute("UPDATE mailouts SET status = 'failed', error = 'crashed' WHERE id = %s", (mailout_id,))
    contenders = 8
    barrier = threading.Barrier(contenders)
    results = []

    def contend():
        barrier.wait()
        try:
            results.append(sender.resume_mailout(pool, mailout_id, settings))
        except (sender.RunnerAlive, sender.MailoutNotResumable) as exc:
            results.append(exc)

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [r for r in results if isinstance(r, sender.Claim)]
    assert len(results) == contenders
    assert len(winners) == 1
    assert mailout_row(conn, mailout_id)["runner_id"] == winners[0].runner_id
    # The rows in doubt were marked once, by the winner.
    assert winners[0].in_doubt_marked == 4
    states = ledger(conn, mailout_id)
    assert [states[a] for a in in_flight] == ["unknown"] * 4
    assert sorted(states.values()) == ["queued"] * 6 + ["unknown"] * 4


# --- resume: rows in doubt -----------------------------------------------------------


def test_rows_left_sending_become_unknown_and_are_never_sent_again(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, 5)
    assert in_flight == order[:5]
    conn.execute("UPDATE mailouts SET status = 'failed' WHERE id = %s", (mailout_id,))

    claim = sender.resume_mailout(pool, mailout_id, settings)

    assert claim.in_doubt_marked == 5
    rows = log_rows(conn, mailout_id)
    for address in in_flight:
        assert rows[address]["status"] == "unknown"
        assert "in doubt" in rows[address]["error_message"]

    summary = sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    assert summary.status == "sent"
    assert recording_transport.addresses == order[5:]
    assert summary.sent == 7 and summary.in_doubt == 5 and summary.queued == 0
    states = ledger(conn, mailout_id)
    assert summary.in_doubt == sum(1 for s in states.values() if s == "unknown")
    assert mailout_row(conn, mailout_id)["status"] == "sent"


def test_after_a_crash_resume_marks_the_batch_in_flight_unknown_and_sends_the_rest(
    pool, conn, settings, recording_transport
):
    """The process died after committing a batch as 'sending' (kill -9 while
    it was sending): the mailout is still 'sending' and its heartbeat goes stale."""
    add_subscribers(conn, emails(13))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, settings.batch_size)
    make_heartbeat_stale(conn, mailout_id)

    claim = sender.resume_mailout(pool, mailout_id, settings)
    summary = sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    assert claim.in_doubt_marked == len(in_flight) == settings.batch_size
    assert recording_transport.addresses == order[len(in_flight):]
    assert set(recording_transport.addresses).isdisjoint(in_flight)
    states = ledger(conn, mailout_id)
    assert {a: states[a] for a in in_flight} == {a: "unknown" for a in in_flight}
    assert summary.status == "sent" and summary.in_doubt == len(in_flight)
    assert summary.sent == 13 - len(in_flight)


def test_after_an_unexpected_error_the_failed_mailout_resumes_without_resending(pool, conn, settings):
    add_subscribers(conn, emails(9))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)

    def crash(number, address):
        if number == 5:
            raise RuntimeError("disk on fire")

    first = FakeTransport(answer=crash)
    summary = sender.send_claimed_mailout(pool, first, with_settings(settings, batch_size=3), claim)
    assert summary.status == "failed" and "disk on fire" in summary.error

    second = FakeTransport()
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    summary = sender.send_claimed_mailout(pool, second, settings, resumed)

    # The fifth email (order[4]) was in its SES call when the error hit: in
    # doubt. The rest of its batch went back to the queue, so the resume
    # has nothing to mark and sends them.
    assert resumed.in_doubt_marked == 0
    assert second.sent == order[5:]
    assert_nobody_twice(first.sent, second.sent)
    assert summary.status == "sent" and summary.in_doubt == 1 and summary.sent == 8


# --- heartbeats and run ownership ------------------------------------------------------


def test_a_run_writes_a_heartbeat_at_each_read(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    claimed_at = mailout_row(conn, mailout_id)["heartbeat_at"]
    beats = []

    sender.send_claimed_mailout(
        pool, recording_transport, settings, claim,
        progress=lambda counts: beats.append(mailout_row(conn, mailout_id)["heartbeat_at"]),
    )

    # Progress is reported once a read (after the heartbeat the read writes).
    assert len(beats) >= 2
    assert claimed_at < beats[0] and all(a < b for a, b in zip(beats, beats[1:]))


def test_a_forced_resume_between_batches_stops_the_old_run(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    old = sender.claim_mailout(pool, mailout_id)
    takeover = {}

    def take_over_after_the_first_batch(counts):
        if "claim" not in takeover:
            takeover["claim"] = sender.resume_mailout(pool, mailout_id, settings, force=True)

    old_summary = sender.send_claimed_mailout(
        pool, recording_transport, settings, old, progress=take_over_after_the_first_batch
    )

    new = takeover["claim"]
    assert "another run took" in old_summary.error
    # The old run stopped at its next call: one call at a time, so at most
    # the one in flight at the takeover was left in doubt.
    assert 0 < len(recording_transport.addresses) < 12
    assert new.in_doubt_marked <= 1
    row = mailout_row(conn, mailout_id)
    # The old run did not finish the mailout: it belongs to the new run.
    assert row["status"] == "sending" and row["runner_id"] == new.runner_id and row["sent_at"] is None
    assert old_summary.status == "sending"

    new_summary = sender.send_claimed_mailout(pool, recording_transport, settings, new)

    assert new_summary.status == "sent" and new_summary.sent == 12 and new_summary.in_doubt == 0
    assert sorted(recording_transport.addresses) == emails(12)


def test_a_forced_resume_during_a_batch_stops_the_old_run_and_nobody_is_sent_twice(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    old = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    takeover = {}
    # The takeover happens while the old run sends the 3rd email.
    old_transport = FakeTransport(
        hooks={3: lambda: takeover.setdefault("claim", sender.resume_mailout(pool, mailout_id, settings, force=True))}
    )

    old_summary = sender.send_claimed_mailout(pool, old_transport, settings, old)

    new = takeover["claim"]
    assert "another run took" in old_summary.error
    # The old run finished the call it had in flight, and made no other:
    # only that call's row was in doubt at the takeover.
    assert old_transport.sent == order[:3]
    assert new.in_doubt_marked == 1
    assert mailout_row(conn, mailout_id)["runner_id"] == new.runner_id

    new_transport = FakeTransport()
    new_summary = sender.send_claimed_mailout(pool, new_transport, settings, new)

    assert new_transport.sent == order[3:]
    assert_nobody_twice(old_transport.sent, new_transport.sent)
    assert sorted(old_transport.sent + new_transport.sent) == emails(12)
    assert new_summary.status == "sent"
    states = ledger(conn, mailout_id)
    # The old run's answer for the 3rd replaced the takeover's 'unknown'.
    assert [states[a] for a in order] == ["sent"] * 12
    assert new_summary.in_doubt == sum(1 for s in states.values() if s == "unknown")


def test_an_operator_pausing_the_mailout_by_hand_stops_the_run_at_its_next_call(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)

    def pause_by_hand():
        conn.execute(
            "UPDATE mailouts SET status = 'paused', error = 'paused by the editor' WHERE id = %s", (mailout_id,)
        )

    # Paused while the 7th email is being sent.
    transport = FakeTransport(hooks={7: pause_by_hand})
    summary = sender.send_claimed_mailout(pool, transport, settings, claim)

    assert transport.sent == order[:7]
    assert summary.status == "paused" and summary.error
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "paused" and row["error"] == "paused by the editor"
    states = ledger(conn, mailout_id)
    # The call in flight was recorded; nothing else was marked.
    assert [states[a] for a in order] == ["sent"] * 7 + ["queued"] * 5

    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed)

    assert resumed.in_doubt_marked == 0
    assert rest.sent == order[7:]
    assert final.status == "sent" and final.sent == 12


# --- an orderly stop -------------------------------------------------------------


@pytest.mark.parametrize("stop_at", [7, 5, 1])
def test_a_stop_request_pauses_after_the_email_in_flight(pool, conn, settings, stop_at):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    stop = sender.StopSignal()
    transport = FakeTransport(hooks={stop_at: stop.set})

    summary = sender.send_claimed_mailout(pool, transport, settings, claim, stop=stop)

    assert transport.sent == order[:stop_at]
    assert summary.status == "paused"
    assert (summary.sent, summary.queued, summary.in_doubt, summary.failed) == (stop_at, 12 - stop_at, 0, 0)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "paused" and row["sent_at"] is None
    assert "resume" in row["error"] and str(mailout_id) in row["error"]
    states = ledger(conn, mailout_id)
    assert [states[a] for a in order] == ["sent"] * stop_at + ["queued"] * (12 - stop_at)

    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed, stop=sender.StopSignal())

    assert resumed.in_doubt_marked == 0
    assert rest.sent == order[stop_at:]
    assert final.status == "sent" and final.sent == 12 and final.in_doubt == 0


def test_request_stop_pauses_every_run_of_the_process(pool, conn, settings):
    """What the SIGTERM handlers call; send_claimed_mailout listens to it by default."""
    add_subscribers(conn, emails(8))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    transport = FakeTransport(hooks={2: lambda: sender.request_stop("SIGTERM")})

    summary = sender.send_claimed_mailout(pool, transport, settings, claim)

    assert len(transport.sent) == 2
    assert summary.status == "paused" and "stop" in summary.error
    assert sorted(ledger(conn, mailout_id).values()) == ["queued"] * 6 + ["sent"] * 2


def test_a_run_asked_to_stop_before_it_starts_sends_nothing(pool, conn, settings):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    stop = sender.StopSignal()
    stop.set()
    transport = FakeTransport()

    summary = sender.send_claimed_mailout(pool, transport, settings, claim, stop=stop)

    assert transport.calls == []
    assert summary.status == "paused" and summary.queued == 3
    assert set(ledger(conn, mailout_id).values()) == {"queued"}


# --- the circuit breaker -----------------------------------------------------------


def reject_everyone(number, address):
    return SendError(f"MessageRejected: {address} rejected", kind=RECIPIENT)


@pytest.mark.parametrize("batch_size", [5, 3, 7])
def test_the_circuit_breaker_stops_after_max_failures_in_a_row(pool, conn, settings, batch_size):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    transport = FakeTransport(answer=reject_everyone)
    settings = with_settings(settings, max_consecutive_failures=5, batch_size=batch_size)

    summary = sender.send_claimed_mailout(pool, transport, settings, claim)

    assert transport.calls == order[:5]
    assert summary.status == "failed" and "failures in a row" in summary.error
    assert (summary.failed, summary.queued, summary.sent) == (5, 7, 0)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "failed" and "failures in a row" in row["error"] and "resume" in row["error"]
    states = ledger(conn, mailout_id)
    assert [states[a] for a in order] == ["failed"] * 5 + ["queued"] * 7

    # Resumed once the cause is fixed: the failed ones are not retried.
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed)
    assert rest.sent == order[5:]
    assert final.status == "sent" and final.failed == 5 and final.sent == 7


def test_ses_unavailable_for_every_send_pauses_for_the_automatic_resume_and_loses_nobody(pool, conn, settings):
    # Issue 14: the breaker counts recipients that failed after their
    # transient retries; when every failure in the row was SES unavailable,
    # SES never took them: they go back to the queue and the mailout pauses
    # as `ses_unavailable`, which the watcher retries with backoff.
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    transport = FakeTransport(answer=lambda n, a: SendError("InternalFailure: 500", kind=TRANSIENT))
    settings = with_settings(settings, max_consecutive_failures=5)

    summary = sender.send_claimed_mailout(pool, transport, settings, claim, sleep=lambda s: None)

    assert len(transport.calls) == 5 * sender.TRANSIENT_ATTEMPTS
    assert len(set(transport.calls)) == 5
    assert summary.status == "paused" and summary.failed == 0 and summary.queued == 12
    row = mailout_row(conn, mailout_id)
    assert row["stop_reason"] == "ses_unavailable" and row["next_resume_at"] is not None
    assert "SES unavailable" in row["error"]

    # SES is back: the resume sends everyone, once.
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed)
    assert sorted(rest.sent) == sorted(emails(12)) and final.status == "sent" and final.failed == 0


def test_a_row_of_failures_that_is_not_all_ses_unavailable_stays_the_circuit_breakers(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)

    def answer(number, address):
        if address == order[0]:
            return SendError(f"MessageRejected: {address} rejected", kind=RECIPIENT)
        return SendError("InternalFailure: 500", kind=TRANSIENT)

    settings = with_settings(settings, max_consecutive_failures=5)
    summary = sender.send_claimed_mailout(pool, FakeTransport(answer=answer), settings, claim, sleep=lambda s: None)

    assert summary.status == "failed" and summary.failed == 5 and summary.queued == 7
    assert mailout_row(conn, mailout_id)["stop_reason"] == "circuit_breaker"


def fail_except(successes):
    def errors(number, address):
        if number not in successes:
            return SendError(f"MessageRejected: {address} rejected", kind=RECIPIENT)
        return None

    return errors


def test_a_success_in_between_resets_the_count(pool, conn, settings):
    add_subscribers(conn, emails(9))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    # fail 4, succeed 1, fail 4
    transport = FakeTransport(answer=fail_except({5}))

    summary = sender.send_claimed_mailout(
        pool, transport, with_settings(settings, max_consecutive_failures=5), claim
    )

    assert len(transport.calls) == 9
    assert summary.status == "sent" and summary.failed == 8 and summary.sent == 1


def test_after_a_reset_the_count_starts_again_from_zero(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    # fail 4, succeed 1, fail 5 -> stop after the 10th call
    transport = FakeTransport(answer=fail_except({5}))

    summary = sender.send_claimed_mailout(
        pool, transport, with_settings(settings, max_consecutive_failures=5), claim
    )

    assert len(transport.calls) == 10
    assert summary.status == "failed" and (summary.failed, summary.sent, summary.queued) == (9, 1, 2)


# --- throttling -------------------------------------------------------------------


def test_pacer_slow_down_halves_the_rate_for_a_while_then_recovers():
    clock = FakeClock()
    pacer = sender.Pacer(4, clock=clock, sleep=clock.sleep)
    pacer.wait()
    assert clock.now == 100.0

    pacer.slow_down()
    assert pacer.current_rate == pytest.approx(2)
    released = [100.0]
    for _ in range(6):
        pacer.wait()
        released.append(clock.now)
    # The slot granted before the slow-down still holds...
    assert released[1] == pytest.approx(100 + 0.25 * sender.PACE_MARGIN)
    # ...and from then on no window of PACE_MARGIN seconds (the releases
    # before the slow-down included) holds more than the halved rate, 2.
    for index in range(2, len(released)):
        assert released[index] - released[index - 2] >= sender.PACE_MARGIN - 1e-9
    # Once the window allows, evenly at 2/s, 1% slower (PACE_MARGIN).
    gaps = [later - earlier for earlier, later in zip(released[2:], released[3:])]
    assert gaps == pytest.approx([0.5 * sender.PACE_MARGIN] * len(gaps))

    pacer.slow_down()
    pacer.slow_down()
    pacer.slow_down()  # at most THROTTLE_MAX_SLOWDOWN times slower
    assert pacer.current_rate == pytest.approx(4 / sender.THROTTLE_MAX_SLOWDOWN)

    # Within THROTTLE_SLOWDOWN_SECONDS of the last slow-down: still slow.
    clock.now += sender.THROTTLE_SLOWDOWN_SECONDS - 1
    pacer.wait()
    before = clock.now
    pacer.wait()
    assert clock.now - before == pytest.approx(sender.THROTTLE_MAX_SLOWDOWN / 4 * sender.PACE_MARGIN)

    # Afterwards the pace recovers.
    clock.now += sender.THROTTLE_SLOWDOWN_SECONDS
    pacer.wait()
    before = clock.now
    pacer.wait()
    assert clock.now - before == pytest.approx(0.25 * sender.PACE_MARGIN)
    assert pacer.current_rate == pytest.approx(4)


def test_a_throttled_email_is_sent_again_and_the_pace_drops(pool, conn, settings):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    transport = FakeTransport(answer=lambda n, a: THROTTLE if n in (2, 3) else None)
    clock = FakeClock()
    pacer = sender.Pacer(settings.rate_limit_per_sec, clock=clock, sleep=clock.sleep)
    sleeps = []

    summary = sender.send_claimed_mailout(pool, transport, settings, claim, sleep=sleeps.append, pacer=pacer)

    assert transport.calls == [order[0], order[1], order[1], order[1], order[2], order[3]]
    assert transport.sent == order
    assert summary.status == "sent" and summary.failed == 0
    assert len(sleeps) == 2
    assert pacer.current_rate == pytest.approx(settings.rate_limit_per_sec / 4)


def test_a_transport_that_throttles_forever_pauses_the_mailout_and_fails_nobody(pool, conn, settings):
    add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    transport = FakeTransport(answer=lambda n, a: THROTTLE if n > 2 else None)
    clock = FakeClock()
    pacer = sender.Pacer(settings.rate_limit_per_sec, clock=clock, sleep=clock.sleep)
    sleeps = []

    summary = sender.send_claimed_mailout(pool, transport, settings, claim, sleep=sleeps.append, pacer=pacer)

    assert transport.calls == order[:2] + [order[2]] * (sender.THROTTLE_ATTEMPTS + 1)
    assert summary.status == "paused" and summary.failed == 0
    assert "throttl" in summary.error
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "paused" and "resume" in row["error"]
    states = ledger(conn, mailout_id)
    assert [states[a] for a in order] == ["sent"] * 2 + ["queued"] * 4
    # One wait per throttle, each within [ceiling/2, ceiling], the ceiling
    # doubling up to BACKOFF_MAX_SECONDS.
    assert len(sleeps) == sender.THROTTLE_ATTEMPTS
    ceilings = [
        min(sender.BACKOFF_MAX_SECONDS, sender.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        for attempt in range(1, sender.THROTTLE_ATTEMPTS + 1)
    ]
    for waited, ceiling in zip(sleeps, ceilings):
        assert ceiling / 2 <= waited <= ceiling
    assert sleeps[0] < sleeps[2] < sleeps[4]
    assert len({round(w / c, 9) for w, c in zip(sleeps, ceilings)}) > 1  # jitter, not a fixed schedule
    assert pacer.current_rate == pytest.approx(settings.rate_limit_per_sec / sender.THROTTLE_MAX_SLOWDOWN)

    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed)
    assert rest.sent == order[2:]
    assert final.status == "sent" and final.sent == 6


# --- the database going away --------------------------------------------------------


def fake_pacer(settings):
    clock = FakeClock()
    return sender.Pacer(settings.rate_limit_per_sec, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("when", ["recording a call", "reading"])
def test_a_lost_database_is_retried_and_the_run_completes(pool, conn, settings, when):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    flaky = FlakyPool(pool)
    refusals = 4

    def go_away():
        flaky.refusals = refusals

    if when == "recording a call":
        transport = FakeTransport(hooks={7: go_away})
        progress = None
    else:
        # Progress comes once a read, after its guard: the next thing is a read.
        gone = []
        transport = FakeTransport()
        progress = lambda counts: gone or counts["sent"] < 5 or gone.append(go_away())  # noqa: E731
    sleeps = []

    summary = sender.send_claimed_mailout(
        flaky, transport, settings, claim, sleep=sleeps.append, pacer=fake_pacer(settings), progress=progress
    )

    assert flaky.refused == refusals
    assert summary.status == "sent" and summary.sent == 12
    assert sorted(transport.sent) == emails(12) and len(transport.calls) == 12
    assert set(ledger(conn, mailout_id).values()) == {"sent"}
    # A backoff wait after each refusal.
    assert len(sleeps) == refusals
    for attempt, waited in enumerate(sleeps, 1):
        ceiling = min(sender.BACKOFF_MAX_SECONDS, sender.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        assert ceiling / 2 <= waited <= ceiling


@pytest.mark.parametrize("statement", [0, 1, 2])
def test_a_connection_lost_halfway_through_taking_a_batch_is_rolled_back_and_redone(
    pool, conn, settings, statement
):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    flaky = FlakyPool(pool)
    transport = FakeTransport()

    def break_the_next_take(counts):
        if counts["sent"] == 5:
            # count() runs after the record: the next unit of work is take_batch.
            flaky.statements_left = statement

    summary = sender.send_claimed_mailout(
        flaky, transport, settings, claim, sleep=lambda s: None, pacer=fake_pacer(settings),
        progress=break_the_next_take,
    )

    assert summary.status == "sent" and summary.sent == 12 and summary.in_doubt == 0
    assert sorted(transport.sent) == emails(12) and len(transport.calls) == 12
    assert set(ledger(conn, mailout_id).values()) == {"sent"}


def test_when_the_database_stays_away_the_run_stops_and_the_ledger_shows_what_left(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    flaky = FlakyPool(pool)
    # The database goes for good while the 7th email is sent.
    transport = FakeTransport(hooks={7: lambda: setattr(flaky, "refusals", 10**9)})

    summary = sender.send_claimed_mailout(
        flaky, transport, with_settings(settings, db_retry_seconds=0), claim,
        sleep=lambda s: None, pacer=fake_pacer(settings),
    )

    assert summary.error.startswith("database unreachable")
    assert summary.status != "sent"
    # The 7th left (the database is only needed again to record it), and no other call was made.
    assert transport.sent == order[:7]
    assert summary.sent == 6  # what this run could record

    # The real database, afterwards: exactly what left is visible, and only
    # the call in flight is in doubt.
    flaky.refusals = 0
    states = ledger(conn, mailout_id)
    assert [states[a] for a in order] == ["sent"] * 6 + ["sending"] + ["queued"] * 5
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["runner_id"] == claim.runner_id

    make_heartbeat_stale(conn, mailout_id)
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    rest = FakeTransport()
    final = sender.send_claimed_mailout(pool, rest, settings, resumed)

    assert resumed.in_doubt_marked == 1
    assert rest.sent == order[7:]
    assert_nobody_twice(transport.sent, rest.sent)
    assert final.status == "sent" and final.in_doubt == 1 and final.sent == 11


def test_a_lost_answer_to_the_commit_of_a_batch_drops_nobody(pool, conn, settings):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    flaky = FlakyPool(pool)
    transport = FakeTransport()

    def lose_the_answer_to_the_next_take(counts):
        if counts["sent"] == 5:
            flaky.lose_next_commit_answer = True

    summary = sender.send_claimed_mailout(
        flaky, transport, settings, claim, sleep=lambda s: None, pacer=fake_pacer(settings),
        progress=lose_the_answer_to_the_next_take,
    )

    # Those rows were marked 'sending' but never handed to SES: nobody may be
    # dropped, so either they are sent or the mailout stays resumable.
    never_sent = set(emails(12)) - set(transport.sent)
    assert never_sent == set() or summary.status != "sent"


def test_status_of_a_finished_mailout_counts_rows_left_sending_as_in_doubt(pool, conn, invoke):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    take_one_batch(pool, mailout_id, 2)
    conn.execute("UPDATE send_logs SET status = 'unknown' WHERE mailout_id = %s AND status = 'queued'"
                 " AND email = (SELECT min(email) FROM send_logs WHERE mailout_id = %s AND status = 'queued')",
                 (mailout_id, mailout_id))
    conn.execute("UPDATE mailouts SET status = 'sent' WHERE id = %s", (mailout_id,))

    lines = status_lines(invoke("mailout", "status", mailout_id).stdout)

    assert lines["status"] == "sent"
    assert lines["next"].startswith("nothing") and "3 in doubt" in lines["next"]


def test_when_the_database_is_away_at_the_start_nothing_is_sent(pool, conn, settings):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    flaky = FlakyPool(pool)
    flaky.refusals = 10**9
    transport = FakeTransport()

    summary = sender.send_claimed_mailout(
        flaky, transport, with_settings(settings, db_retry_seconds=0), claim, sleep=lambda s: None
    )

    assert transport.calls == []
    assert summary.error.startswith("database unreachable")
    assert set(ledger(conn, mailout_id).values()) == {"queued"}


# --- the command line: `mailout status` and `mailout resume` ------------------------------

def status_lines(output: str) -> dict[str, str]:
    lines = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(" ")
        lines.setdefault(key, value.strip())
    return lines


def test_status_of_a_failed_mailout_shows_counts_error_and_resume(pool, conn, settings, invoke):
    add_subscribers(conn, emails(8))
    mailout_id = add_mailout(conn, subject="Winter news")
    claim = sender.claim_mailout(pool, mailout_id)
    transport = FakeTransport(
        answer=lambda n, a: SendError("SendingPausedException: account paused", kind=ACCOUNT) if n == 4 else None
    )
    sender.send_claimed_mailout(pool, transport, with_settings(settings, batch_size=3), claim)

    result = invoke("mailout", "status", mailout_id)

    assert result.exit_code == 0, result.output
    lines = status_lines(result.stdout)
    assert lines["mailout"] == str(mailout_id)
    assert lines["subject"] == "Winter news"
    assert lines["status"] == "failed"
    assert lines["recipients"] == "8"
    assert lines["sent"] == "3" and lines["queued"] == "5"
    assert re.fullmatch(r"\d+ s ago", lines["heartbeat"])
    assert "SendingPausedException" in lines["error"]
    assert f"mailout resume {mailout_id}" in lines["next"]


def test_status_of_a_paused_mailout_names_resume(pool, conn, invoke):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    conn.execute("UPDATE mailouts SET status = 'paused', error = 'interrupted' WHERE id = %s", (mailout_id,))

    lines = status_lines(invoke("mailout", "status", mailout_id).stdout)

    assert lines["status"] == "paused" and lines["queued"] == "3" and lines["error"] == "interrupted"
    assert f"mailout resume {mailout_id}" in lines["next"]


def test_status_of_a_sending_mailout_with_a_stale_heartbeat_names_resume(pool, conn, invoke):
    add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    take_one_batch(pool, mailout_id, 4)
    make_heartbeat_stale(conn, mailout_id)

    lines = status_lines(invoke("mailout", "status", mailout_id).stdout)

    assert lines["status"] == "sending"
    assert lines["sending"] == "4" and lines["queued"] == "2"
    age = int(lines["heartbeat"].split()[0])
    assert 600 <= age < 660
    assert "gone" in lines["next"] and f"mailout resume {mailout_id}" in lines["next"]


def test_status_of_a_sending_mailout_with_a_fresh_heartbeat_says_wait(pool, conn, invoke):
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    sender.claim_mailout(pool, mailout_id)

    lines = status_lines(invoke("mailout", "status", mailout_id).stdout)

    assert lines["status"] == "sending"
    assert lines["next"].startswith("wait")
    assert "resume" not in lines["next"]


def test_status_of_a_sending_mailout_that_never_had_a_heartbeat_names_resume(pool, conn, invoke, settings):
    """Set to 'sending' by hand: resume takes it without --force, so status must not say wait."""
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn, status="sending")

    lines = status_lines(invoke("mailout", "status", mailout_id).stdout)

    assert lines["heartbeat"] == "never"
    assert f"mailout resume {mailout_id}" in lines["next"]
    sender.resume_mailout(pool, mailout_id, settings)  # and indeed it does


def test_status_of_an_unknown_mailout(invoke):
    result = invoke("mailout", "status", uuid4())
    assert result.exit_code != 0 and "no mailout" in result.output


def test_cli_resume_refuses_a_live_run_and_names_force(pool, conn, invoke, standin):
    add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)
    live = claim_and_queue(pool, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, 2)

    result = invoke("mailout", "resume", mailout_id)

    assert result.exit_code != 0
    assert "--force" in result.output and "heartbeat" in result.output
    assert [r for r in standin.requests if r.is_send] == []
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["runner_id"] == live.runner_id
    assert [ledger(conn, mailout_id)[a] for a in in_flight] == ["sending"] * 2


def test_cli_resume_with_force_takes_over_and_finishes(pool, conn, invoke, standin):
    add_subscribers(conn, emails(9))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    in_flight = take_one_batch(pool, mailout_id, 4)

    result = invoke("mailout", "resume", mailout_id, "--force")

    assert result.exit_code == 0, result.output
    assert "5 still queued, 4 were in flight" in result.output
    summary = json_tail(result.stdout)
    assert summary["status"] == "sent" and summary["sent"] == 5 and summary["in_doubt"] == 4
    assert [r.to_addresses[0] for r in standin.sent] == order[4:]
    states = ledger(conn, mailout_id)
    assert {states[a] for a in in_flight} == {"unknown"}
    assert mailout_row(conn, mailout_id)["status"] == "sent"


def test_cli_resume_of_a_failed_mailout_needs_no_force(pool, conn, invoke, standin):
    add_subscribers(conn, emails(5))
    mailout_id = add_mailout(conn)
    sender.claim_mailout(pool, mailout_id)
    conn.execute("UPDATE mailouts SET status = 'failed', error = 'account paused' WHERE id = %s", (mailout_id,))

    result = invoke("mailout", "resume", mailout_id)

    assert result.exit_code == 0, result.output
    assert json_tail(result.stdout)["status"] == "sent"
    assert sorted(r.to_addresses[0] for r in standin.sent) == emails(5)


@pytest.mark.parametrize("status", ["ready", "sent", "draft"])
def test_cli_resume_refuses_what_is_not_resumable(conn, invoke, standin, status):
    mailout_id = add_mailout(conn, status=status)
    result = invoke("mailout", "resume", mailout_id)
    assert result.exit_code != 0 and f"'{status}'" in result.output
    assert mailout_row(conn, mailout_id)["status"] == status


def json_tail(stdout: str) -> dict:
    """The JSON summary a send or resume prints last."""
    return json.loads(stdout[stdout.index("{"):])


def test_a_long_batch_keeps_its_heartbeat_fresh(pool, conn, settings):
    """A slow batch (a low pace, throttling backoff) writes heartbeats between
    emails, so a resume cannot mistake the live run for a dead one."""
    add_subscribers(conn, emails(8))
    mailout_id = add_mailout(conn)
    seen = []

    def note_heartbeat(call):
        row = conn.execute("SELECT heartbeat_at FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()
        seen.append(row["heartbeat_at"])

    claim = sender.claim_mailout(pool, mailout_id)
    fast_beats = with_settings(settings, batch_size=8, heartbeat_stale_seconds=0.4)
    summary = sender.send_claimed_mailout(pool, FakeTransport(latency=0.1, on_call=note_heartbeat), fast_beats, claim)
    assert summary.status == "sent"
    # One batch of 8 emails, 0.1 s each: the heartbeat moved during it.
    assert len(set(seen)) >= 3


def test_a_final_outcome_and_a_requeue_replace_unknown(pool, conn, settings):
    """A run that lost its mailout to a resume knows what became of its
    batch: 'queued' means SES never took the email, so the row goes back to
    the queue rather than stay 'unknown' and never be sent (issue 14: a
    person's pause then `mailout resume` must lose nobody)."""
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    taken = take_one_batch(pool, mailout_id, 3)
    conn.execute("UPDATE send_logs SET status = 'unknown' WHERE mailout_id = %s", (mailout_id,))
    ids = {r["email"]: r["id"] for r in conn.execute("SELECT email, id FROM send_logs")}
    with pool.connection() as c:
        store.record_outcomes(
            c,
            mailout_id,
            [
                store.Outcome(ids[taken[0]], "sent", ses_message_id="m-1"),
                store.Outcome(ids[taken[1]], "failed", error="rejected"),
                store.Outcome(ids[taken[2]], "queued"),
            ],
        )
    assert ledger(conn, mailout_id) == {taken[0]: "sent", taken[1]: "failed", taken[2]: "queued"}


def test_the_heartbeat_goes_on_while_a_call_blocks(pool, conn, settings):
    """A single slow SES answer (or pacing wait, or backoff) does not let the
    heartbeat go stale: a thread of the run writes it."""
    add_subscribers(conn, emails(1))
    mailout_id = add_mailout(conn)
    beats = []

    def block(call):
        for _ in range(6):
            time.sleep(0.15)
            row = conn.execute("SELECT heartbeat_at FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()
            beats.append(row["heartbeat_at"])

    claim = sender.claim_mailout(pool, mailout_id)
    summary = sender.send_claimed_mailout(
        pool, FakeTransport(on_call=block), with_settings(settings, heartbeat_stale_seconds=0.4), claim
    )
    assert summary.status == "sent"
    assert len(set(beats)) >= 3
