"""POST /ses-events end to end: signed SNS envelopes in, subscriber statuses
and the events table out, against a real Postgres."""

from __future__ import annotations

import json

import pytest

from amazonsender import create_app, store
from tests.support.db import add_mailout, add_subscribers, ledger
from tests.support.settings import SHARED_SECRET, with_settings
from tests.support.sns_signing import CERT_URL, OTHER_TOPIC_ARN, SUBSCRIBE_URL, ses_sample

ANN = "ann@list.example"


def post(client, envelope, content_type="text/plain; charset=UTF-8"):
    # SNS posts JSON as text/plain.
    return client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": content_type})


def subscriber(conn, email=ANN) -> dict:
    return conn.execute("SELECT * FROM subscribers WHERE email = %s", (email,)).fetchone()


def events_table(conn) -> list[dict]:
    return conn.execute("SELECT * FROM ses_events ORDER BY received_at").fetchall()


def deliver(client, signer, sample, version="1", message_id=None, **values):
    values.setdefault("address", ANN)
    values.setdefault("ses_message_id", "0100-ses-id")
    values.setdefault("mailout_id", "00000000-0000-0000-0000-000000000000")
    envelope = signer.envelope(ses_sample(sample, **values), version=version, message_id=message_id)
    return post(client, envelope)


# --- bounces -----------------------------------------------------------------


@pytest.mark.parametrize("sample", ["bounce_permanent_notification", "bounce_permanent_event"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_permanent_bounce_suppresses_the_address(sns_client, sns_signer, conn, sent_mailout, sample, version):
    response = deliver(sns_client, sns_signer, sample, version=version, mailout_id=sent_mailout)

    assert response.status_code == 200 and response.json["status"] == "processed"
    row = subscriber(conn)
    assert row["status"] == "bounced"
    assert row["bounce_type"] == "Permanent"
    assert row["bounce_subtype"] in ("General", "NoEmail")
    assert row["status_updated_at"] is not None
    (event,) = events_table(conn)
    assert event["event_type"] == "Bounce" and event["addresses"] == [ANN]
    assert event["ses_message_id"] == "0100-ses-id"
    # Linked by the tag (event publishing) or by the SES id in send_logs.
    assert event["mailout_id"] == sent_mailout
    assert event["payload"]["bounce"]["bounceType"] == "Permanent"


def test_a_bounce_for_an_address_in_another_case_is_matched(sns_client, sns_signer, conn, sent_mailout):
    deliver(sns_client, sns_signer, "bounce_permanent_notification", address="ANN@List.Example")
    assert subscriber(conn)["status"] == "bounced"


@pytest.mark.parametrize(
    "history, final_status, soft_bounces",
    [
        (["transient"], "active", 1),
        (["transient", "transient"], "active", 2),
        (["transient", "transient", "transient"], "bounced", 3),
        (["transient", "undetermined", "transient"], "bounced", 3),
        (["transient", "transient", "delivery", "transient", "transient"], "active", 2),
        (["transient", "delivery", "transient", "transient", "transient"], "bounced", 3),
    ],
)
def test_three_soft_bounces_in_a_row_suppress_and_a_delivery_resets(
    sns_client, sns_signer, conn, sent_mailout, history, final_status, soft_bounces
):
    samples = {
        "transient": "bounce_transient_notification",
        "undetermined": "bounce_undetermined_event",
        "delivery": "delivery_notification",
    }
    for step in history:
        assert deliver(sns_client, sns_signer, samples[step]).status_code == 200
    row = subscriber(conn)
    assert row["status"] == final_status
    assert row["soft_bounces"] == soft_bounces
    if final_status == "bounced":
        assert row["status_reason"] == "3 transient bounces in a row"


# --- complaints, deliveries and the rest --------------------------------------------


@pytest.mark.parametrize("sample", ["complaint_notification", "complaint_event"])
def test_a_complaint_means_never_again(sns_client, sns_signer, conn, sent_mailout, sample):
    deliver(sns_client, sns_signer, sample, mailout_id=sent_mailout)
    row = subscriber(conn)
    assert row["status"] == "complained"
    assert row["status_reason"] == "complaint: abuse"
    assert row["status_updated_at"] is not None


@pytest.mark.parametrize("sample", ["delivery_notification", "delivery_event"])
def test_a_delivery_marks_the_ledger_row_delivered(sns_client, sns_signer, conn, sent_mailout, sample):
    deliver(sns_client, sns_signer, sample, mailout_id=sent_mailout)
    row = conn.execute("SELECT status FROM send_logs WHERE mailout_id = %s", (sent_mailout,)).fetchone()
    assert row["status"] == "delivered"
    assert subscriber(conn)["status"] == "active"


def test_a_delivery_with_another_ses_id_changes_no_ledger_row(sns_client, sns_signer, conn, sent_mailout):
    deliver(sns_client, sns_signer, "delivery_notification", ses_message_id="0100-other")
    row = conn.execute("SELECT status FROM send_logs WHERE mailout_id = %s", (sent_mailout,)).fetchone()
    assert row["status"] == "sent"


@pytest.mark.parametrize("sample, event_type", [
    ("send_event", "Send"),
    ("reject_event", "Reject"),
    ("delivery_delay_event", "DeliveryDelay"),
])
def test_other_events_are_recorded_and_change_nothing(sns_client, sns_signer, conn, sent_mailout, sample, event_type):
    before = subscriber(conn)
    response = deliver(sns_client, sns_signer, sample, mailout_id=sent_mailout)
    assert response.status_code == 200
    assert subscriber(conn) == before
    (event,) = events_table(conn)
    assert event["event_type"] == event_type and event["mailout_id"] == sent_mailout
    assert event["addresses"] == [ANN]


def test_events_for_unknown_addresses_are_recorded_and_change_nothing(sns_client, sns_signer, conn, sent_mailout):
    before = conn.execute("SELECT * FROM subscribers ORDER BY id").fetchall()
    for sample in ("bounce_permanent_notification", "complaint_notification", "delivery_notification"):
        response = deliver(sns_client, sns_signer, sample, address="stranger@else.example", ses_message_id="x")
        assert response.status_code == 200
    assert conn.execute("SELECT * FROM subscribers ORDER BY id").fetchall() == before
    assert len(events_table(conn)) == 3


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
@pytest.mark.parametrize(
    "sample", ["bounce_permanent_notification", "complaint_notification", "delivery_notification",
               "bounce_transient_notification"]
)
def test_an_event_never_reactivates_or_relabels_anybody(sns_client, sns_signer, conn, status, sample):
    add_subscribers(conn, [ANN], status=status)
    before = subscriber(conn)
    deliver(sns_client, sns_signer, sample)
    after = subscriber(conn)
    assert after["status"] == status
    assert after["status_updated_at"] == before["status_updated_at"]


def test_a_non_ses_notification_is_recorded_as_unknown(sns_client, sns_signer, conn):
    response = post(sns_client, sns_signer.envelope("hello from the console", subject="test"))
    assert response.status_code == 200
    (event,) = events_table(conn)
    assert event["event_type"] == "Unknown"


# --- at least once: duplicates ------------------------------------------------------


def test_a_repeated_message_is_answered_200_and_changes_nothing(sns_client, sns_signer, conn, sent_mailout):
    envelope = sns_signer.envelope(ses_sample("bounce_transient_notification", address=ANN, ses_message_id="s"))
    assert post(sns_client, envelope).json["status"] == "processed"
    again = post(sns_client, envelope)
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    assert subscriber(conn)["soft_bounces"] == 1
    assert len(events_table(conn)) == 1


# --- subscription confirmations -----------------------------------------------------------


def test_a_subscription_confirmation_is_confirmed_and_logged(sns_client, sns_signer, conn, caplog):
    envelope = sns_signer.envelope("You have chosen to subscribe", kind="SubscriptionConfirmation", version="2")
    with caplog.at_level("INFO"):
        response = post(sns_client, envelope)
    assert response.status_code == 200
    assert sns_signer.fetched == [CERT_URL, SUBSCRIBE_URL]
    assert any("confirmed the SNS subscription" in r.getMessage() for r in caplog.records)
    (event,) = events_table(conn)
    assert event["sns_type"] == "SubscriptionConfirmation"
    assert "Token" not in event["payload"]


def test_a_confirmation_that_cannot_be_fetched_is_503(sns_client, sns_signer, conn):
    envelope = sns_signer.envelope("subscribe", kind="SubscriptionConfirmation")
    sns_signer.fetch(CERT_URL)  # warm nothing: the verifier caches its own fetches
    sns_signer.fetched.clear()

    def fail_subscribe(url, original=sns_signer.fetch):
        if url == SUBSCRIBE_URL:
            from amazonsender.sns import CertificateUnavailable

            raise CertificateUnavailable("timeout")
        return original(url)

    sns_client.application.extensions["sns_fetch"] = fail_subscribe
    response = post(sns_client, envelope)
    assert response.status_code == 503
    assert events_table(conn) == []


def test_an_unsubscribe_confirmation_is_recorded(sns_client, sns_signer, conn):
    response = post(sns_client, sns_signer.envelope("unsubscribed", kind="UnsubscribeConfirmation"))
    assert response.status_code == 200
    assert sns_signer.fetched == [CERT_URL]  # nothing is confirmed
    assert events_table(conn)[0]["sns_type"] == "UnsubscribeConfirmation"


# --- refusals -------------------------------------------------------------------------------


def test_a_bad_signature_is_400_and_changes_nothing(sns_client, sns_signer, conn, sent_mailout):
    envelope = sns_signer.envelope(ses_sample("bounce_permanent_notification", address=ANN, ses_message_id="s"))
    envelope["Message"] = envelope["Message"].replace("Permanent", "Transient")
    response = post(sns_client, envelope)
    assert response.status_code == 400 and "signature" in response.json["error"]
    assert subscriber(conn)["status"] == "active" and events_table(conn) == []


def test_a_bad_certificate_url_is_400_without_a_fetch(sns_client, sns_signer, conn):
    envelope = sns_signer.envelope("x", cert_url="https://sns.us-east-1.amazonaws.com.evil.org/c.pem")
    response = post(sns_client, envelope)
    assert response.status_code == 400
    assert sns_signer.fetched == []


def test_a_foreign_topic_is_403(sns_client, sns_signer, conn, sent_mailout):
    envelope = sns_signer.envelope(
        ses_sample("complaint_notification", address=ANN, ses_message_id="s"), topic=OTHER_TOPIC_ARN
    )
    response = post(sns_client, envelope)
    assert response.status_code == 403
    assert subscriber(conn)["status"] == "active" and events_table(conn) == []


def test_an_unreachable_certificate_is_503_so_sns_retries(sns_client, sns_signer, conn):
    sns_signer.fail_fetch = True
    response = post(sns_client, sns_signer.envelope("x"))
    assert response.status_code == 503
    assert events_table(conn) == []


def test_without_sns_topic_arns_nothing_is_processed(settings, pool, recording_transport, sns_signer, conn, caplog):
    app = create_app(with_settings(settings, sns_topic_arns=()), pool=pool, transport=recording_transport,
                     fetch_url=sns_signer.fetch)
    add_subscribers(conn, [ANN])
    envelope = sns_signer.envelope(ses_sample("complaint_notification", address=ANN, ses_message_id="s"))
    response = post(app.test_client(), envelope)
    assert response.status_code == 403 and "SNS_TOPIC_ARNS" in response.json["error"]
    assert any("SNS_TOPIC_ARNS is not set" in r.getMessage() for r in caplog.records)
    assert subscriber(conn)["status"] == "active" and events_table(conn) == []
    assert sns_signer.fetched == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b"42", b"null", b'{"Type": "Notification"}', b"\xff\xfe", b'{"Type": []}'],
)
def test_garbage_is_400_never_500(sns_client, raw):
    response = sns_client.post("/ses-events", data=raw, headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "error" in response.json


def test_a_tagged_event_for_an_unknown_mailout_is_still_recorded(sns_client, sns_signer, conn):
    add_subscribers(conn, [ANN])
    response = deliver(
        sns_client, sns_signer, "bounce_permanent_event", mailout_id="6f0c1a43-0000-4000-8000-000000000000"
    )
    assert response.status_code == 200
    assert events_table(conn)[0]["mailout_id"] is None
    assert subscriber(conn)["status"] == "bounced"


# --- rendering failures -------------------------------------------------------------------
#
# SES accepted a templated email (SendBulkEmail) and could not render it:
# published only through a configuration set, as "Rendering Failure" with a
# `failure` object (AWS: "Contents of event data that Amazon SES publishes
# to Amazon SNS"). tests/data/ses/rendering_failure_event.json follows AWS's
# example record, with our mailout_id tag.

RENDER_ERROR = "SES could not render the email: Attribute 'unsubscribe_token' is not present in the rendering data."


def ledger_row(conn, mailout_id, email=ANN) -> dict:
    return conn.execute(
        "SELECT * FROM send_logs WHERE mailout_id = %s AND email = %s", (mailout_id, email)
    ).fetchone()


def guard_counts(conn, mailout_id) -> tuple[int, int]:
    """What the reputation guard divides: (sent, permanent bounces)."""
    return store.count_sent(conn, mailout_id), store.reputation(conn, mailout_id)["bounces"]


def add_ledger_row(conn, mailout_id, status, ses_message_id=None, email=ANN, error=None):
    subscriber_id = conn.execute("SELECT id FROM subscribers WHERE lower(email) = lower(%s)", (email,)).fetchone()
    return conn.execute(
        "INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id, error_message)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (mailout_id, subscriber_id and subscriber_id["id"], email, status, ses_message_id, error),
    ).fetchone()["id"]


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_rendering_failure_fails_the_row_and_leaves_the_subscriber(
    sns_client, sns_signer, conn, sent_mailout, version
):
    before = subscriber(conn)
    assert guard_counts(conn, sent_mailout) == (1, 0)

    response = deliver(sns_client, sns_signer, "rendering_failure_event", version=version, mailout_id=sent_mailout)

    assert response.status_code == 200 and response.json["status"] == "processed"
    row = ledger_row(conn, sent_mailout)
    assert row["status"] == "failed"
    assert row["error_message"] == RENDER_ERROR
    assert row["ses_message_id"] == "0100-ses-id"
    # Our template's fault, not the address's.
    assert subscriber(conn) == before
    # No longer sent: out of the guard's denominator, and no bounce counted.
    assert guard_counts(conn, sent_mailout) == (0, 0)
    (event,) = events_table(conn)
    assert event["event_type"] == "Rendering Failure"
    assert event["mailout_id"] == sent_mailout and event["addresses"] == [ANN]
    assert event["payload"]["failure"]["templateName"] == "newsletter-inline"


def test_the_status_answer_counts_a_rendering_failure_as_failed(sns_client, sns_signer, conn, sent_mailout):
    deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=sent_mailout)
    answer = sns_client.get(f"/mailouts/{sent_mailout}", headers={"Authorization": f"Bearer {SHARED_SECRET}"}).json
    assert answer["counts"] == {"failed": 1}
    assert answer["sent"] == 0 and answer["bounce_rate"] is None


def test_a_rendering_failure_without_the_tag_is_found_by_its_ses_message_id(
    sns_client, sns_signer, conn, sent_mailout
):
    response = deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id="not-a-mailout-id")
    assert response.status_code == 200
    assert ledger_row(conn, sent_mailout)["status"] == "failed"
    assert events_table(conn)[0]["mailout_id"] == sent_mailout


def test_a_rendering_failure_without_an_error_message_still_fails_the_row(
    sns_client, sns_signer, conn, sent_mailout
):
    body = json.loads(ses_sample("rendering_failure_event", address=ANN, ses_message_id="0100-ses-id",
                                 mailout_id=sent_mailout))
    del body["failure"]
    post(sns_client, sns_signer.envelope(json.dumps(body)))
    row = ledger_row(conn, sent_mailout)
    assert row["status"] == "failed"
    assert row["error_message"] == "SES could not render the email: SES gave no reason"


@pytest.mark.parametrize("status", ["sending", "unknown"])
def test_a_rendering_failure_before_the_outcome_is_recorded_fails_the_row_for_good(
    sns_client, sns_signer, conn, status
):
    """The event can overtake its batch's outcomes (the row still 'sending',
    no SES id yet), or find a row a dead run left 'unknown': the tag and the
    address find it, and the outcome written later does not undo it."""
    add_subscribers(conn, [ANN])
    mailout_id = add_mailout(conn, status="sending")
    log_id = add_ledger_row(conn, mailout_id, status)

    deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=mailout_id, ses_message_id="0100-late")
    row = ledger_row(conn, mailout_id)
    assert (row["status"], row["error_message"], row["ses_message_id"]) == ("failed", RENDER_ERROR, "0100-late")

    store.record_outcomes(conn, mailout_id, [store.Outcome(log_id, "sent", "0100-late")])
    assert ledger_row(conn, mailout_id)["status"] == "failed"
    assert guard_counts(conn, mailout_id) == (0, 0)
    assert subscriber(conn)["status"] == "active"


def test_a_rendering_failure_for_another_ses_message_changes_no_row(sns_client, sns_signer, conn, sent_mailout):
    # Same mailout and address, but the row holds another SES message id.
    deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=sent_mailout, ses_message_id="0100-other")
    assert ledger_row(conn, sent_mailout)["status"] == "sent"
    assert len(events_table(conn)) == 1


@pytest.mark.parametrize(
    "status, error",
    [
        # The first reason a row failed is kept.
        ("failed", "SES refused the email: MessageRejected"),
        # SES handed it over: a later rendering failure cannot undo that.
        ("delivered", None),
        # Never sent: the event is not about this row.
        ("queued", None),
        ("skipped", "subscriber is unsubscribed"),
    ],
)
def test_a_rendering_failure_keeps_a_stronger_status(sns_client, sns_signer, conn, status, error):
    add_subscribers(conn, [ANN])
    mailout_id = add_mailout(conn, status="sent")
    ses_id = "0100-ses-id" if status in ("failed", "delivered") else None
    add_ledger_row(conn, mailout_id, status, ses_message_id=ses_id, error=error)
    before = ledger_row(conn, mailout_id)

    response = deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=mailout_id)

    assert response.status_code == 200
    assert ledger_row(conn, mailout_id) == before
    assert len(events_table(conn)) == 1


@pytest.mark.parametrize("sample", ["bounce_permanent_event", "complaint_event", "delivery_event"])
def test_a_rendering_failure_after_a_bounce_of_the_same_email_leaves_the_row_sent(
    sns_client, sns_signer, conn, sent_mailout, sample
):
    """SES attempted delivery of this message: it counts as sent, and a
    bounce already counted by the guard keeps its email in the denominator."""
    deliver(sns_client, sns_signer, sample, mailout_id=sent_mailout)
    status_before = ledger_row(conn, sent_mailout)["status"]
    counts_before = guard_counts(conn, sent_mailout)

    deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=sent_mailout)

    assert ledger_row(conn, sent_mailout)["status"] == status_before != "failed"
    assert guard_counts(conn, sent_mailout) == counts_before
    assert counts_before[0] == 1


def test_a_repeated_rendering_failure_changes_nothing(sns_client, sns_signer, conn, sent_mailout):
    envelope = sns_signer.envelope(
        ses_sample("rendering_failure_event", address=ANN, ses_message_id="0100-ses-id", mailout_id=sent_mailout)
    )
    assert post(sns_client, envelope).json["status"] == "processed"
    first = ledger_row(conn, sent_mailout)
    # Even a row put back by hand stays as it is: a repeat applies nothing.
    conn.execute("UPDATE send_logs SET status = 'sent', error_message = NULL WHERE id = %s", (first["id"],))

    again = post(sns_client, envelope)

    assert again.status_code == 200 and again.json["status"] == "duplicate"
    row = ledger_row(conn, sent_mailout)
    assert (row["status"], row["error_message"]) == ("sent", None)
    assert len(events_table(conn)) == 1


def test_a_rendering_failure_for_one_recipient_leaves_the_others(sns_client, sns_signer, conn, sent_mailout):
    add_subscribers(conn, ["bob@list.example"])
    add_ledger_row(conn, sent_mailout, "sent", ses_message_id="0100-bob", email="bob@list.example")
    deliver(sns_client, sns_signer, "rendering_failure_event", mailout_id=sent_mailout)
    assert ledger_row(conn, sent_mailout)["status"] == "failed"
    assert ledger_row(conn, sent_mailout, "bob@list.example")["status"] == "sent"
    assert guard_counts(conn, sent_mailout) == (1, 0)


# --- text Postgres cannot store: NUL and lone surrogates -------------------------------------
#
# A signed event can carry a NUL (\u0000) or a lone surrogate (\ud800) in
# any string: a diagnosticCode is text a remote mail server wrote. Every such
# character is stored as U+FFFD; an address or id that held one matches
# nothing, and the rest of the event still applies. Never a 500.

NUL, SURROGATE = "\u0000", "\ud800"


def spoiled(sample, change, **values) -> str:
    """A sample event with one value spoiled by `change`, as the JSON text
    SES would publish (json.dumps writes both as \\u escapes)."""
    values.setdefault("address", ANN)
    values.setdefault("ses_message_id", "0100-ses-id")
    values.setdefault("mailout_id", "00000000-0000-0000-0000-000000000000")
    body = json.loads(ses_sample(sample, **values))
    change(body)
    text = json.dumps(body)
    assert "\\u0000" in text or "\\ud800" in text
    return text


def set_diagnostic_code(value):
    def change(body):
        body["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = value
    return change


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("sample", ["bounce_permanent_notification", "bounce_permanent_event"])
def test_a_bounce_whose_diagnostic_code_is_not_text_still_suppresses(
    sns_client, sns_signer, conn, sent_mailout, sample, bad
):
    message = spoiled(sample, set_diagnostic_code(f"smtp; 550 {bad}user unknown{bad}"), mailout_id=sent_mailout)
    response = post(sns_client, sns_signer.envelope(message))

    assert response.status_code == 200 and response.json["status"] == "processed"
    assert subscriber(conn)["status"] == "bounced"
    (event,) = events_table(conn)
    assert event["addresses"] == [ANN] and event["mailout_id"] == sent_mailout
    code = event["payload"]["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
    assert code == "smtp; 550 \ufffduser unknown\ufffd"


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_a_bounced_address_that_is_not_text_changes_nothing(sns_client, sns_signer, conn, sent_mailout, bad):
    # "\ufffdann@list.example" is on the list too (an old import read with
    # errors="replace"): the event must not reach it through the U+FFFD.
    add_subscribers(conn, ["\ufffd" + ANN])
    before = conn.execute("SELECT * FROM subscribers ORDER BY id").fetchall()

    def change(body):
        body["bounce"]["bouncedRecipients"] = [{"emailAddress": bad + ANN}]

    response = post(sns_client, sns_signer.envelope(spoiled("bounce_permanent_notification", change)))

    assert response.status_code == 200 and response.json["status"] == "processed"
    assert conn.execute("SELECT * FROM subscribers ORDER BY id").fetchall() == before
    (event,) = events_table(conn)
    assert event["addresses"] == []
    assert event["payload"]["bounce"]["bouncedRecipients"] == [{"emailAddress": "\ufffd" + ANN}]


@pytest.mark.parametrize("bad", [NUL, SURROGATE, f"{NUL}{SURROGATE}6f0c1a43-0000-4000-8000-000000000000"])
def test_a_mailout_tag_that_is_not_text_is_no_tag(sns_client, sns_signer, conn, sent_mailout, bad):
    def change(body):
        body["mail"]["tags"]["mailout_id"] = [bad]

    response = post(sns_client, sns_signer.envelope(spoiled("bounce_permanent_event", change)))

    assert response.status_code == 200
    # Linked by its SES message id instead, as an event without the tag is.
    (event,) = events_table(conn)
    assert event["mailout_id"] == sent_mailout
    assert event["payload"]["mail"]["tags"]["mailout_id"] == [bad.replace(NUL, "\ufffd").replace(SURROGATE, "\ufffd")]
    assert subscriber(conn)["status"] == "bounced"


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("sample", ["delivery_notification", "rendering_failure_event"])
def test_an_ses_message_id_that_is_not_text_matches_no_ledger_row(
    sns_client, sns_signer, conn, sent_mailout, sample, bad
):
    def change(body):
        body["mail"]["messageId"] = "0100-ses-id" + bad

    response = post(sns_client, sns_signer.envelope(spoiled(sample, change, mailout_id="no-tag")))

    assert response.status_code == 200
    assert ledger_row(conn, sent_mailout)["status"] == "sent"
    (event,) = events_table(conn)
    assert event["ses_message_id"] == "0100-ses-id\ufffd" and event["mailout_id"] is None


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_a_destination_that_is_not_text_is_recorded(sns_client, sns_signer, conn, sent_mailout, bad):
    def change(body):
        body["mail"]["destination"] = [f"{bad}@x.org", ANN]

    response = post(sns_client, sns_signer.envelope(spoiled("send_event", change, mailout_id=sent_mailout)))

    assert response.status_code == 200
    (event,) = events_table(conn)
    assert event["event_type"] == "Send" and event["addresses"] == [ANN]
    assert event["payload"]["mail"]["destination"] == ["\ufffd@x.org", ANN]


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body.update(notificationType="Bounce" + NUL),
        lambda body: body["bounce"].update(bounceType=SURROGATE, bounceSubType=NUL, feedbackId=NUL),
        lambda body: body.update({NUL: SURROGATE, SURROGATE: [NUL, {NUL: 1}]}),
        lambda body: body["mail"]["headers"].append({"name": "Subject", "value": "\udfff\ud800" + NUL}),
    ],
    ids=["event-type", "bounce-fields", "keys", "headers"],
)
def test_any_value_that_is_not_text_is_stored_as_u_fffd(sns_client, sns_signer, conn, sent_mailout, change):
    message = spoiled("bounce_permanent_notification", change)
    response = post(sns_client, sns_signer.envelope(message))
    assert response.status_code == 200
    (event,) = events_table(conn)
    expected = json.loads(message.replace("\\u0000", "\\ufffd").replace("\\ud800", "\\ufffd")
                          .replace("\\udfff", "\\ufffd"))
    assert event["payload"] == expected


@pytest.mark.parametrize(
    "message, payload",
    [
        (f"hello{NUL}", "hello\ufffd"),
        ('{"a": "\\u0000\\udc00"}', {"a": "\ufffd\ufffd"}),
        ('["\\ud800", 1]', ["\ufffd", 1]),
        # Not JSON: a raw control character in a string.
        (f'{{"eventType": "Bounce{NUL}"}}', '{"eventType": "Bounce\ufffd"}'),
    ],
)
def test_a_message_that_is_not_an_ses_event_and_not_text_is_recorded(sns_client, sns_signer, conn, message, payload):
    # (A raw lone surrogate cannot reach us: SNS signs the Message as UTF-8.)
    response = post(sns_client, sns_signer.envelope(message))
    assert response.status_code == 200
    (event,) = events_table(conn)
    assert event["event_type"] == "Unknown" and event["payload"] == payload


def test_an_sns_message_id_with_a_nul_is_recorded(sns_client, sns_signer, conn, sent_mailout):
    message = ses_sample("bounce_permanent_notification", address=ANN, ses_message_id="0100-ses-id")
    response = post(sns_client, sns_signer.envelope(message, message_id=f"sns-{NUL}-1"))
    assert response.status_code == 200
    (event,) = events_table(conn)
    assert event["sns_message_id"] == "sns-\ufffd-1"
    assert subscriber(conn)["status"] == "bounced"


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_confirmation_whose_message_has_a_nul_is_recorded(sns_client, sns_signer, conn, kind):
    response = post(sns_client, sns_signer.envelope(f"You have chosen{NUL}", kind=kind))
    assert response.status_code == 200
    (event,) = events_table(conn)
    assert event["payload"]["Message"] == "You have chosen\ufffd"


# --- a late event about an erased address -------------------------------------------


def late_complaint(sent_mailout, name="Ann Zyxwvut", address="Ann@List.Example") -> str:
    """A complaint SES reports days after the email, with the copies of the
    headers event publishing adds when asked."""
    body = json.loads(ses_sample("complaint_event", address=address, ses_message_id="0100-ses-id",
                                 mailout_id=sent_mailout))
    body["mail"]["headers"] = [{"name": "To", "value": f"{name} <{address}>"}]
    body["mail"]["commonHeaders"] = {"to": [f"{name} <{address}>"], "subject": "Our news"}
    body["mail"]["destination"] = [f"{name} <{address}>"]
    body["complaint"]["userAgent"] = f"complaint about {address.lower()}"
    return json.dumps(body)


def test_a_late_event_about_a_forgotten_address_is_stored_anonymised(sns_client, sns_signer, conn, pool,
                                                                      sent_mailout):
    from amazonsender import erasure

    conn.execute("UPDATE subscribers SET from_name = 'Ann Zyxwvut' WHERE email = %s", (ANN,))
    erasure.forget_address(pool, ANN, erasure.SuppressionKey.from_secret("suppression secret"))
    [token] = ledger(conn, sent_mailout)

    response = post(sns_client, sns_signer.envelope(late_complaint(sent_mailout)))

    assert response.status_code == 200 and response.json["status"] == "processed"
    (event,) = events_table(conn)
    assert event["event_type"] == "Complaint" and event["addresses"] == [token]
    assert token.startswith("forgotten:")
    text = json.dumps(event["payload"]).lower()
    assert "ann@list" not in text and "zyxwvut" not in text
    assert "commonHeaders" not in event["payload"]["mail"] and "headers" not in event["payload"]["mail"]
    assert event["payload"]["mail"]["destination"] == [token]
    assert event["payload"]["complaint"]["complainedRecipients"] == [{"emailAddress": token}]
    assert event["mailout_id"] == sent_mailout  # still counted against its mailout
    assert store.reputation(conn, sent_mailout)["complaints"] == 1
    assert conn.execute("SELECT count(*) AS n FROM subscribers").fetchone()["n"] == 0
    assert ledger(conn, sent_mailout) == {token: "sent"}


def test_an_event_waits_for_a_forget_under_way_and_is_stored_anonymised(sns_client, sns_signer, conn, pool,
                                                                        sent_mailout):
    import threading

    from amazonsender import erasure

    key = erasure.SuppressionKey.from_secret("suppression secret")
    answers = []
    with pool.connection() as forgetting:
        store.begin_forgetting(forgetting, [ANN])
        late = threading.Thread(
            target=lambda: answers.append(post(sns_client, sns_signer.envelope(late_complaint(sent_mailout)))))
        late.start()
        late.join(1)
        assert late.is_alive() and not answers  # held until the erasure commits
        token = erasure.forgotten_token(key.hash(ANN))
        store.forget_address(forgetting, lowered=[ANN], address_hash=key.hash(ANN), key_id=key.key_id, token=token,
                             text_pattern="ann@list\\.example", json_pattern="ann@list\\.example")
    late.join(10)
    assert answers[0].status_code == 200
    (event,) = events_table(conn)
    assert event["addresses"] == [token] and "ann@list" not in json.dumps(event["payload"]).lower()
