"""The reputation guard pauses a mailout mid-send when its bounces or
complaints pass the limits; and SES events of odd shapes never break parsing."""

from __future__ import annotations

import json
import re

import pytest

from amazonsender import events, sender
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import with_settings
from tests.support.sns_signing import ses_sample


def events_during_send(pool, samples: dict[int, str] | str, tagged=True):
    """An `on_call` hook for the fake transport: during the sends numbered in
    `samples` (1 = the first email sent; a single sample: every send) SES's
    event of that sample arrives at once, through the same code /ses-events
    uses."""

    def arrive(call):
        sample = samples.get(call.number) if isinstance(samples, dict) else samples
        if not sample:
            return
        tags = {"mailout_id": call.email.tags["mailout_id"]} if tagged else {}
        message = ses_sample(sample, address=call.address, ses_message_id=call.message_id, **tags)
        with pool.connection() as conn:
            events.process_notification(
                conn, {"Type": "Notification", "MessageId": f"sns-{call.message_id}", "Message": message}
            )

    return arrive


def bouncing_transport(pool, sample, victims) -> FakeTransport:
    """Sends, and after the sends numbered in `victims` makes SES's bounce or
    complaint event of `sample` arrive at once."""
    return FakeTransport(ids="ses-{n}", on_call=events_during_send(pool, dict.fromkeys(victims, sample)))


def addresses(n):
    return [f"r{i:04d}@list.example" for i in range(n)]


def run(pool, transport, settings, mailout_id):
    claim = sender.claim_mailout(pool, mailout_id)
    return sender.send_claimed_mailout(pool, transport, settings, claim)


def test_too_many_bounces_pause_the_mailout_and_keep_the_rest_queued(pool, conn, settings):
    everyone = addresses(400)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    # Every 10th recipient bounces: 10%, far above 4%.
    transport = bouncing_transport(pool, "bounce_permanent_event", range(10, 401, 10))
    settings = with_settings(settings, batch_size=50, guard_min_sent=200, max_bounce_rate=0.04)

    summary = run(pool, transport, settings, mailout_id)

    # The guard waits until 200 were sent, then stops at the next read: the
    # call in flight then (one at a time here) still goes.
    sent = len(transport.sent)
    assert sent in (200, 201)
    assert summary.status == "paused"
    assert summary.queued == 400 - sent and summary.sent == sent
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "paused"
    assert "bounce rate" in row["error"] and "MAX_BOUNCE_RATE" in row["error"]
    assert sorted(ledger(conn, mailout_id).values()).count("queued") == 400 - sent


def test_complaints_pause_the_mailout(pool, conn, settings):
    everyone = addresses(300)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    transport = bouncing_transport(pool, "complaint_event", [5])
    settings = with_settings(settings, batch_size=100, guard_min_sent=200, max_complaint_rate=0.001)

    summary = run(pool, transport, settings, mailout_id)

    # 1 complaint in 200 sent is 0.5%, above 0.1%.
    assert summary.status == "paused" and len(transport.sent) in (200, 201)  # and the call in flight
    assert "complaint rate" in mailout_row(conn, mailout_id)["error"]


def test_a_pause_is_logged_and_untagged_early_events_count(pool, conn, settings, caplog):
    everyone = addresses(40)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    transport = bouncing_transport(pool, "bounce_permanent_notification", range(1, 11))
    with caplog.at_level("ERROR"):
        run(pool, transport, with_settings(settings, batch_size=20, guard_min_sent=20), mailout_id)
    assert any("reputation guard" in r.getMessage() for r in caplog.records)
    # These notifications carry no mailout tag and arrived before their batch
    # was recorded: they were linked by SES message id afterwards.
    linked = conn.execute("SELECT DISTINCT mailout_id FROM ses_events").fetchall()
    assert [row["mailout_id"] for row in linked] == [mailout_id]


def test_a_last_batch_over_the_limit_ends_sent_not_paused(pool, conn, settings):
    everyone = addresses(250)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    # The complaint comes with the very last batch: nothing is left to protect.
    transport = bouncing_transport(pool, "complaint_event", [250])
    summary = run(pool, transport, with_settings(settings, batch_size=50, guard_min_sent=200), mailout_id)
    assert summary.status == "sent" and len(transport.sent) == 250


def test_bounces_below_the_minimum_sent_do_not_pause(pool, conn, settings):
    everyone = addresses(100)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    transport = bouncing_transport(pool, "bounce_permanent_event", range(1, 101, 2))
    summary = run(pool, transport, with_settings(settings, batch_size=25, guard_min_sent=200), mailout_id)
    assert summary.status == "sent" and len(transport.sent) == 100


def test_rates_under_the_limits_do_not_pause(pool, conn, settings):
    everyone = addresses(300)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    # 6 in 300 = 2% bounces; transient bounces do not count at all.
    transport = bouncing_transport(pool, "bounce_permanent_event", range(50, 301, 50))
    summary = run(pool, transport, with_settings(settings, batch_size=50, guard_min_sent=200), mailout_id)
    assert summary.status == "sent" and len(transport.sent) == 300


def test_transient_bounces_do_not_count_towards_the_bounce_rate(pool, conn, settings):
    everyone = addresses(250)
    add_subscribers(conn, everyone)
    mailout_id = add_mailout(conn)
    transport = bouncing_transport(pool, "bounce_transient_notification", range(5, 251, 5))
    summary = run(pool, transport, with_settings(settings, batch_size=50, guard_min_sent=200), mailout_id)
    assert summary.status == "sent"


@pytest.mark.parametrize(
    "message",
    [
        "",
        "[]",
        "null",
        json.dumps({"notificationType": 5}),
        json.dumps({"notificationType": "Bounce"}),
        json.dumps({"notificationType": "Bounce", "bounce": []}),
        json.dumps({"notificationType": "Bounce", "bounce": {"bouncedRecipients": "x@y"}}),
        json.dumps({"notificationType": "Bounce", "bounce": {"bouncedRecipients": [None, 5, {"emailAddress": 7}]}}),
        json.dumps({"eventType": "Delivery", "mail": {"tags": {"mailout_id": "not-a-list"}}}),
        json.dumps({"eventType": "Send", "mail": {"tags": {"mailout_id": ["nope"]}, "destination": [1]}}),
        json.dumps({"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "no-at"}]}}),
    ],
)
def test_odd_ses_payloads_parse_without_errors(message):
    event = events.parse_ses_event(message)
    assert event.addresses == []
    assert event.mailout_id is None


def test_bounce_address_with_a_display_name_is_reduced_to_the_address():
    message = json.dumps(
        {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent",
                                                  "bouncedRecipients": [{"emailAddress": "Ann <ann@x.org>"}]}}
    )
    assert events.parse_ses_event(message).addresses == ["ann@x.org"]


def test_a_delivery_that_arrives_before_its_batch_is_recorded_still_counts(pool, conn, settings):
    add_subscribers(conn, addresses(12))
    mailout_id = add_mailout(conn)
    # SES's Delivery event for each email arrives before its batch is recorded.
    early_delivery = FakeTransport(
        ids="ses-{n}", on_call=events_during_send(pool, "delivery_notification", tagged=False)
    )
    summary = run(pool, early_delivery, with_settings(settings, batch_size=5), mailout_id)
    assert summary.status == "sent"
    assert set(ledger(conn, mailout_id).values()) == {"delivered"}


def test_one_bounce_published_through_two_channels_is_applied_once(pool, conn):
    """Identity notifications and a configuration set both publish the same
    bounce: two SNS messages, one SES feedbackId."""
    add_subscribers(conn, ["ann@list.example"])
    message = ses_sample("bounce_transient_notification", address="ann@list.example", ses_message_id="m1")
    tagged = json.loads(message)
    tagged["eventType"] = tagged.pop("notificationType")
    for sns_id, body in (("sns-a", message), ("sns-b", json.dumps(tagged))):
        with pool.connection() as c:
            assert events.process_notification(c, {"Type": "Notification", "MessageId": sns_id, "Message": body})[0]
    row = conn.execute("SELECT soft_bounces FROM subscribers").fetchone()
    assert row["soft_bounces"] == 1
    assert conn.execute("SELECT count(*) AS n FROM ses_events").fetchone()["n"] == 2


def test_the_guard_counts_each_bounced_address_once(pool, conn, settings):
    from amazonsender import store

    add_subscribers(conn, ["ann@list.example"])
    mailout_id = add_mailout(conn)
    for n in range(3):
        message = ses_sample("bounce_permanent_event", address="ANN@list.example" if n else "ann@list.example",
                             ses_message_id=f"m{n}", mailout_id=mailout_id)
        body = json.loads(message)
        body["bounce"]["feedbackId"] = f"feedback-{n}"
        with pool.connection() as c:
            events.process_notification(c, {"Type": "Notification", "MessageId": f"sns-{n}",
                                            "Message": json.dumps(body)})
    assert store.reputation(conn, mailout_id)["bounces"] == 1


def test_rendering_failures_leave_the_guards_count_of_emails_sent(pool, conn, settings):
    """After three batches SES has taken 150 emails and sent only 100 (50
    Rendering Failures in the second batch): 7 bounces of 150 would be 4.7%,
    but of the 100 that went out they are 7%, above the limit."""
    add_subscribers(conn, addresses(300))
    mailout_id = add_mailout(conn)
    samples = {n: "bounce_permanent_event" for n in range(105, 136, 5)} | dict.fromkeys(
        range(51, 101), "rendering_failure_event"
    )

    transport = FakeTransport(ids="ses-{n}", on_call=events_during_send(pool, samples))
    settings = with_settings(settings, batch_size=50, guard_min_sent=100, max_bounce_rate=0.05)
    summary = run(pool, transport, settings, mailout_id)

    assert summary.status == "paused", summary
    # Looked at after 150 calls, give or take the one in flight (which still
    # goes): 100 sent and SES sent, one either way.
    counted = re.search(r"bounce rate \d+\.\d\d% \(7 of (\d+) sent\)", summary.error)
    assert counted and int(counted.group(1)) in (99, 100, 101), summary.error
    sent = len(transport.sent)
    assert sent in (150, 151)
    states = sorted(ledger(conn, mailout_id).values())
    assert states.count("failed") == 50 and states.count("queued") == 300 - sent
