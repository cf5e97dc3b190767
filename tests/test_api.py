"""POST /send-mailout, GET /mailouts/<id> and /healthz through Flask's test
client, against a real Postgres and moto's SES."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from amazonsender import create_app
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import SHARED_SECRET, with_settings
from tests.support.webhooks import AUTH, notion_body, rich_text, wait_for_background_sends

@pytest.fixture
def ready_mailout(conn):
    add_subscribers(conn, ["a@list.example", "b@list.example", "c@list.example"])
    return add_mailout(conn)


# --- authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers, body",
    [
        ({}, {}),
        ({}, {"auth_token": "wrong-secret-wrong-secret"}),
        ({"Authorization": "Bearer wrong-secret-wrong-secret"}, {}),
        ({"Authorization": f"Basic {SHARED_SECRET}"}, {}),
        ({"Authorization": "Bearer "}, {}),
        ({"Authorization": f"Bearer {SHARED_SECRET}x"}, {}),
        ({}, {"auth_token": 12345}),
    ],
)
def test_missing_or_wrong_secret_is_401_and_changes_nothing(client, conn, ready_mailout, headers, body):
    response = client.post("/send-mailout", json={"mailout_id": str(ready_mailout), **body}, headers=headers)
    assert response.status_code == 401
    assert "secret" in response.json["error"]
    assert mailout_row(conn, ready_mailout)["status"] == "ready"
    assert ledger(conn, ready_mailout) == {}


def test_auth_token_in_the_body_works(client, conn, ready_mailout):
    response = client.post(
        "/send-mailout", json={"mailout_id": str(ready_mailout), "auth_token": SHARED_SECRET, "wait": True}
    )
    assert response.status_code == 200
    assert response.json["sent"] == 3


def test_the_secret_is_never_echoed(client, ready_mailout):
    response = client.post("/send-mailout", json={"mailout_id": "nope", "auth_token": SHARED_SECRET})
    assert SHARED_SECRET not in response.get_data(as_text=True)


# --- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"{}", "mailout_id is missing"),
        (b'{"mailout_id": null}', "mailout_id is missing"),
        (b'{"mailout_id": ""}', "mailout_id is empty"),
        (b'{"mailout_id": 42}', "mailout_id must be a string"),
        (b'{"mailout_id": ["x"]}', "mailout_id must be a string"),
        (b'{"mailout_id": "12345"}', "mailout_id is not a UUID"),
        (b'{"data": "x"}', "mailout_id is missing"),
    ],
)
def test_bad_bodies_are_400_with_a_message_naming_the_problem(client, conn, ready_mailout, raw, message):
    response = client.post("/send-mailout", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json["error"]
    assert mailout_row(conn, ready_mailout)["status"] == "ready"


@pytest.mark.parametrize(
    "properties, message",
    [
        ({}, "Notion property 'mailout_id' is missing"),
        ({"mailout_id": rich_text("")}, "Notion property 'mailout_id' is empty"),
        ({"mailout_id": rich_text("not-a-uuid")}, "Notion property 'mailout_id' is not a UUID"),
        ({"mailout_id": {"type": "number", "number": 7}}, "Notion property 'mailout_id' must be text"),
        ({"mailout_id": {"type": "formula", "formula": {"type": "number", "number": 1}}}, "must be text"),
        ({"mailout_id": 17}, "must be text"),
    ],
)
def test_bad_notion_bodies_name_the_property(client, properties, message):
    response = client.post("/send-mailout", json=notion_body(properties), headers=AUTH)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_a_notion_page_without_the_property_lists_the_properties_it_has(client):
    properties = {"Name": {"type": "title", "title": []}, "Mailout ID": rich_text(str(uuid4()))}
    response = client.post("/send-mailout", json=notion_body(properties), headers=AUTH)
    assert response.status_code == 400
    error = response.json["error"]
    assert "Notion property 'mailout_id' is missing" in error
    assert "'Name'" in error and "'Mailout ID'" in error and "NOTION_MAILOUT_PROPERTY" in error


def test_the_listed_property_names_are_bounded_and_sanitised(client):
    hostile = "evil\u202e\n\x00" + "x" * 500
    properties = {hostile: rich_text("a"), **{f"p{i}": rich_text("a") for i in range(30)}}
    raw = json.dumps(notion_body(properties))  # in this order: the test client's json= sorts keys
    response = client.post("/send-mailout", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json["error"]
    assert "\u202e" not in error and "\n" not in error and "\x00" not in error and "x" * 41 not in error
    # notion_body's page has a Name property of its own, listed first.
    assert "'evil\ufffd\ufffd\ufffd" in error and "'p7'" in error and "'p8'" not in error
    assert "and 22 more" in error and len(error) < 1000


def test_a_notion_page_with_no_properties_at_all_says_so(client):
    body = notion_body({})
    body["data"]["properties"] = {}
    response = client.post("/send-mailout", json=body, headers=AUTH)
    assert response.status_code == 400 and "no properties" in response.json["error"]


def test_notion_page_without_properties(client):
    body = notion_body({})
    del body["data"]["properties"]
    response = client.post("/send-mailout", json=body, headers=AUTH)
    assert response.status_code == 400
    assert "Notion property 'mailout_id'" in response.json["error"]


def test_unknown_mailout_is_404(client):
    missing = uuid4()
    response = client.post("/send-mailout", json={"mailout_id": str(missing)}, headers=AUTH)
    assert response.status_code == 404
    assert str(missing) in response.json["error"]


@pytest.mark.parametrize("status", ["draft", "sending", "sent", "failed"])
def test_a_mailout_that_is_not_ready_is_409_naming_its_status(client, conn, status):
    add_subscribers(conn, ["a@list.example"])
    mailout_id = add_mailout(conn, status=status)
    response = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert response.status_code == 409
    assert f"'{status}'" in response.json["error"]
    assert response.json["status"] == status
    assert ledger(conn, mailout_id) == {}


def test_a_draft_409_says_how_to_make_it_ready(client, conn):
    mailout_id = add_mailout(conn, status="draft")
    response = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert response.status_code == 409 and response.json["status"] == "draft"
    assert f"mailout ready {mailout_id}" in response.json["error"]


def test_only_a_draft_409_names_the_ready_command(client, conn):
    mailout_id = add_mailout(conn, status="sent")
    response = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert response.status_code == 409 and "mailout ready" not in response.json["error"]


def test_an_empty_mailout_is_422(client, conn):
    mailout_id = add_mailout(conn, subject=" ")
    response = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert response.status_code == 422
    assert "subject" in response.json["error"]
    assert mailout_row(conn, mailout_id)["status"] == "ready"


def test_a_body_over_64_kib_is_413_and_changes_nothing(client, conn, ready_mailout):
    body = json.dumps({"mailout_id": str(ready_mailout), "padding": "x" * (64 * 1024)})
    response = client.post("/send-mailout", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "64 KiB" in response.json["error"]
    assert mailout_row(conn, ready_mailout)["status"] == "ready"


def test_wrong_method_and_unknown_path_answer_json(client):
    assert client.get("/send-mailout").status_code == 405
    response = client.get("/nothing-here")
    assert response.status_code == 404 and "error" in response.json


# --- starting a send -------------------------------------------------------------


def test_default_answer_is_202_right_after_the_claim_then_sending_goes_on(app, client, conn, ready_mailout, moto_ses):
    response = client.post("/send-mailout", json={"mailout_id": str(ready_mailout)}, headers=AUTH)

    assert response.status_code == 202
    assert response.json["mailout_id"] == str(ready_mailout)
    assert response.json["recipients"] == 3
    assert response.json["status_url"] == f"https://news.example.test/mailouts/{ready_mailout}"
    wait_for_background_sends(app)
    assert mailout_row(conn, ready_mailout)["status"] == "sent"
    assert set(ledger(conn, ready_mailout).values()) == {"sent"}
    assert len(moto_ses.sent_messages) == 3


@pytest.mark.parametrize("how", ["body", "query"])
def test_wait_keeps_the_request_open_and_answers_200_with_the_summary(client, conn, ready_mailout, how):
    body = {"mailout_id": str(ready_mailout)}
    url = "/send-mailout"
    if how == "body":
        body["wait"] = True
    else:
        url += "?wait=1"
    response = client.post(url, json=body, headers=AUTH)
    assert response.status_code == 200
    summary = response.json
    assert summary["status"] == "sent"
    assert (summary["recipients"], summary["sent"], summary["failed"], summary["skipped"]) == (3, 3, 0, 0)
    assert mailout_row(conn, ready_mailout)["status"] == "sent"


def test_a_second_webhook_for_the_same_mailout_is_409(client, ready_mailout):
    first = client.post("/send-mailout?wait=1", json={"mailout_id": str(ready_mailout)}, headers=AUTH)
    second = client.post("/send-mailout?wait=1", json={"mailout_id": str(ready_mailout)}, headers=AUTH)
    assert first.status_code == 200
    assert second.status_code == 409 and second.json["status"] == "sent"


@pytest.mark.parametrize(
    "prop",
    [
        "rich_text",
        "title",
        "formula",
        "plain",
        "rich_text_in_pieces",
    ],
)
def test_notion_webhook_body_starts_the_mailout(client, conn, ready_mailout, moto_ses, prop):
    value = str(ready_mailout)
    properties = {
        "rich_text": {"mailout_id": rich_text(value)},
        "title": {"mailout_id": {"id": "t", "type": "title", "title": [{"type": "text", "plain_text": value}]}},
        "formula": {"mailout_id": {"id": "f", "type": "formula", "formula": {"type": "string", "string": value}}},
        "plain": {"mailout_id": value},
        "rich_text_in_pieces": {
            "mailout_id": {
                "type": "rich_text",
                "rich_text": [
                    {"type": "text", "text": {"content": value[:10]}},
                    {"type": "text", "plain_text": value[10:]},
                ],
            }
        },
    }[prop]
    response = client.post("/send-mailout?wait=1", json=notion_body(properties), headers=AUTH)
    assert response.status_code == 200, response.json
    assert response.json["sent"] == 3
    assert len(moto_ses.sent_messages) == 3


def test_notion_property_name_is_configurable(settings, pool, recording_transport, conn, ready_mailout):
    app = create_app(with_settings(settings, notion_mailout_property="Mailout ID"), pool=pool, transport=recording_transport)
    client = app.test_client()
    body = notion_body({"Mailout ID": rich_text(str(ready_mailout)), "mailout_id": rich_text("ignored")})
    response = client.post("/send-mailout?wait=1", json=body, headers=AUTH)
    assert response.status_code == 200
    assert sorted(recording_transport.addresses) == ["a@list.example", "b@list.example", "c@list.example"]


def test_body_is_read_whatever_the_content_type(client, ready_mailout):
    response = client.post(
        "/send-mailout?wait=1",
        data=json.dumps({"mailout_id": str(ready_mailout)}),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert response.status_code == 200


# --- status and health ---------------------------------------------------------------


def test_mailout_status_needs_the_secret_and_shows_counts(client, ready_mailout):
    assert client.get(f"/mailouts/{ready_mailout}").status_code == 401
    client.post("/send-mailout?wait=1", json={"mailout_id": str(ready_mailout)}, headers=AUTH)
    response = client.get(f"/mailouts/{ready_mailout}", headers=AUTH)
    assert response.status_code == 200
    assert response.json["status"] == "sent"
    assert response.json["counts"] == {"sent": 3}
    assert response.json["recipients"] == 3
    assert response.json["sent_at"] is not None


def test_mailout_status_bad_and_unknown_ids(client):
    assert client.get("/mailouts/not-a-uuid", headers=AUTH).status_code == 400
    assert client.get(f"/mailouts/{uuid4()}", headers=AUTH).status_code == 404


def test_healthz_answers_200_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_without_a_database(settings, recording_transport):
    from amazonsender import db

    unreachable = db.create_pool("postgresql://postgres@127.0.0.1:1/nothing", max_size=2)
    try:
        app = create_app(settings, pool=unreachable, transport=recording_transport)
        response = app.test_client().get("/healthz")
    finally:
        unreachable.close()
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)
