"""In-doubt rows (issue 14, item 4): a row a dead run left 'unknown' resolved
by SES's own signed events, and `mailout resume --resend-unconfirmed`, against
a real Postgres, signed SNS envelopes and the SES stand-in."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from amazonsender import sender
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import SHARED_SECRET
from tests.support.sns_signing import ses_sample

ANN, BOB, CAT = "ann@list.example", "bob@list.example", "cat@list.example"
AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


def post(client, signer, message: str, message_id: str | None = None):
    envelope = signer.envelope(message, message_id=message_id)
    response = client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def event(sample: str, mailout_id, address=ANN, ses_message_id="0100-from-ses") -> str:
    return ses_sample(sample, address=address, ses_message_id=ses_message_id, mailout_id=mailout_id)


def mailout_with_rows(conn, rows: dict[str, str], status="sent", attempted="now()"):
    """A mailout whose ledger holds `rows` (address -> status); rows other
    than 'unknown' or 'queued' have an SES message id of their own."""
    ids = dict(zip(rows, add_subscribers(conn, list(rows))))
    mailout_id = add_mailout(conn, status=status)
    for address, row_status in rows.items():
        message_id = None if row_status in ("unknown", "queued") else f"0100-{address}"
        conn.execute(
            f"INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id, attempted_at)"
            f" VALUES (%s, %s, %s, %s, %s, {attempted})",
            (mailout_id, ids[address], address, row_status, message_id),
        )
    return mailout_id


def row(conn, mailout_id, address=ANN) -> dict:
    return conn.execute(
        "SELECT status, ses_message_id, error_message FROM send_logs WHERE mailout_id = %s AND email = %s",
        (mailout_id, address),
    ).fetchone()


def resolved(conn, mailout_id) -> int:
    return mailout_row(conn, mailout_id)["resolved_from_events"]


# --- resolved from SES events --------------------------------------------------


@pytest.mark.parametrize(
    "sample, status, error",
    [
        ("send_event", "sent", None),
        ("delivery_event", "delivered", None),
        ("delivery_delay_event", "sent", None),
        ("bounce_permanent_event", "sent", None),
        ("complaint_event", "sent", None),
        ("reject_event", "failed", "SES rejected the email: Bad content"),
        ("rendering_failure_event", "failed",
         "SES could not render the email: Attribute 'unsubscribe_token' is not present in the rendering data."),
    ],
)
def test_a_signed_event_resolves_an_unknown_row(sns_client, sns_signer, conn, sample, status, error):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown", BOB: "unknown", CAT: "sent"})

    post(sns_client, sns_signer, event(sample, mailout_id))

    assert row(conn, mailout_id) == {"status": status, "ses_message_id": "0100-from-ses", "error_message": error}
    # Only that address's row, and the count survives in the mailout row.
    assert ledger(conn, mailout_id)[BOB] == "unknown"
    assert resolved(conn, mailout_id) == 1


def test_a_bounce_resolving_a_row_still_suppresses_the_address(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown"})
    post(sns_client, sns_signer, event("bounce_permanent_event", mailout_id))
    assert row(conn, mailout_id)["status"] == "sent"
    assert conn.execute("SELECT status FROM subscribers WHERE email = %s", (ANN,)).fetchone()["status"] == "bounced"


def test_send_events_resolve_rows_and_status_counts_them(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown", BOB: "unknown", CAT: "unknown"})
    post(sns_client, sns_signer, event("send_event", mailout_id, ANN, "0100-a"))
    post(sns_client, sns_signer, event("send_event", mailout_id, BOB, "0100-b"))
    post(sns_client, sns_signer, event("delivery_event", mailout_id, BOB, "0100-b"))

    assert ledger(conn, mailout_id) == {ANN: "sent", BOB: "delivered", CAT: "unknown"}
    assert resolved(conn, mailout_id) == 2
    status = sns_client.get(f"/mailouts/{mailout_id}", headers=AUTH).json
    assert status["resolved_from_events"] == 2
    assert status["counts"] == {"sent": 1, "delivered": 1, "unknown": 1}


@pytest.mark.parametrize("status", ["sent", "delivered", "failed", "queued", "skipped", "sending"])
def test_an_event_for_a_row_that_is_not_in_doubt_changes_nothing_new(sns_client, sns_signer, conn, status):
    mailout_id = mailout_with_rows(conn, {ANN: status}, status="sending")
    before = row(conn, mailout_id)
    post(sns_client, sns_signer, event("send_event", mailout_id, ses_message_id=f"0100-{ANN}"))
    assert row(conn, mailout_id) == before
    assert resolved(conn, mailout_id) == 0


def test_an_event_with_another_mailouts_tag_changes_nothing(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown"})
    other = add_mailout(conn, status="sent")
    post(sns_client, sns_signer, event("send_event", other))
    post(sns_client, sns_signer, event("send_event", uuid4()))
    post(sns_client, sns_signer, event("send_event", "not-a-uuid"))
    assert row(conn, mailout_id)["status"] == "unknown"
    assert resolved(conn, mailout_id) == resolved(conn, other) == 0


def test_an_event_for_another_address_or_another_spelling_changes_nothing(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown"})
    post(sns_client, sns_signer, event("send_event", mailout_id, address=BOB))
    # The row is found by the address exactly as it was sent.
    post(sns_client, sns_signer, event("send_event", mailout_id, address=ANN.upper()))
    assert row(conn, mailout_id)["status"] == "unknown"


def test_an_identity_notification_without_a_tag_resolves_nothing(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown"})
    post(sns_client, sns_signer, event("delivery_notification", mailout_id))
    assert row(conn, mailout_id)["status"] == "unknown"


def test_the_same_sns_message_twice_is_counted_once(sns_client, sns_signer, conn):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown"})
    message = event("send_event", mailout_id)
    post(sns_client, sns_signer, message, message_id="sns-1")
    post(sns_client, sns_signer, message, message_id="sns-1")
    post(sns_client, sns_signer, event("delivery_event", mailout_id))
    # The Delivery finds the row 'sent' with its SES id, as any row: not a
    # second resolution.
    assert row(conn, mailout_id)["status"] == "delivered"
    assert resolved(conn, mailout_id) == 1


def test_a_resume_resolves_rows_from_the_events_that_came_while_they_were_sending(
    pool, conn, settings, sns_client, sns_signer
):
    """The run died with four emails in flight; SES's events about three of
    them came before the resume marked them in doubt (they resolved nothing
    then): the resume resolves those three from the stored events."""
    dan = "dan@list.example"
    mailout_id = mailout_with_rows(conn, {ANN: "sending", BOB: "sending", CAT: "sending", dan: "sending"},
                                   status="sending")
    conn.execute("UPDATE mailouts SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (mailout_id,))
    for sample, address in [("send_event", ANN), ("send_event", BOB), ("delivery_event", BOB),
                            ("send_event", CAT), ("reject_event", CAT)]:
        post(sns_client, sns_signer, event(sample, mailout_id, address, f"0100-{address}"))
    assert set(ledger(conn, mailout_id).values()) == {"sending"}

    claim = sender.resume_mailout(pool, mailout_id, settings)

    assert claim.in_doubt_marked == 4
    assert ledger(conn, mailout_id) == {ANN: "sent", BOB: "delivered", CAT: "failed", dan: "unknown"}
    assert row(conn, mailout_id, BOB)["ses_message_id"] == f"0100-{BOB}"
    assert row(conn, mailout_id, CAT)["error_message"] == "SES rejected the email: Bad content"
    assert resolved(conn, mailout_id) == 3


# --- mailout resume --resend-unconfirmed ---------------------------------------------


def record_send_event(sns_client, sns_signer, mailout_id, address, ses_message_id):
    post(sns_client, sns_signer, event("send_event", mailout_id, address, ses_message_id))


def test_resend_unconfirmed_refuses_without_send_events(conn, invoke, standin):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown", BOB: "sent"}, attempted="now() - interval '2 hours'")

    result = invoke("mailout", "resume", mailout_id, "--resend-unconfirmed")

    assert result.exit_code != 0
    assert "no SES Send event" in result.output and "nothing resent" in result.output
    assert ledger(conn, mailout_id) == {ANN: "unknown", BOB: "sent"}
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert standin.sent == []


def test_resend_unconfirmed_waits_for_reconcile_after(conn, invoke, standin, sns_client, sns_signer):
    mailout_id = mailout_with_rows(conn, {ANN: "unknown", BOB: "sent"})
    record_send_event(sns_client, sns_signer, mailout_id, BOB, f"0100-{BOB}")

    result = invoke("mailout", "resume", mailout_id, "--resend-unconfirmed")

    assert result.exit_code != 0
    assert "no in-doubt email to send again" in result.output and "RECONCILE_AFTER" in result.output
    assert ledger(conn, mailout_id) == {ANN: "unknown", BOB: "sent"}
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert standin.sent == []


def test_resend_unconfirmed_sends_again_only_rows_without_any_event(conn, invoke, standin, sns_client, sns_signer):
    mailout_id = mailout_with_rows(
        conn, {ANN: "unknown", BOB: "sent", CAT: "unknown"}, attempted="now() - interval '2 hours'"
    )
    record_send_event(sns_client, sns_signer, mailout_id, BOB, f"0100-{BOB}")
    # An event about Cat arrived while her row was still 'sending' (before
    # the resume marked it): it resolved nothing, but SES did have her email.
    conn.execute("UPDATE send_logs SET status = 'sending' WHERE email = %s", (CAT,))
    post(sns_client, sns_signer, event("delivery_delay_event", mailout_id, CAT, "0100-cat"))
    conn.execute("UPDATE send_logs SET status = 'unknown' WHERE email = %s", (CAT,))

    result = invoke("mailout", "resume", mailout_id, "--resend-unconfirmed")

    assert result.exit_code == 0, result.output
    assert "duplicate" in result.output
    assert "1 in-doubt emails queued to be sent again" in result.output
    assert [email.to_addresses for email in standin.sent] == [[ANN]]
    assert ledger(conn, mailout_id) == {ANN: "sent", BOB: "sent", CAT: "unknown"}
    assert mailout_row(conn, mailout_id)["status"] == "sent"


def test_resend_unconfirmed_resumes_an_interrupted_mailout(pool, conn, invoke, standin, sns_client, sns_signer):
    mailout_id = mailout_with_rows(
        conn, {ANN: "unknown", BOB: "sent", CAT: "queued"}, status="paused", attempted="now() - interval '1 hour'"
    )
    record_send_event(sns_client, sns_signer, mailout_id, BOB, f"0100-{BOB}")

    result = invoke("mailout", "resume", mailout_id, "--resend-unconfirmed")

    assert result.exit_code == 0, result.output
    assert sorted(a for email in standin.sent for a in email.to_addresses) == [ANN, CAT]
    assert ledger(conn, mailout_id) == {ANN: "sent", BOB: "sent", CAT: "sent"}


def test_an_end_to_end_crash_resolved_by_the_standins_send_events(pool, conn, invoke, standin, sns_client, sns_signer):
    """The stand-in sends the mailout; the run 'dies' before recording its
    last outcomes (rows put back to 'unknown' without their SES ids); the
    Send events SES publishes for those emails resolve them."""
    add_subscribers(conn, [ANN, BOB, CAT])
    mailout_id = add_mailout(conn)
    assert invoke("mailout", "send", mailout_id).exit_code == 0
    conn.execute(
        "UPDATE send_logs SET status = 'unknown', ses_message_id = NULL WHERE mailout_id = %s AND email <> %s",
        (mailout_id, ANN),
    )

    for email in standin.sent:
        post(sns_client, sns_signer, standin.send_event(email))

    assert ledger(conn, mailout_id) == {ANN: "sent", BOB: "sent", CAT: "sent"}
    ids = {e.to_addresses[0]: e.message_id for e in standin.sent}
    assert row(conn, mailout_id, BOB)["ses_message_id"] == ids[BOB]
    assert resolved(conn, mailout_id) == 2
    lines = invoke("mailout", "status", mailout_id).stdout
    assert "resolved   2 in-doubt emails" in lines


# --- RECONCILE_AFTER -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, seconds", [(None, 1800), ("1800", 1800), ("30m", 1800), ("90s", 90), ("2h", 7200), ("1d", 86400)]
)
def test_reconcile_after_is_seconds_or_a_number_with_a_unit(value, seconds):
    from amazonsender.config import Settings
    from tests.support.production import production_env

    env = production_env() if value is None else production_env(RECONCILE_AFTER=value)
    assert Settings.from_env(env).reconcile_after_seconds == seconds


@pytest.mark.parametrize("value", ["soon", "30 minutes", "-5", "10", "8d"])
def test_a_bad_reconcile_after_is_reported(value):
    from tests.support.production import problem_about, problems_of, production_env

    assert "RECONCILE_AFTER" in problem_about(problems_of(production_env(RECONCILE_AFTER=value)), "RECONCILE_AFTER")
