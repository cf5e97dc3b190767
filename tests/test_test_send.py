"""Test sends ("test": true) and the status a person watching a send sees."""

from __future__ import annotations

import email
import email.policy

import pytest

from amazonsender import create_app
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import SHARED_SECRET, with_settings

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


@pytest.fixture
def test_client(settings, pool, recording_transport):
    app = create_app(
        with_settings(settings, test_emails=("editor@example.test", "proof@example.test")),
        pool=pool,
        transport=recording_transport,
    )
    return app.test_client()


@pytest.mark.parametrize("status", ["draft", "ready", "sent"])
def test_a_test_send_goes_to_test_emails_and_changes_nothing(test_client, conn, recording_transport, status):
    add_subscribers(conn, ["reader@list.example"])
    mailout_id = add_mailout(conn, status=status, subject="Spring news")
    for _ in range(2):  # repeatable
        response = test_client.post("/send-mailout", json={"mailout_id": str(mailout_id), "test": True},
                                    headers=AUTH)
        assert response.status_code == 200
        assert [r["status"] for r in response.json["results"]] == ["sent", "sent"]
    assert recording_transport.addresses == ["editor@example.test", "proof@example.test"] * 2
    message = email.message_from_bytes(recording_transport.emails[0].raw, policy=email.policy.default)
    assert message["Subject"] == "[TEST] Spring news"
    assert message["List-Unsubscribe"].startswith("<https://news.example.test/unsubscribe?token=")
    assert mailout_row(conn, mailout_id)["status"] == status
    assert ledger(conn, mailout_id) == {}


def test_a_test_send_to_given_addresses(test_client, conn, recording_transport):
    mailout_id = add_mailout(conn)
    response = test_client.post(
        "/send-mailout?test=1", json={"mailout_id": str(mailout_id), "to": ["me@example.test"]}, headers=AUTH
    )
    assert response.status_code == 200
    assert recording_transport.addresses == ["me@example.test"]


@pytest.mark.parametrize(
    "to, message",
    [("me@example.test", "must be a list"), (["not an address"], "not an email address"), ([], "no test recipients")],
)
def test_bad_test_recipients_are_400(test_client, conn, recording_transport, to, message):
    mailout_id = add_mailout(conn)
    response = test_client.post("/send-mailout", json={"mailout_id": str(mailout_id), "test": True, "to": to},
                                headers=AUTH)
    assert response.status_code == 400 and message in response.json["error"]
    assert recording_transport.sent == []


def test_a_test_send_needs_the_secret_and_a_known_mailout(test_client, conn, recording_transport):
    mailout_id = add_mailout(conn)
    assert test_client.post("/send-mailout", json={"mailout_id": str(mailout_id), "test": True}).status_code == 401
    missing = "5b0f0000-0000-4000-8000-000000000000"
    assert test_client.post("/send-mailout", json={"mailout_id": missing, "test": True},
                            headers=AUTH).status_code == 404
    assert recording_transport.sent == []


def test_without_test_emails_a_test_send_says_what_to_set(client, conn):
    mailout_id = add_mailout(conn)
    response = client.post("/send-mailout", json={"mailout_id": str(mailout_id), "test": True}, headers=AUTH)
    assert response.status_code == 400 and "TEST_EMAILS" in response.json["error"]


def test_status_shows_progress_rates_and_bounces(client, conn):
    add_subscribers(conn, [f"r{i}@list.example" for i in range(4)])
    mailout_id = add_mailout(conn)
    client.post("/send-mailout?wait=1", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    conn.execute(
        "INSERT INTO ses_events (sns_message_id, sns_type, event_type, addresses, mailout_id, bounce_type, payload)"
        " VALUES ('x', 'Notification', 'Bounce', ARRAY['r1@list.example'], %s, 'Permanent', '{}')",
        (mailout_id,),
    )
    status = client.get(f"/mailouts/{mailout_id}", headers=AUTH).json
    assert status["status"] == "sent" and status["sent"] == 4 and status["remaining"] == 0
    assert status["bounces"] == 1 and status["bounce_rate"] == 0.25
    assert status["complaints"] == 0 and status["complaint_rate"] == 0
    assert status["rate_per_sec"] > 0
    assert status["eta_seconds"] is None  # finished
    assert status["heartbeat_age_seconds"] >= 0
