"""Real data against the service as production runs it: a list from a real
CRM (encoded words, control characters and 2,000-character names, non-ASCII
addresses), a sender name with an accent, subjects with line breaks and bodies
with braces, sent through gunicorn and Postgres to the SES stand-in, which
refuses what SES refuses. On both SES APIs: every addressable subscriber gets
exactly one email whose To header names exactly them, nobody is left
'sending' or 'unknown' without an SES call, and a bad row fails alone.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import getaddresses
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.support.db import add_mailout, add_subscribers, mailout_row
from tests.support.settings import SHARED_SECRET
from tests.support.processes import run_gunicorn, service_env, start_send, wait_for_status
from tests.support.ses_standin import SesStandIn

SENDER = "Café Gazette <news@example.test>"
CRLF_BCC_WORD = "=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?="  # decodes to "x\r\nBcc: a@evil.com"
# Stored as a CRM export had them, before import checked anything: rows the
# run must cope with.
READERS = {
    "plain@example.org": "Ann Lee",
    "crlf-word@example.org": CRLF_BCC_WORD,
    "bcc-name@example.org": "Bcc: attacker@evil.example",
    "q-word@example.org": "=?utf-8?q?Bcc=3A_attacker=40evil.example?= x",
    "controls@example.org": "Ann\x0bLee\x0c\x85Jr\u2028\u2029\x1b[31m",
    "long@example.org": "Annabelle " * 200,
    "long-utf8@example.org": "Ж😀" * 1000,
    "quotes@example.org": 'Ann "The Boss" \\ Lee, Jr.',
    "zoe@example.org": "Zoë 😀",
    "braces@example.org": "{{t}} }} {{{t}}}",
    "reader@bücher.example": "Bücherwurm",
}
UNADDRESSABLE = {"üser@example.org": "Ünal"}
# What SES sees for each: the domain in IDNA form.
ASCII_ADDRESS = {address: address for address in READERS} | {"reader@bücher.example": "reader@xn--bcher-kva.example"}
BODY = (
    "<html><body><h1>Braces: }} and {single} and a lone }</h1>"
    "<p>Code: <code>function() { return 1; }</code></p></body></html>"
)
PATHS = {
    # One SendEmail per recipient.
    "SendEmail": {"SES_BULK_SEND": "off"},
    # SendBulkEmail, 5 recipients a call at this pace.
    "SendBulkEmail": {"SES_BULK_SEND": "auto"},
}


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        yield standin


def env(tmp_path, database_url, ses, path: str, **values) -> dict:
    return service_env(
        tmp_path, database_url, ses, SES_FROM_EMAIL=SENDER, NEWSLETTER_NAME="Café Gazette",
        RATE_LIMIT_PER_SEC="200", BATCH_SIZE="7",
        **PATHS[path], **values,
    )


def as_read(display: str) -> str:
    """A display name decoded as RFC 2047 says (adjacent words joined)."""
    return str(make_header(decode_header(display)))


def raw_mailboxes(raw: bytes, name: str) -> list[tuple[str, str]]:
    """(display name as RFC 2047 decodes it, address) of each mailbox of
    header `name`, read from the bytes on the wire."""
    values = email.message_from_bytes(raw, policy=email.policy.compat32).get_all(name) or []
    unfolded = [re.sub(r"\r?\n", "", value) for value in values]
    return [(as_read(display), address) for display, address in getaddresses(unfolded)]


def header_section(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def expected_name(name: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", name).split())[:200].rstrip()


@pytest.mark.parametrize("path", list(PATHS))
def test_every_addressable_reader_gets_one_email_naming_exactly_them(database_url, conn, ses, tmp_path, path):
    add_subscribers(conn, [*READERS, *UNADDRESSABLE], names={**READERS, **UNADDRESSABLE})
    mailout_id = add_mailout(conn, subject="Ünïcode news: }} {single}", body=BODY)

    with run_gunicorn(env(tmp_path, database_url, ses, path), tmp_path) as server:
        start_send(server, mailout_id)
        answer = wait_for_status(server, mailout_id, "sent", timeout=30)

    assert answer["counts"] == {"sent": len(READERS), "failed": 1}
    ledger = {
        row["email"]: row
        for row in conn.execute("SELECT email, status, error_message FROM send_logs WHERE mailout_id = %s", (mailout_id,))
    }
    assert ledger["üser@example.org"]["status"] == "failed"
    assert "SES cannot send to this address" in ledger["üser@example.org"]["error_message"]
    assert {email: row["status"] for email, row in ledger.items() if email in READERS} == dict.fromkeys(READERS, "sent")

    mine = [record for record in ses.sent if record.tags.get("mailout_id") == str(mailout_id)]
    assert all(record.is_bulk == (path == "SendBulkEmail") for record in mine)
    assert sorted(address for record in mine for address in record.to_addresses) == sorted(ASCII_ADDRESS.values())
    by_address = {record.to_addresses[0]: record for record in mine}
    for stored, name in READERS.items():
        record = by_address[ASCII_ADDRESS[stored]]
        message = record.message
        # The To header names exactly this recipient, under their name as text.
        assert record.header_to == [ASCII_ADDRESS[stored]]
        [(display, address)] = raw_mailboxes(record.raw, "To")
        assert address == ASCII_ADDRESS[stored]
        # The name as text; a very long one cut (at 200 characters, or
        # shorter where its encoded form would not fit a header line).
        assert display == expected_name(name) or (len(name) > 200 and expected_name(name).startswith(display))
        for header in ("Bcc", "Cc"):
            assert message[header] is None
        # The sender's name decodes back; the subject too.
        assert raw_mailboxes(record.raw, "From") == [("Café Gazette", "news@example.test")]
        assert message["Subject"] == "Ünïcode news: }} {single}"
        head = header_section(record.raw)
        assert head.isascii() and all(len(line) <= 998 for line in head.split(b"\r\n"))
        html = message.get_body(("html",)).get_content()
        assert "Braces: }} and {single} and a lone }" in html and "{ return 1; }" in html
        # What the law asks: who sends it, from where, and a way out.
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert "subscribed to Café Gazette." in text and "1 Main Street, Springfield\nUnsubscribe: https://" in text


@pytest.mark.parametrize("path", list(PATHS))
def test_the_unsubscribe_link_of_each_path_works(database_url, conn, ses, tmp_path, path):
    [subscriber_id] = add_subscribers(conn, ["plain@example.org"], names={"plain@example.org": "Ann"})
    mailout_id = add_mailout(conn, body=BODY)

    with run_gunicorn(env(tmp_path, database_url, ses, path), tmp_path) as server:
        start_send(server, mailout_id)
        wait_for_status(server, mailout_id, "sent", timeout=30)
        [record] = [r for r in ses.sent if r.tags.get("mailout_id") == str(mailout_id)]
        message = record.message
        header_url = str(message["List-Unsubscribe"]).strip("<>")
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert "{" not in header_url and "}" not in header_url
        assert header_url in html.replace("&amp;", "&") and header_url in text
        token = parse_qs(urlparse(header_url).query)["token"][0]
        response = requests.post(f"{server.url}/unsubscribe", params={"token": token}, timeout=10)

    assert response.status_code == 200, response.text
    status = conn.execute("SELECT status FROM subscribers WHERE id = %s", (subscriber_id,)).fetchone()["status"]
    assert status == "unsubscribed"


def test_a_body_with_template_braces_arrives_unchanged_through_sendemail(database_url, conn, ses, tmp_path):
    add_subscribers(conn, [f"r{i}@example.org" for i in range(6)])
    body = "<html><body><p>Hello {{name}}, see {{#if x}}this{{/if}} and {{{raw}}} }}</p></body></html>"
    mailout_id = add_mailout(conn, subject="{{subject}} stays", body=body)

    with run_gunicorn(env(tmp_path, database_url, ses, "SendBulkEmail"), tmp_path) as server:
        start_send(server, mailout_id)
        wait_for_status(server, mailout_id, "sent", timeout=30)

    mine = [r for r in ses.sent if r.tags.get("mailout_id") == str(mailout_id)]
    # Not a template: SES would read "{{" as a variable. One SendEmail each.
    assert len(mine) == 6 and not any(r.is_bulk for r in mine)
    for record in mine:
        assert record.message["Subject"] == "{{subject}} stays"
        html = record.message.get_body(("html",)).get_content()
        assert "Hello {{name}}, see {{#if x}}this{{/if}} and {{{raw}}} }}" in html


BAD_SUBJECTS = {
    "CR LF": "Spring news\r\nBcc: a@evil.example",
    "LF": "Spring\nnews",
    "VT": "Spring\x0bnews",
    "FF": "Spring\x0cnews",
    "NEL": "Spring\x85news",
    "LINE SEPARATOR": "Spring\u2028news",
    "tab": "Spring\tnews",
    "too long": "x" * 401,
}


@pytest.mark.parametrize("subject", list(BAD_SUBJECTS.values()), ids=list(BAD_SUBJECTS))
def test_a_subject_that_cannot_be_sent_is_refused_before_anything_is_claimed(database_url, conn, ses, tmp_path, subject):
    add_subscribers(conn, ["a@example.org", "b@example.org"])
    mailout_id = add_mailout(conn, subject=subject)

    with run_gunicorn(env(tmp_path, database_url, ses, "SendEmail"), tmp_path) as server:
        answer = requests.post(
            f"{server.url}/send-mailout", json={"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET}, timeout=10
        )
        test = requests.post(
            f"{server.url}/send-mailout",
            json={"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET, "test": True, "to": ["t@example.org"]},
            timeout=10,
        )

    assert answer.status_code == 422 and "subject" in answer.json()["error"], answer.text
    assert test.status_code == 422, test.text
    assert mailout_row(conn, mailout_id)["status"] == "ready"
    assert conn.execute("SELECT count(*) AS n FROM send_logs").fetchone()["n"] == 0
    assert ses.send_requests == []


def test_a_test_send_to_an_odd_name_goes_out_naming_only_that_address(database_url, conn, ses, tmp_path):
    add_subscribers(conn, ["crlf-word@example.org"], names={"crlf-word@example.org": CRLF_BCC_WORD})
    mailout_id = add_mailout(conn, body=BODY)

    with run_gunicorn(env(tmp_path, database_url, ses, "SendEmail"), tmp_path) as server:
        response = requests.post(
            f"{server.url}/send-mailout",
            json={
                "mailout_id": str(mailout_id),
                "auth_token": SHARED_SECRET,
                "test": True,
                "to": ["crlf-word@example.org", "Zoë <zoe@bücher.example>"],
            },
            timeout=10,
        )

    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["sent", "sent"]
    first, second = ses.sent
    assert first.header_to == ["crlf-word@example.org"] and first.message["Bcc"] is None
    assert raw_mailboxes(first.raw, "To") == [(CRLF_BCC_WORD, "crlf-word@example.org")]
    assert second.to_addresses == ["zoe@xn--bcher-kva.example"] and second.header_to == ["zoe@xn--bcher-kva.example"]
    assert mailout_row(conn, mailout_id)["status"] == "ready"



def test_a_rendering_failure_from_sns_fails_that_row_alone(database_url, conn, ses, tmp_path, sns_signer):
    """SES took a SendBulkEmail entry and could not render it: the event
    arrives through SNS at the real service, signed, and that one row
    becomes 'failed' with SES's reason; its subscriber stays active."""
    from tests.support.sns_signing import TOPIC_ARN, ses_sample

    add_subscribers(conn, [f"r{i}@example.org" for i in range(10)])
    mailout_id = add_mailout(conn, body=BODY)
    cert_file = tmp_path / "sns.pem"
    cert_file.write_bytes(sns_signer.certificate_pem)
    values = {"SNS_TOPIC_ARNS": TOPIC_ARN, "BENCH_SNS_CERT_FILE": str(cert_file)}

    with run_gunicorn(env(tmp_path, database_url, ses, "SendBulkEmail", **values), tmp_path, app="bench.snsapp:app") as server:
        start_send(server, mailout_id)
        wait_for_status(server, mailout_id, "sent", timeout=30)
        [victim, *_] = [r for r in ses.sent if r.tags.get("mailout_id") == str(mailout_id)]
        assert victim.is_bulk
        event = ses_sample(
            "rendering_failure_event",
            address=victim.to_addresses[0],
            ses_message_id=victim.message_id,
            mailout_id=mailout_id,
        )
        answer = requests.post(f"{server.url}/ses-events", json=sns_signer.envelope(event), timeout=10)
        status = requests.get(
            f"{server.url}/mailouts/{mailout_id}", headers={"Authorization": f"Bearer {SHARED_SECRET}"}, timeout=10
        ).json()

    assert answer.status_code == 200, answer.text
    row = conn.execute(
        "SELECT status, error_message FROM send_logs WHERE mailout_id = %s AND email = %s",
        (mailout_id, victim.to_addresses[0]),
    ).fetchone()
    assert row["status"] == "failed" and row["error_message"].startswith("SES could not render the email")
    assert status["counts"] == {"sent": 9, "failed": 1} and status["sent"] == 9
    subscriber = conn.execute("SELECT status FROM subscribers WHERE email = %s", (victim.to_addresses[0],)).fetchone()
    assert subscriber["status"] == "active"
