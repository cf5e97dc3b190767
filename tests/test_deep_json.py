"""JSON nested too deeply is a 4xx that changes nothing, never a 500.

Python's json parser raises RecursionError at about a thousand levels, and
`[` repeated 30,000 times fits in a 64 KiB body. POST /send-mailout and POST
/ses-events are tried before authentication and after it (for /ses-events:
a signed envelope whose Message nests too deeply), through Flask's test
client and once through a real gunicorn."""

from __future__ import annotations

import json
import random

import pytest
import requests

from amazonsender import jsontext
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import SHARED_SECRET
from tests.support.sns_signing import CERT_URL, TOPIC_ARN, ses_sample

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}
WRONG = {"Authorization": "Bearer wrong-secret-wrong-secret"}
ANN = "ann@list.example"
TOO_DEEP = f"nests JSON arrays and objects more than {jsontext.MAX_DEPTH} levels deep"

ARRAYS = b"[" * 30_000
# `{"a":` 30,000 times is 150,000 bytes, over the 64 KiB limit: 413 before
# anything is parsed. 13,000 times (65,000 bytes) is under it.
OBJECTS = b'{"a":' * 30_000
OBJECTS_UNDER_LIMIT = b'{"a":' * 13_000


def nested(depth: int, inner="x") -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


# --- the parser ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [ARRAYS, OBJECTS, OBJECTS_UNDER_LIMIT, ARRAYS.decode(), "[" * 65 + "]" * 65])
def test_too_deep_is_a_value_error_not_a_recursion_error(body):
    with pytest.raises(jsontext.TooDeep, match="more than 64 levels deep"):
        jsontext.loads(body)


def test_the_limit_is_exact():
    assert jsontext.loads(json.dumps(nested(64))) == nested(64)
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(json.dumps(nested(65)))
    deep_object = json.dumps({"a": json.loads(json.dumps(nested(63)))})
    assert depth_of(jsontext.loads(deep_object)) == 64


@pytest.mark.parametrize(
    "text",
    [
        # Brackets inside strings, escaped quotes and backslashes nest nothing.
        json.dumps({"s": "[" * 500, "t": '\\"[{' * 100, "u": ["]" * 300, "\\"]}),
        json.dumps([{"a": [1, {"b": "[[[\\\\\""}]}] * 200),
        json.dumps({"Message": json.dumps(nested(500))}),
    ],
)
def test_brackets_inside_strings_do_not_count(text):
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.loads(text.encode("utf-16")) == json.loads(text)


def test_random_documents_are_read_as_json_reads_them():
    rng = random.Random(11)

    def leaf():
        return rng.choice(["x", '"[{\\', 1, None, "}]", [], {}, ["]"]])

    def build(depth):
        """`depth` levels down one path, with leaves beside it on the way."""
        if depth == 0:
            return leaf()
        siblings = [leaf() for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.5:
            return [*siblings, build(depth - 1)] if rng.random() < 0.5 else [build(depth - 1), *siblings]
        return {**{f"k{i}{{": v for i, v in enumerate(siblings)}, "next[": build(depth - 1)}

    for _ in range(400):
        value = build(rng.randint(1, 90))
        text = json.dumps(value)
        if depth_of(value) > jsontext.MAX_DEPTH:
            with pytest.raises(jsontext.TooDeep):
                jsontext.loads(text)
        else:
            assert jsontext.loads(text) == value


@pytest.mark.parametrize("text", ['"unterminated [[[[', '["a" ' + "[" * 100, "]]]" + "[" * 70, "{" * 70 + '"'])
def test_invalid_json_is_still_a_value_error(text):
    with pytest.raises(ValueError):
        jsontext.loads(text)


def test_what_is_not_json_text_is_still_a_type_error():
    with pytest.raises(TypeError):
        jsontext.loads(None)


# --- storable strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"a\\u0000b"', "a\ufffdb"),
        ('["\\ud800", "\\udfff\\ud800x", "\\ud83d\\ude00"]', ["\ufffd", "\ufffd\ufffdx", "\U0001f600"]),
        ('{"\\u0000": {"k": ["\\u0000", 1, null, true]}}', {"\ufffd": {"k": ["\ufffd", 1, None, True]}}),
        ('{"a\\u0000": 1, "a\\ud800": 2}', {"a\ufffd": 2}),
    ],
)
def test_storable_replaces_nul_and_lone_surrogates(conn, text, expected):
    value = jsontext.loads(text)
    for source in (text, text.encode(), text.encode("utf-16"), None):
        assert jsontext.storable(value, source) == expected
    # What Postgres takes, as text and as jsonb.
    stored = conn.execute("SELECT %s::jsonb AS j", (json.dumps(jsontext.storable(value)),)).fetchone()
    assert stored["j"] == expected


@pytest.mark.parametrize(
    "text",
    ['{"a": ["b", {"c": 1.5}], "d": null}', '"\\\\u0000"', '["\\ud83d\\ude00", "\\u00e9"]', '"한국어"', "[]", "7"],
)
def test_storable_gives_back_the_value_itself_when_nothing_is_replaced(text):
    value = json.loads(text)
    assert jsontext.storable(value) is value
    assert jsontext.storable(value, text) is value
    assert jsontext.storable(value, text.encode()) is value


def test_storable_with_its_source_agrees_with_the_walk():
    """The shortcut (a look at the text) never skips a value the walk would
    change, for random documents of escapes, raw characters and both."""
    rng = random.Random(5)
    pieces = ["a", "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\\\u0000", "\\u00e9", "é", "\\u0041",
              "\\uD8FF", '\\"']
    for _ in range(2000):
        strings = ['"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) + '"' for _ in range(4)]
        text = "{" + f'{strings[0]}: [{strings[1]}, {strings[2]}], "k": {strings[3]}' + "}"
        value = json.loads(text)
        walked = jsontext.storable(value)
        assert jsontext.storable(value, text) == walked
        assert jsontext.storable(value, text.encode()) == walked
        assert json.dumps(walked, ensure_ascii=False).encode("utf-8")  # no surrogate left
        assert "\x00" not in json.dumps(walked, ensure_ascii=False)


# --- POST /send-mailout ------------------------------------------------------------------------


@pytest.fixture
def ready_mailout(conn):
    add_subscribers(conn, ["a@list.example", "b@list.example"])
    return add_mailout(conn)


def deep_webhook_body(mailout_id, depth=100) -> bytes:
    """A body that would start the mailout, but for one field nested too deeply."""
    return json.dumps({"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET, "x": nested(depth)}).encode()


@pytest.mark.parametrize("body", [ARRAYS, OBJECTS_UNDER_LIMIT, "deep webhook"])
@pytest.mark.parametrize(
    "headers, status", [({}, 401), (WRONG, 401), (AUTH, 400)], ids=["no-secret", "wrong-secret", "secret"]
)
def test_send_mailout_refuses_deep_json(client, conn, ready_mailout, body, headers, status):
    if body == "deep webhook":
        body = deep_webhook_body(ready_mailout)
    response = client.post("/send-mailout", data=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == status
    if status == 400:
        assert response.json["error"] == f"the request body {TOO_DEEP}"
    assert mailout_row(conn, ready_mailout)["status"] == "ready"
    assert ledger(conn, ready_mailout) == {}


@pytest.mark.parametrize("headers", [{}, WRONG, AUTH])
def test_send_mailout_refuses_a_body_over_the_limit_with_413(client, conn, ready_mailout, headers):
    response = client.post("/send-mailout", data=OBJECTS, headers=headers)
    assert response.status_code == 413
    assert mailout_row(conn, ready_mailout)["status"] == "ready"


def test_send_mailout_reads_a_body_at_the_limit(client, conn):
    # 64 levels is read: the mailout id is then what is wrong.
    body = {"mailout_id": "not-a-uuid", "x": nested(jsontext.MAX_DEPTH - 1)}
    response = client.post("/send-mailout", json=body, headers=AUTH)
    assert response.status_code == 400 and "not a UUID" in response.json["error"]


# --- POST /ses-events ----------------------------------------------------------------------------


def nothing_changed(conn, mailout_id) -> bool:
    ses_events = conn.execute("SELECT count(*) AS n FROM ses_events").fetchone()["n"]
    ann = conn.execute("SELECT status FROM subscribers WHERE email = %s", (ANN,)).fetchone()["status"]
    return ses_events == 0 and ann == "active" and ledger(conn, mailout_id) == {ANN: "sent"}


@pytest.mark.parametrize("body", [ARRAYS, OBJECTS_UNDER_LIMIT], ids=["arrays", "objects"])
def test_ses_events_refuses_a_deep_body_before_checking_anything(sns_client, sns_signer, conn, sent_mailout, body):
    response = sns_client.post("/ses-events", data=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json["error"] == f"the body {TOO_DEEP}"
    assert sns_signer.fetched == []
    assert nothing_changed(conn, sent_mailout)


def test_ses_events_refuses_a_body_over_the_limit_with_413(sns_client, sns_signer, conn, sent_mailout):
    response = sns_client.post("/ses-events", data=OBJECTS, headers={"Content-Type": "text/plain"})
    assert response.status_code == 413
    assert sns_signer.fetched == [] and nothing_changed(conn, sent_mailout)


def test_ses_events_refuses_a_nested_envelope(sns_client, sns_signer, conn, sent_mailout):
    """A signed envelope with one more field, nested too deeply: refused as
    the body it is, before the signature (so before any fetch)."""
    message = ses_sample("bounce_permanent_event", address=ANN, ses_message_id="0100-ses-id", mailout_id=sent_mailout)
    envelope = {**sns_signer.envelope(message), "Extra": nested(200)}
    response = sns_client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status_code == 400 and response.json["error"] == f"the body {TOO_DEEP}"
    assert sns_signer.fetched == []
    assert nothing_changed(conn, sent_mailout)


@pytest.mark.parametrize(
    "message",
    [
        ARRAYS.decode(),
        '{"a":' * 5_000,
        # A real SES event that would fail Ann's row, with one field too deep.
        "rendering failure",
    ],
    ids=["arrays", "objects", "event"],
)
def test_ses_events_refuses_a_signed_message_that_nests_too_deeply(
    sns_client, sns_signer, conn, sent_mailout, message
):
    if message == "rendering failure":
        event = json.loads(
            ses_sample("rendering_failure_event", address=ANN, ses_message_id="0100-ses-id", mailout_id=sent_mailout)
        )
        event["failure"]["detail"] = nested(100)
        message = json.dumps(event)
    envelope = sns_signer.envelope(message, version="2")
    response = sns_client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert response.json["error"] == f"the SES event in Message {TOO_DEEP}"
    # The signature was checked, and is fine; the event is what is refused.
    assert sns_signer.fetched == [CERT_URL]
    assert nothing_changed(conn, sent_mailout)
    # SNS may deliver it again: still 400, still nothing.
    again = sns_client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert again.status_code == 400 and nothing_changed(conn, sent_mailout)


def test_ses_events_reads_a_signed_message_at_the_limit(sns_client, sns_signer, conn):
    envelope = sns_signer.envelope(json.dumps({"eventType": "Send", "x": nested(jsontext.MAX_DEPTH - 1)}))
    response = sns_client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200 and response.json["status"] == "processed"
    assert conn.execute("SELECT event_type FROM ses_events").fetchone()["event_type"] == "Send"


# --- through gunicorn ------------------------------------------------------------------------------


@pytest.fixture
def gunicorn_service(database_url, tmp_path):
    from tests.support.processes import run_gunicorn, service_env
    from tests.support.ses_standin import SesStandIn

    with SesStandIn() as ses:
        # Only bodies refused before the signature is checked are sent here:
        # gunicorn's process is not under pytest-socket, and a signed message
        # would make it fetch the certificate from AWS.
        env = service_env(tmp_path, database_url, ses, SNS_TOPIC_ARNS=TOPIC_ARN)
        with run_gunicorn(env, tmp_path) as server:
            yield server


def test_gunicorn_answers_deep_and_huge_bodies_with_4xx(gunicorn_service, conn):
    add_subscribers(conn, [ANN])
    mailout_id = add_mailout(conn)
    url = gunicorn_service.url
    cases = [
        ("/send-mailout", ARRAYS, {}, 401),
        ("/send-mailout", ARRAYS, WRONG, 401),
        ("/send-mailout", ARRAYS, AUTH, 400),
        ("/send-mailout", OBJECTS_UNDER_LIMIT, AUTH, 400),
        # Its auth_token is in the part that cannot be read.
        ("/send-mailout", deep_webhook_body(mailout_id), {}, 401),
        ("/send-mailout", OBJECTS, AUTH, 413),
        ("/ses-events", ARRAYS, {}, 400),
        ("/ses-events", OBJECTS_UNDER_LIMIT, {}, 400),
        ("/ses-events", json.dumps({"Type": "Notification", "Extra": nested(100)}).encode(), {}, 400),
        ("/ses-events", OBJECTS, {}, 413),
    ]
    for path, body, headers, status in cases:
        response = requests.post(url + path, data=body, headers={**headers, "Content-Type": "text/plain"}, timeout=10)
        assert (path, response.status_code) == (path, status), (body[:20], response.text, gunicorn_service.log())
        assert "error" in response.json()
        if status == 400:
            assert TOO_DEEP in response.json()["error"]

    # Without a Content-Length (chunked), a body over 64 KiB is 413 too,
    # rather than cut off at 64 KiB and read; one of exactly 64 KiB is read.
    limit = 64 * 1024
    for path in ("/send-mailout", "/ses-events"):
        for size, status in ((100_000, 413), (limit + 1, 413), (limit, 400), (limit - 1, 400)):
            body = b" " * (size - 1) + b"x"
            chunks = (body[i : i + 5000] for i in range(0, size, 5000))
            response = requests.post(url + path, data=chunks, headers=AUTH, timeout=10)
            assert response.status_code == status, (path, size, response.text)
        # With a Content-Length, exactly 64 KiB is read (and is not JSON).
        response = requests.post(url + path, data=b" " * (limit - 1) + b"x", headers=AUTH, timeout=10)
        assert response.status_code == 400, (path, response.text)

    assert mailout_row(conn, mailout_id)["status"] == "ready" and ledger(conn, mailout_id) == {}
    assert conn.execute("SELECT count(*) AS n FROM ses_events").fetchone()["n"] == 0
    log = gunicorn_service.log(tail=None)
    assert "Traceback" not in log and "RecursionError" not in log and "unexpected error" not in log
