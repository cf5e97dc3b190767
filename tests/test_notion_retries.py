"""Notion's own retries of POST /send-mailout (issue 14, item 3): the same
source.event_id again answers as the first request did, any other request for
a claimed mailout is a 409. Flask's test client, a real Postgres, moto's SES."""

from __future__ import annotations

import copy

import pytest

from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.webhooks import AUTH, notion_body, rich_text, wait_for_background_sends

EVENT_ID = "1b2c3d4e-0000-4000-8000-000000000003"


@pytest.fixture
def mailout_id(conn):
    add_subscribers(conn, ["a@list.example", "b@list.example", "c@list.example"])
    return add_mailout(conn)


def body(mailout_id, event_id=EVENT_ID, attempt=1) -> dict:
    payload = notion_body({"mailout_id": rich_text(str(mailout_id))})
    if event_id is None:
        del payload["source"]["event_id"]
    else:
        payload["source"]["event_id"] = event_id
    payload["source"]["attempt"] = attempt
    return payload


def post(client, payload):
    return client.post("/send-mailout", json=payload, headers=AUTH)


def test_a_retry_of_the_same_event_gets_the_first_answer(app, client, conn, mailout_id):
    first = post(client, body(mailout_id))
    assert first.status_code == 202

    # Still sending, or already sent: the same event is answered the same.
    again = post(client, body(mailout_id, attempt=2))
    wait_for_background_sends(app)
    after = post(client, body(mailout_id, attempt=3))

    assert again.status_code == after.status_code == 202
    assert again.json == after.json == first.json
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert set(ledger(conn, mailout_id).values()) == {"sent"}
    assert len(ledger(conn, mailout_id)) == 3


def test_a_new_event_for_a_claimed_mailout_is_409(app, client, mailout_id):
    assert post(client, body(mailout_id)).status_code == 202
    second = post(client, body(mailout_id, event_id="1b2c3d4e-0000-4000-8000-000000000004"))
    assert second.status_code == 409 and second.json["status"] in ("sending", "sent")


def test_without_an_event_id_a_second_request_is_409_as_before(app, client, mailout_id):
    assert post(client, body(mailout_id, event_id=None)).status_code == 202
    assert post(client, body(mailout_id, event_id=None)).status_code == 409
    # A claim without an event id is not matched by one that has one.
    assert post(client, body(mailout_id)).status_code == 409


def test_a_request_without_an_event_id_after_a_notion_claim_is_409(app, client, mailout_id):
    assert post(client, body(mailout_id)).status_code == 202
    assert post(client, body(mailout_id, event_id=None)).status_code == 409
    plain = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert plain.status_code == 409


def test_event_ids_are_compared_exactly(app, client, mailout_id):
    assert post(client, body(mailout_id)).status_code == 202
    for near in (EVENT_ID.upper(), EVENT_ID + " ", " " + EVENT_ID, EVENT_ID[:-1]):
        assert post(client, body(mailout_id, event_id=near)).status_code == 409


@pytest.mark.parametrize(
    "event_id",
    ["x" * 201, "", "id\x00with-nul", "id\nwith-newline", "\u202eright-to-left", 42, ["a"], {"a": 1}, None],
)
def test_an_event_id_unfit_to_keep_counts_as_none(app, client, conn, mailout_id, event_id):
    payload = body(mailout_id)
    payload["source"]["event_id"] = event_id
    assert post(client, payload).status_code == 202
    assert mailout_row(conn, mailout_id)["claim_event_id"] is None
    assert post(client, copy.deepcopy(payload)).status_code == 409


def test_the_event_id_is_stored_as_it_came(app, client, conn, mailout_id):
    event_id = "é-" + "x" * 198  # 200 characters, the most that is kept
    assert post(client, body(mailout_id, event_id=event_id)).status_code == 202
    assert mailout_row(conn, mailout_id)["claim_event_id"] == event_id
    assert post(client, body(mailout_id, event_id=event_id)).status_code == 202


def test_the_same_event_for_another_mailout_is_not_a_retry(app, client, conn, mailout_id):
    other = add_mailout(conn, status="sent")
    assert post(client, body(mailout_id)).status_code == 202
    assert post(client, body(other)).status_code == 409


def test_a_retry_for_a_draft_is_still_told_to_make_it_ready(client, conn):
    draft = add_mailout(conn, status="draft")
    response = post(client, body(draft))
    assert response.status_code == 409 and "ready" in response.json["error"]


# --- through real gunicorn workers ---------------------------------------------------


def test_retries_racing_the_first_request_all_get_its_answer_through_gunicorn(database_url, conn, tmp_path):
    """Notion retries a request that timed out while the first one may still
    be claiming: every copy of the event gets the first 202, another event a
    409, and everyone is sent the mailout once."""
    import requests

    from tests.support.processes import run_gunicorn, service_env, wait_for_status
    from tests.support.ses_standin import SesStandIn
    from tests.support.webhooks import at_once

    emails = [f"reader{i:02d}@example.org" for i in range(20)]
    add_subscribers(conn, emails)
    mailout_id = add_mailout(conn)
    with SesStandIn() as ses, run_gunicorn(service_env(tmp_path, database_url, ses), tmp_path) as server:
        at_once(8, lambda: requests.get(server.url + "/healthz", timeout=10))

        def post_event(event_id=EVENT_ID):
            return requests.post(f"{server.url}/send-mailout", json=body(mailout_id, event_id), headers=AUTH,
                                 timeout=30)

        answers = at_once(8, post_event)
        other = post_event("1b2c3d4e-0000-4000-8000-000000000009")
        wait_for_status(server, mailout_id)
        late = post_event()

        assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
        assert len({a.text for a in answers}) == 1 and late.json() == answers[0].json()
        assert answers[0].json()["recipients"] == len(emails)
        assert other.status_code == 409
        sent = sorted(address for record in ses.sent for address in record.to_addresses)
        assert sent == sorted(emails)
