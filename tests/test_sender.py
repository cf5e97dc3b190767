"""The sender: claim, snapshot, batches, pacing and outcomes, against a real
Postgres with a recording transport (moto where SES itself matters)."""

from __future__ import annotations

import email
import email.policy
import random
import threading
import time
from uuid import uuid4

import pytest

from amazonsender import sender
from amazonsender.ses import ACCOUNT, IN_DOUBT, RECIPIENT, THROTTLED, TRANSIENT, SendError
from tests.fakes import FakeClock, FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, emails, max_in_any_second, queue_everyone, take_rows
from tests.support.settings import with_settings


def run(pool, transport, settings, mailout_id, **kwargs):
    claim = sender.claim_mailout(pool, mailout_id)
    return sender.send_claimed_mailout(pool, transport, settings, claim, **kwargs)


# --- the claim -------------------------------------------------------------


def test_claim_moves_ready_to_sending_and_its_pages_queue_active_subscribers(pool, conn):
    add_subscribers(conn, emails(3))
    add_subscribers(conn, ["gone@list.example"], status="unsubscribed")
    add_subscribers(conn, ["bad@list.example"], status="bounced")
    mailout_id = add_mailout(conn)

    claim = sender.claim_mailout(pool, mailout_id)

    assert claim.recipients == 3
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending"
    assert row["recipients"] == 3
    assert row["started_at"] is not None
    # The claim only counts them; the run queues them, page by page.
    assert row["queuing"] and ledger(conn, mailout_id) == {}

    queue_everyone(pool, claim, page_size=2)

    row = mailout_row(conn, mailout_id)
    assert not row["queuing"] and row["recipients"] == 3 and row["queued_rows"] == 3
    assert ledger(conn, mailout_id) == {address: "queued" for address in emails(3)}


@pytest.mark.parametrize("status", ["draft", "sending", "sent", "failed", "paused"])
def test_claim_refuses_a_mailout_that_is_not_ready(pool, conn, status):
    add_subscribers(conn, emails(2))
    mailout_id = add_mailout(conn, status=status)
    with pytest.raises(sender.MailoutNotReady) as caught:
        sender.claim_mailout(pool, mailout_id)
    assert caught.value.status == status
    assert mailout_row(conn, mailout_id)["status"] == status
    assert ledger(conn, mailout_id) == {}


def test_claim_of_unknown_mailout(pool):
    with pytest.raises(sender.MailoutNotFound):
        sender.claim_mailout(pool, uuid4())


@pytest.mark.parametrize("subject, body", [("  ", "<p>x</p>"), ("Hi", " \n ")])
def test_claim_refuses_an_empty_subject_or_body_and_changes_nothing(pool, conn, subject, body):
    add_subscribers(conn, emails(1))
    mailout_id = add_mailout(conn, subject=subject, body=body)
    with pytest.raises(sender.MailoutInvalid):
        sender.claim_mailout(pool, mailout_id)
    assert mailout_row(conn, mailout_id)["status"] == "ready"
    assert ledger(conn, mailout_id) == {}


def test_simultaneous_claims_exactly_one_wins(pool, conn):
    add_subscribers(conn, emails(20))
    mailout_id = add_mailout(conn)
    contenders = 8
    barrier = threading.Barrier(contenders)
    results = []

    def contend():
        barrier.wait()
        try:
            results.append(claim_and_queue(pool, mailout_id))
        except sender.MailoutNotReady as exc:
            results.append(exc)

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [r for r in results if isinstance(r, sender.Claim)]
    losers = [r for r in results if isinstance(r, sender.MailoutNotReady)]
    assert len(winners) == 1 and len(losers) == contenders - 1
    assert all(loser.status == "sending" for loser in losers)
    assert conn.execute("SELECT count(*) AS n FROM send_logs").fetchone()["n"] == 20


def test_a_sent_mailout_set_back_to_ready_by_hand_sends_nobody_twice(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    run(pool, recording_transport, settings, mailout_id)
    add_subscribers(conn, ["late@list.example"])
    conn.execute("UPDATE mailouts SET status = 'ready' WHERE id = %s", (mailout_id,))

    summary = run(pool, recording_transport, settings, mailout_id)

    assert sorted(recording_transport.addresses) == sorted([*emails(4), "late@list.example"])
    assert summary.status == "sent"


# --- sending ---------------------------------------------------------------


def test_every_active_subscriber_gets_exactly_one_email_in_batches(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(23))
    mailout_id = add_mailout(conn)

    summary = run(pool, recording_transport, with_settings(settings, batch_size=5), mailout_id)

    assert sorted(recording_transport.addresses) == emails(23)
    assert summary.status == "sent" and summary.sent == 23 and summary.failed == 0
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sent" and row["sent_at"] is not None and row["error"] is None
    rows = conn.execute("SELECT status, ses_message_id FROM send_logs WHERE mailout_id = %s", (mailout_id,))
    rows = rows.fetchall()
    assert {r["status"] for r in rows} == {"sent"}
    assert len({r["ses_message_id"] for r in rows}) == 23


def test_a_row_is_marked_sending_and_committed_before_its_email_leaves(pool, conn, settings):
    add_subscribers(conn, emails(7))
    mailout_id = add_mailout(conn)
    seen = {}

    def check(call):
        # A separate connection sees only committed data.
        row = conn.execute(
            "SELECT status FROM send_logs WHERE mailout_id = %s AND email = %s",
            (mailout_id, call.address),
        ).fetchone()
        seen[call.address] = row["status"]

    run(pool, FakeTransport(on_call=check), with_settings(settings, batch_size=3), mailout_id)

    assert seen == {address: "sending" for address in emails(7)}
    assert set(ledger(conn, mailout_id).values()) == {"sent"}


def test_recipients_who_left_after_the_claim_are_skipped(pool, conn, settings, recording_transport):
    ids = add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    conn.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE id = %s", (ids[1],))
    conn.execute("UPDATE subscribers SET status = 'bounced' WHERE id = %s", (ids[2],))
    conn.execute("DELETE FROM subscribers WHERE id = %s", (ids[3],))

    summary = sender.send_claimed_mailout(pool, recording_transport, settings, claim)

    assert sorted(recording_transport.addresses) == [emails(6)[i] for i in (0, 4, 5)]
    assert summary.skipped == 3 and summary.sent == 3 and summary.status == "sent"
    rows = conn.execute(
        "SELECT email, error_message FROM send_logs WHERE mailout_id = %s AND status = 'skipped'",
        (mailout_id,),
    ).fetchall()
    errors = {row["email"]: row["error_message"] for row in rows}
    assert errors == {
        emails(6)[1]: "subscriber is unsubscribed",
        emails(6)[2]: "subscriber is bounced",
        emails(6)[3]: "subscriber is deleted",
    }


def test_one_recipients_error_is_recorded_and_the_mailout_goes_on(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(5))
    recording_transport.failures[emails(5)[2]] = SendError("MessageRejected: bad address", kind=RECIPIENT)
    mailout_id = add_mailout(conn)

    summary = run(pool, recording_transport, with_settings(settings, batch_size=2), mailout_id)

    assert summary.status == "sent" and summary.sent == 4 and summary.failed == 1
    row = conn.execute(
        "SELECT status, error_message FROM send_logs WHERE email = %s", (emails(5)[2],)
    ).fetchone()
    assert row["status"] == "failed" and "bad address" in row["error_message"]


def test_an_account_wide_error_stops_the_run_and_keeps_the_rest_queued(pool, conn, settings, recording_transport):
    add_subscribers(conn, emails(10))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = [
        r["email"]
        for r in conn.execute("SELECT email FROM send_logs WHERE mailout_id = %s ORDER BY id", (mailout_id,))
    ]
    # The 6th email (second batch of 4) hits a paused account.
    recording_transport.failures[order[5]] = SendError("SendingPausedException: paused", kind=ACCOUNT)

    summary = sender.send_claimed_mailout(pool, recording_transport, with_settings(settings, batch_size=4), claim)

    assert recording_transport.addresses == order[:5]
    assert summary.status == "failed" and "SendingPausedException" in summary.error
    assert summary.sent == 5 and summary.queued == 5 and summary.failed == 0
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "failed" and "SendingPausedException" in row["error"]
    assert row["sent_at"] is None
    states = ledger(conn, mailout_id)
    assert [states[a] for a in order] == ["sent"] * 5 + ["queued"] * 5


def test_throttling_is_retried_with_backoff_and_never_recorded_as_a_failure(pool, conn, settings):
    add_subscribers(conn, emails(3))
    throttle = SendError("TooManyRequestsException: Maximum sending rate exceeded.", kind=THROTTLED)
    transport = FakeTransport(failures={emails(3)[1]: [throttle, throttle]})
    sleeps = []
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id, sleep=sleeps.append)

    assert summary.status == "sent" and summary.sent == 3 and summary.failed == 0
    assert transport.calls.count(emails(3)[1]) == 3
    backoffs = [s for s in sleeps if s >= sender.BACKOFF_BASE_SECONDS / 2]
    assert len(backoffs) == 2 and backoffs[1] > backoffs[0] / 2


def test_transient_errors_are_retried_then_recorded(pool, conn, settings):
    add_subscribers(conn, emails(2))
    boom = SendError("InternalFailure: 500", kind=TRANSIENT)
    transport = FakeTransport(failures={emails(2)[0]: [boom] * 10, emails(2)[1]: [boom]})
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id, sleep=lambda seconds: None)

    assert transport.calls.count(emails(2)[0]) == sender.TRANSIENT_ATTEMPTS
    assert ledger(conn, mailout_id) == {emails(2)[0]: "failed", emails(2)[1]: "sent"}
    assert summary.status == "sent"


def test_an_email_in_doubt_is_recorded_unknown_and_never_sent_again(pool, conn, settings):
    add_subscribers(conn, emails(3))
    timeout = SendError("no answer from SES in time: Read timeout", kind=IN_DOUBT)
    transport = FakeTransport(failures={emails(3)[1]: [timeout]})
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id, sleep=lambda seconds: None)

    assert transport.calls.count(emails(3)[1]) == 1
    assert ledger(conn, mailout_id)[emails(3)[1]] == "unknown"
    assert summary.status == "sent" and summary.in_doubt == 1 and summary.sent == 2


def test_an_unexpected_crash_ends_failed_with_only_the_email_in_flight_in_doubt(pool, conn, settings):
    add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)

    crashing = FakeTransport(answer=lambda number, address: RuntimeError("disk on fire") if number == 4 else None)
    summary = run(pool, crashing, with_settings(settings, batch_size=3), mailout_id)

    assert summary.status == "failed" and "disk on fire" in summary.error
    states = sorted(ledger(conn, mailout_id).values())
    # The first batch is recorded. Of the second, the email whose SES call
    # crashed may or may not have left, so it is never sent again
    # automatically; the two no call carried go back to the queue.
    assert states == ["queued"] * 2 + ["sent"] * 3 + ["unknown"]
    assert summary.in_doubt == 1 and summary.queued == 2


# --- the message that leaves -------------------------------------------------


def test_messages_through_moto_carry_name_footer_and_unsubscribe_headers(pool, conn, settings, ses_transport, moto_ses):
    add_subscribers(conn, ["ann@list.example", "bob@list.example"], names={"ann@list.example": "Ann Example"})
    mailout_id = add_mailout(conn, subject="Spring news", body="<html><body><p>Hello</p></body></html>")

    run(pool, ses_transport, settings, mailout_id)

    parsed = {
        m.destinations["ToAddresses"][0] if isinstance(m.destinations, dict) else m.destinations[0]: (
            email.message_from_bytes(
                m.raw_data.encode() if isinstance(m.raw_data, str) else m.raw_data, policy=email.policy.default
            )
        )
        for m in moto_ses.sent_messages
    }
    assert set(parsed) == {"ann@list.example", "bob@list.example"}
    ann = parsed["ann@list.example"]
    assert ann["To"] == "Ann Example <ann@list.example>"
    assert parsed["bob@list.example"]["To"] == "bob@list.example"
    assert ann["Subject"] == "Spring news"
    assert ann["Reply-To"] == "editor@example.test"
    assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = ann["List-Unsubscribe"]
    assert link.startswith("<https://news.example.test/unsubscribe?token=") and link.endswith(">")
    html_part = ann.get_body(("html",)).get_content()
    text_part = ann.get_body(("plain",)).get_content()
    assert link[1:-1] in html_part and link[1:-1] in text_part
    assert html_part.index("Unsubscribe") < html_part.index("</body>")
    # Each recipient has their own link.
    assert parsed["bob@list.example"]["List-Unsubscribe"] != link


# --- pacing ----------------------------------------------------------------


def test_pacing_never_exceeds_the_rate_in_any_second(pool, conn, settings, recording_transport):
    rate = 20
    add_subscribers(conn, emails(45))
    mailout_id = add_mailout(conn)

    started = time.monotonic()
    run(pool, recording_transport, with_settings(settings, rate_limit_per_sec=rate, batch_size=7), mailout_id)
    elapsed = time.monotonic() - started

    assert len(recording_transport.times) == 45
    assert max_in_any_second(recording_transport.times) <= rate
    # Spaced evenly: 45 sends at 20/s need at least 44 intervals of 50 ms.
    assert elapsed >= 44 / rate
    # Never closer than the catch-up pace allows after a batch boundary.
    gaps = [b - a for a, b in zip(recording_transport.times, recording_transport.times[1:])]
    assert min(gaps) >= 0.95 * sender.PACE_MARGIN / sender.CATCH_UP / rate


def test_pacer_spaces_sends_and_allows_no_burst_after_idle_time():
    clock = FakeClock()
    pacer = sender.Pacer(4, clock=clock, sleep=clock.sleep)
    sends = []
    for _ in range(5):
        pacer.wait()
        sends.append(clock.now)
    step = 0.25 * sender.PACE_MARGIN  # 1/rate, 1% wider
    assert sends == pytest.approx([100.0 + i * step for i in range(5)])
    clock.now += 10  # idle: a bucket with capacity would now allow a burst
    for _ in range(3):
        pacer.wait()
        sends.append(clock.now)
    assert sends[5:] == pytest.approx([sends[4] + 10, sends[4] + 10 + step, sends[4] + 10 + 2 * step])


def releases(pacer, clock, count, *, emails=1, stall_every=None, stall=0.0):
    """Release times of `count` waits; the caller stalls `stall` seconds
    after every `stall_every` waits (a batch boundary)."""
    times = []
    for index in range(1, count + 1):
        pacer.wait(emails)
        times.extend([clock.now] * emails)
        if stall_every and index % stall_every == 0:
            clock.now += stall
    return times


def test_pacer_makes_up_a_short_stall_without_passing_the_rate_in_any_second():
    clock = FakeClock()
    rate = 50
    pacer = sender.Pacer(rate, clock=clock, sleep=clock.sleep)
    # A 60 ms stall after every 50 emails, as a batch boundary at 40 ms SES
    # latency costs: without catching up the pace would lose ~6%.
    times = releases(pacer, clock, 500, stall_every=50, stall=0.06)
    assert max_in_any_second(times) <= rate
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved == pytest.approx(rate / sender.PACE_MARGIN, rel=0.02)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= sender.PACE_MARGIN / rate / sender.CATCH_UP - 1e-9


def test_pacer_does_not_make_up_a_long_stall():
    clock = FakeClock()
    pacer = sender.Pacer(10, clock=clock, sleep=clock.sleep)
    times = releases(pacer, clock, 5)
    clock.now += sender.CATCH_UP_SECONDS + 1
    times += releases(pacer, clock, 4)
    step = sender.PACE_MARGIN / 10
    assert [b - a for a, b in zip(times[5:], times[6:])] == pytest.approx([step] * 3)


def test_pacer_counts_every_email_of_a_bulk_call():
    clock = FakeClock()
    pacer = sender.Pacer(50, clock=clock, sleep=clock.sleep)
    times = releases(pacer, clock, 40, emails=5)
    assert max_in_any_second(times) <= 50
    calls = sorted(set(times))
    # Five emails are five slots: one call every 5 × 1.01 / 50 seconds.
    assert [b - a for a, b in zip(calls, calls[1:])] == pytest.approx([5 * sender.PACE_MARGIN / 50] * 39)


@pytest.mark.parametrize("rate", [0.5, 6, 14.5, 20])
def test_pacer_window_holds_at_any_rate_with_random_stalls(rate):
    clock = FakeClock()
    pacer = sender.Pacer(rate, clock=clock, sleep=clock.sleep)
    rng = random.Random(rate)
    times = []
    for _ in range(120):
        pacer.wait()
        times.append(clock.now)
        clock.now += rng.choice([0, 0, 0.001, 0.03, 0.2, 0.7])
    assert max_in_any_second(times) <= max(1, int(rate))


def test_an_error_text_postgres_cannot_hold_is_recorded_with_replacement_characters(pool, conn, settings):
    """An SES answer or an exception may quote a NUL or a lone surrogate:
    the outcome is recorded all the same, those characters as U+FFFD."""
    from amazonsender import store

    add_subscribers(conn, ["ann@example.org"])
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    with pool.connection() as c:
        [recipient], _ = take_rows(c, mailout_id, 10)
        store.record_outcomes(c, mailout_id, [store.Outcome(recipient.log_id, "failed", error="bad\x00 \ud800 x")])
    row = conn.execute("SELECT status, error_message FROM send_logs").fetchone()
    assert (row["status"], row["error_message"]) == ("failed", "bad\ufffd \ufffd x")


@pytest.mark.parametrize("delays, widened", [((0.0, 0.05), 0.05), ((0.03, 0.03), 0.0)])
def test_the_window_widens_by_how_much_the_time_from_release_to_call_varied(delays, widened):
    """A call made 50 ms after its release, after one made at once, could
    reach SES less than a second after the call a window earlier: the next
    release waits those 50 ms more. A steady delay (a far database) changes
    nothing."""
    clock = FakeClock()
    clock.now = 100.0
    pacer = sender.Pacer(2, clock=clock, sleep=clock.sleep)
    first = pacer.wait()
    clock.now += delays[0]
    pacer.made(first)
    second = pacer.wait()
    clock.now += delays[1]
    pacer.made(second)
    third = pacer.wait()
    assert third == pytest.approx(first + sender.PACE_MARGIN + widened)


def test_a_call_let_through_is_not_held_up_by_the_next_one_waiting_for_its_slot():
    """`made` must not wait for the pacer's lock, which the next caller holds
    while it sleeps until its slot: the call would then go out together
    with the next one."""
    pacer = sender.Pacer(0.5)
    released = pacer.wait()
    waiting = threading.Thread(target=pacer.wait)
    waiting.start()
    time.sleep(0.05)  # the second caller now sleeps, holding the lock, for about two seconds
    done = threading.Event()
    threading.Thread(target=lambda: (pacer.made(released), done.set())).start()
    assert done.wait(1.5), "made() waited for the sleeping caller"
    waiting.join()
