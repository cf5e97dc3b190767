"""The shortcuts that keep /ses-events and /unsubscribe cheap give the same
answers as the long way round: the one-statement event insert, autocommit
connections, the bare-address shortcut, the surrogate check, and the
unsubscribe token fast path."""

from __future__ import annotations

import json
import random
import uuid
from email.utils import parseaddr

import pytest

from amazonsender import db, events, store
from amazonsender.web.ses_events import read_json
from tests.support.db import add_mailout, add_subscribers
from tests.support.sns_signing import ses_sample

ANN = "ann@list.example"


def notify(pool, message: str, sns_id: str | None = None):
    with db.single_statement(pool) as conn:
        return events.process_notification(
            conn, {"Type": "Notification", "MessageId": sns_id or f"sns-{uuid.uuid4()}", "Message": message}
        )


def mailout_sent_to_ann(conn, ses_message_id: str):
    """A mailout whose ledger says it went to Ann with this SES message id."""
    (ann_id,) = add_subscribers(conn, [ANN])
    mailout_id = add_mailout(conn, status="sent")
    conn.execute(
        "INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id)"
        " VALUES (%s, %s, %s, 'sent', %s)",
        (mailout_id, ann_id, ANN, ses_message_id),
    )
    return mailout_id


# --- the connection ----------------------------------------------------------------


def test_a_single_statement_connection_goes_back_to_the_pool_as_it_came(pool):
    with db.single_statement(pool) as conn:
        assert conn.autocommit
        conn.execute("SELECT 1")
    with pool.connection() as conn:
        assert not conn.autocommit
        conn.execute("SELECT 1")
        assert conn.info.transaction_status.name == "INTRANS"


def test_a_failed_single_statement_leaves_a_working_connection(pool):
    import psycopg

    with pytest.raises(psycopg.errors.UndefinedTable):
        with db.single_statement(pool) as conn:
            conn.execute("SELECT * FROM no_such_table")
    with pool.connection() as conn:
        assert not conn.autocommit
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1


# --- the one statement ---------------------------------------------------------------


def test_an_event_inside_a_transaction_that_rolls_back_leaves_nothing(pool, conn):
    add_subscribers(conn, [ANN])
    message = ses_sample("complaint_notification", address=ANN, ses_message_id="m")
    with pytest.raises(RuntimeError):
        with pool.connection() as c:
            assert events.process_notification(c, {"Type": "Notification", "MessageId": "sns-1", "Message": message})
            raise RuntimeError("after the event")
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "active"
    assert conn.execute("SELECT count(*) AS n FROM ses_events").fetchone()["n"] == 0


def test_the_payload_is_stored_as_it_came(pool, conn):
    message = ses_sample("bounce_permanent_notification", address=ANN, ses_message_id="m")
    notify(pool, message)
    (row,) = conn.execute("SELECT payload FROM ses_events").fetchall()
    assert row["payload"] == json.loads(message)


def test_an_event_with_nothing_to_replace_keeps_its_text():
    message = ses_sample("bounce_permanent_notification", address=ANN, ses_message_id="m")
    event = events.parse_ses_event(message)
    assert event.payload_json is message


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800", "\\udc00"])
def test_an_event_with_something_replaced_is_stored_from_its_value(pool, conn, escape):
    message = ses_sample("bounce_permanent_notification", address=ANN, ses_message_id="m" + escape)
    event = events.parse_ses_event(message)
    assert event.payload_json is None and event.ses_message_id == "m\ufffd"
    assert event.payload == json.loads(message.replace(escape, "\\ufffd"))
    assert event.addresses == [ANN]
    notify(pool, message)
    row = conn.execute("SELECT ses_message_id, payload FROM ses_events").fetchone()
    assert row == {"ses_message_id": "m\ufffd", "payload": event.payload}


@pytest.mark.parametrize(
    "message, payload",
    [("hello from the console", "hello from the console"), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1})],
)
def test_an_unknown_message_is_stored_as_json(pool, conn, message, payload):
    assert notify(pool, message) == (True, "Unknown")
    assert conn.execute("SELECT payload FROM ses_events").fetchone()["payload"] == payload


def test_an_untagged_event_is_linked_by_its_ses_message_id(pool, conn):
    mailout_id = mailout_sent_to_ann(conn, ses_message_id="ses-1")
    notify(pool, ses_sample("delivery_notification", address=ANN, ses_message_id="ses-1"))
    assert conn.execute("SELECT mailout_id FROM ses_events").fetchone()["mailout_id"] == mailout_id
    assert conn.execute("SELECT status FROM send_logs").fetchone()["status"] == "delivered"


def test_an_event_with_an_empty_ses_message_id_is_linked_to_nothing(pool, conn):
    mailout_sent_to_ann(conn, ses_message_id="")
    notify(pool, ses_sample("delivery_notification", address=ANN, ses_message_id=""))
    assert conn.execute("SELECT mailout_id FROM ses_events").fetchone()["mailout_id"] is None
    assert conn.execute("SELECT status FROM send_logs").fetchone()["status"] == "sent"


def test_a_repeat_by_feedback_id_is_logged_and_not_applied(pool, conn, caplog):
    add_subscribers(conn, [ANN])
    body = json.loads(ses_sample("bounce_transient_notification", address=ANN, ses_message_id="m"))
    body["bounce"]["feedbackId"] = "feedback-1"
    assert notify(pool, json.dumps(body)) == (True, "Bounce")
    with caplog.at_level("INFO"):
        assert notify(pool, json.dumps(body)) == (True, "Bounce")
    assert any("published twice" in record.getMessage() for record in caplog.records)
    assert conn.execute("SELECT soft_bounces FROM subscribers").fetchone()["soft_bounces"] == 1
    # A complaint with the same feedbackId is another event: applied.
    complaint = json.loads(ses_sample("complaint_notification", address=ANN, ses_message_id="m"))
    complaint["complaint"]["feedbackId"] = "feedback-1"
    notify(pool, json.dumps(complaint))
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "complained"


def test_a_duplicate_message_id_changes_nothing_even_with_another_body(pool, conn):
    add_subscribers(conn, [ANN])
    notify(pool, ses_sample("delivery_notification", address=ANN, ses_message_id="m"), sns_id="sns-x")
    again = notify(pool, ses_sample("complaint_notification", address=ANN, ses_message_id="m"), sns_id="sns-x")
    assert again == (False, "Complaint")
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "active"


def test_every_effect_query_is_one_statement():
    assert any(effect == "render_failed" for effect, _, _ in store._RECORD_EVENT_SQL)
    for sql in store._RECORD_EVENT_SQL.values():
        assert sql.lstrip().startswith("WITH") and ";" not in sql


@pytest.mark.parametrize("link", ["tag", "ledger", None])
def test_a_rendering_failure_is_one_statement_like_the_others(pool, conn, link):
    """Its statement is built from store's parts: for each way of linking the
    mailout, it records the event once and fails Ann's row once."""
    mailout_id = mailout_sent_to_ann(conn, ses_message_id="ses-1")
    tag = {"tag": mailout_id, "ledger": "no-tag", None: "no-tag"}[link]
    message = ses_sample("rendering_failure_event", address=ANN, ses_message_id="ses-1" if link else "", mailout_id=tag)
    assert notify(pool, message, sns_id="sns-r") == (True, "Rendering Failure")
    assert notify(pool, message, sns_id="sns-r") == (False, "Rendering Failure")
    row = conn.execute("SELECT mailout_id FROM ses_events").fetchone()
    assert row["mailout_id"] == (mailout_id if link else None)
    status = conn.execute("SELECT status FROM send_logs").fetchone()["status"]
    assert status == ("failed" if link else "sent")


# --- addresses ----------------------------------------------------------------------------


def test_bare_addresses_are_what_parseaddr_makes_of_them():
    rng = random.Random(7)
    atom = "aZ09_%+-"

    def part():
        return "".join(rng.choice(atom) for _ in range(rng.randint(1, 4)))

    for _ in range(5000):
        value = ".".join(part() for _ in range(rng.randint(1, 3))) + "@" + ".".join(
            part() for _ in range(rng.randint(1, 3))
        )
        if events.PLAIN_ADDRESS.fullmatch(value):
            assert parseaddr(value)[1] == value
    for _ in range(20000):
        value = "".join(rng.choice("aZ09_%+-.@ <>\"',;:()[]\\") for _ in range(rng.randint(1, 12)))
        if events.PLAIN_ADDRESS.fullmatch(value):
            assert parseaddr(value)[1] == value


@pytest.mark.parametrize(
    "value, expected",
    [
        ("ann@x.org", ["ann@x.org"]),
        ("Ann <ann@x.org>", ["ann@x.org"]),
        ('"Lee, Ann" <ann@x.org>', ["ann@x.org"]),
        ("  ann@x.org  ", ["ann@x.org"]),
        ("ann@x.org.", [parseaddr("ann@x.org.")[1] or "ann@x.org."]),
        ("no-at", []),
    ],
)
def test_recipients_with_and_without_the_shortcut(value, expected):
    message = json.dumps({"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{"emailAddress": value}]}})
    assert events.parse_ses_event(message).addresses == expected


# --- the body -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\ud800"}',
        b'{"a": "x\\udfff"}',
        '{"a": "\ud800"}'.encode("utf-8", "surrogatepass"),
        '{"a": "\ud800"}'.encode("utf-16", "surrogatepass"),
        b"\xef\xbb\xbf" + '{"a": "\udc00"}'.encode("utf-8", "surrogatepass"),
    ],
)
def test_a_body_with_an_unpaired_surrogate_is_refused(body):
    with pytest.raises(UnicodeError):
        read_json(body)


@pytest.mark.parametrize(
    "body, value",
    [
        (b'{"a": "\\u00e9\\ud83d\\ude00"}', {"a": "é😀"}),
        ('{"a": "한국어 é"}'.encode(), {"a": "한국어 é"}),
        ('{"a": "é"}'.encode("utf-16"), {"a": "é"}),
        (b'{"a": 1}', {"a": 1}),
    ],
)
def test_a_body_without_one_is_read(body, value):
    assert read_json(body) == value


# --- the answer ------------------------------------------------------------------------------


def test_the_answers_are_what_jsonify_writes(sns_app):
    from flask import jsonify

    from amazonsender.web.ses_events import ANSWERS

    with sns_app.app_context():
        for is_new, status in ((True, "processed"), (False, "duplicate")):
            assert ANSWERS[is_new] == jsonify(status=status).get_data()


def test_a_processed_message_is_answered_as_json(sns_client, sns_signer, conn):
    envelope = sns_signer.envelope(ses_sample("delivery_notification", address=ANN, ses_message_id="m"))
    for status in ("processed", "duplicate"):
        response = sns_client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.json == {"status": status}


# --- the pool's check ------------------------------------------------------------------------


def test_a_connection_the_server_ended_is_replaced_without_an_error(database_url, conn):
    import time

    pool = db.create_pool(database_url, max_size=2)
    try:
        pool.wait(timeout=10)
        with pool.connection() as c:
            pid = c.info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        with pool.connection() as c:
            assert c.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] != pid
        with db.single_statement(pool) as c:
            assert c.execute("SELECT 1 AS one").fetchone()["one"] == 1
    finally:
        pool.close()


def test_a_quiet_connection_is_handed_out_without_a_round_trip(pool, monkeypatch):
    from psycopg_pool import ConnectionPool

    round_trips = []
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda c: round_trips.append(c)))
    with pool.connection() as c:
        db.check_connection(c)
        assert round_trips == []


def test_a_connection_with_something_to_read_gets_the_round_trip(database_url, conn):
    import time

    import psycopg

    with psycopg.connect(database_url, **db.connect_kwargs()) as c:
        conn.execute("SELECT pg_terminate_backend(%s)", (c.info.backend_pid,))
        time.sleep(0.2)
        with pytest.raises(psycopg.OperationalError):
            db.check_connection(c)


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["ann@x.org"],
        ["Ann@X.org", "b@y"],
        ['a"b@x', "a\\b@x", "a,b@x", "{x}@y", " a@b ", "NULL", "null@x", "", "zoë@exämple.org", "x'y@z", "\\\"@x"],
    ],
)
def test_text_arrays_reach_postgres_as_they_are(conn, values):
    row = conn.execute("SELECT %s::text[] AS a", (store._text_array(values),)).fetchone()
    assert row["a"] == values


def test_addresses_with_quotes_and_backslashes_are_stored_and_matched(pool, conn):
    odd = '"a\\"b,{c}"@list.example'  # parseaddr keeps it as it is
    assert parseaddr(odd)[1] == odd
    add_subscribers(conn, [odd])
    body = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": odd}]},
            "mail": {"messageId": "m"}}
    notify(pool, json.dumps(body))
    assert conn.execute("SELECT addresses FROM ses_events").fetchone()["addresses"] == [odd]
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "complained"
