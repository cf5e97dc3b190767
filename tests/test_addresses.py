"""Addresses and names as SES and mail clients take them, the import's checks,
and the ledger rule for rows whose email cannot be written."""

from __future__ import annotations

import email
import email.policy
import io
from email.header import decode_header, make_header
from email.utils import getaddresses

import pytest

from amazonsender import sender
from amazonsender.addresses import (
    MAX_NAME_CHARS,
    AddressError,
    clean_name,
    encoded_words,
    header_line,
    is_one_address,
    mailbox,
    mailbox_header,
    normalize_address,
    ses_address,
    text_words,
)
from amazonsender.subscribers import import_csv
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue
from tests.support.settings import with_settings


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("Ann@Example.ORG", "Ann@example.org"),
        (" ann@bücher.de ", "ann@xn--bcher-kva.de"),
        ("ann@BÜCHER.de", "ann@xn--bcher-kva.de"),
        ("o'brien+news@mail.example.org", "o'brien+news@mail.example.org"),
        ("ann@xn--bcher-kva.de", "ann@xn--bcher-kva.de"),
    ],
)
def test_addresses_are_stored_with_their_domain_in_idna_form(value, stored):
    assert normalize_address(value) == stored


@pytest.mark.parametrize(
    "value",
    ["üser@example.org", "ann@example", "", "a\x00b@example.org", "ann@exa mple.org", "ann\r\n@example.org", "a@b@c.org"],
)
def test_addresses_ses_cannot_take_are_refused_with_a_reason(value):
    with pytest.raises(AddressError) as raised:
        normalize_address(value)
    assert str(raised.value)


def test_a_non_ascii_local_part_is_refused_saying_why():
    with pytest.raises(AddressError, match="SES cannot send to addresses with non-ASCII characters"):
        normalize_address("üser@example.org")


def test_a_stored_address_is_made_ascii_at_send_time_or_refused():
    assert ses_address("ann@example.org") == "ann@example.org"
    assert ses_address("ann@bücher.test") == "ann@xn--bcher-kva.test"
    with pytest.raises(AddressError):
        ses_address("üser@example.org")


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("  Ann   Lee ", "Ann Lee"),
        ("Ann\r\nBcc: x@evil.example", "Ann Bcc: x@evil.example"),
        ("a\x00b\x0bc\x0cd\x85e\u2028f\u2029g\x7fh\x1bi", "a b c d e f g h i"),
        ("x" * 500, "x" * MAX_NAME_CHARS),
        (None, ""),
        ("\r\n\t", ""),
    ],
)
def test_names_are_cleaned_to_one_line_of_text(name, clean):
    assert clean_name(name) == clean


def decoded_mailboxes(header: bytes) -> list[tuple[str, str]]:
    value = header.decode("ascii").split(":", 1)[1].replace("\r\n", "")
    return [(str(make_header(decode_header(display))), address) for display, address in getaddresses([value])]


NAMES = [
    "Ann Lee",
    "Lee, Ann",
    'Ann "The Boss" \\ Lee',
    "=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=",
    "Zoë 😀 " * 20,
    "Ж" * 200,
    "<Ann> @ (Lee);",
    "Bcc: attacker@evil.example",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_to_header_names_exactly_the_recipient_with_the_name_as_text(name):
    header = mailbox_header("To", "ann@example.org", name)
    assert header.isascii()
    lines = header.rstrip(b"\r\n").split(b"\r\n")
    assert all(len(line) <= 78 for line in lines), lines
    [(display, address)] = decoded_mailboxes(header)
    assert address == "ann@example.org"
    assert clean_name(name).startswith(display) and display
    parsed = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ann@example.org"]
    assert parsed["Bcc"] is None


@pytest.mark.parametrize("name", NAMES)
def test_an_ses_destination_is_one_ascii_line_under_998(name):
    destination = mailbox("ann@bücher.example", name)
    assert destination.isascii() and "\n" not in destination and len("To: " + destination) <= 998
    assert getaddresses([destination])[0][1] == "ann@xn--bcher-kva.example"
    assert len(getaddresses([destination])) == 1


def test_encoded_words_decode_to_exactly_the_text():
    for text in ["x", "Новости недели — выпуск №7 ✉ " * 5, "😀" * 40, "a b  c ", "=?utf-8?q?x?="]:
        words = encoded_words(text)
        assert all(len(word) <= 75 for word in words)
        assert str(make_header(decode_header(" ".join(words)))) == text


def test_a_subject_header_is_folded_and_reads_back():
    for subject in ["Our news", "Ünïcode: }} {{x}}", "=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=", "word " * 70]:
        header = header_line("Subject", text_words(subject.strip()))
        assert header.isascii() and all(len(line) <= 78 for line in header.split(b"\r\n"))
        parsed = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
        assert parsed["Subject"] == subject.strip() and parsed["Bcc"] is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("ann@example.org", True),
        ("Ann <ann@bücher.de>", True),
        ("üser@example.org", False),
        ("a@example.org, b@example.org", False),
        ("Ann <ann@example.org>\r\nBcc: x@evil.example", False),
        ("not an address", False),
    ],
)
def test_one_test_address(value, ok):
    assert is_one_address(value) is ok


# -- the import --------------------------------------------------------------


def test_import_refuses_non_ascii_local_parts_by_line_and_stores_idna(pool, conn):
    csv_text = (
        "email,name\n"
        "ann@bücher.de,Ann\n"
        "üser@example.org,Ünal\n"
        '"bob@example.org","=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?="\n'
        '"cy@example.org","Cy\x0bNUL\x00here"\n'
    )
    report = import_csv(pool, io.StringIO(csv_text))
    assert report.added == 3
    assert [(line, value) for line, value, _ in report.invalid] == [(3, "üser@example.org")]
    assert "non-ASCII" in report.invalid[0][2]
    rows = {r["email"]: r["from_name"] for r in conn.execute("SELECT email, from_name FROM subscribers")}
    assert rows == {
        "ann@xn--bcher-kva.de": "Ann",
        "bob@example.org": "=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=",
        "cy@example.org": "Cy NUL here",
    }


# -- the ledger rule: no row 'sending' or 'unknown' without an SES call ---------


def test_a_mailout_that_cannot_be_written_stops_with_every_row_queued(pool, conn, settings, recording_transport):
    add_subscribers(conn, ["a@example.org", "b@example.org"])
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    # Written before subjects were checked, say.
    bad = sender.Claim(claim.mailout_id, "Spring\r\nBcc: x@evil.example", claim.body, 2, claim.runner_id)

    summary = sender.send_claimed_mailout(pool, recording_transport, settings, bad)

    assert summary.status == "failed" and "cannot be written" in summary.error
    assert sorted(ledger(conn, mailout_id).values()) == ["queued", "queued"]
    assert recording_transport.sent == []


@pytest.mark.parametrize("bulk", [False, True])
def test_a_token_that_cannot_be_made_fails_that_recipient_alone(pool, conn, settings, bulk, monkeypatch, standin_transport):
    ses, transport = standin_transport
    add_subscribers(conn, [f"r{i}@example.org" for i in range(6)])
    mailout_id = add_mailout(conn)
    real_make = sender.UnsubscribeTokens.make
    victim = conn.execute("SELECT id FROM subscribers WHERE email = 'r3@example.org'").fetchone()["id"]

    def make(self, subscriber_id):
        if subscriber_id == victim:
            raise RuntimeError("token machine broke")
        return real_make(self, subscriber_id)

    monkeypatch.setattr(sender.UnsubscribeTokens, "make", make)
    changes = dict(rate_limit_per_sec=100.0, ses_bulk_send="auto" if bulk else "off")
    summary = sender.send_claimed_mailout(
        pool, transport, with_settings(settings, **changes), sender.claim_mailout(pool, mailout_id)
    )

    assert summary.status == "sent"
    states = ledger(conn, mailout_id)
    assert states.pop("r3@example.org") == "failed"
    assert set(states.values()) == {"sent"}
    row = conn.execute("SELECT error_message FROM send_logs WHERE email = 'r3@example.org'").fetchone()
    assert "token machine broke" in row["error_message"]
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert any(r.is_bulk for r in ses.send_requests) is bulk
    assert sorted(a for r in ses.sent for a in r.to_addresses) == sorted(f"r{i}@example.org" for i in (0, 1, 2, 4, 5))


@pytest.mark.parametrize(
    "value",
    ["news@xn--zz.org", "a16@xn--a.com", "l" * 65 + "@example.org", "a@" + "b" * 64 + ".org", "a@XN--ZZ.org"],
)
def test_addresses_ses_refuses_for_their_punycode_or_length_are_refused_before_sending(value):
    with pytest.raises(AddressError):
        ses_address(value)
    with pytest.raises(AddressError):
        normalize_address(value)
    assert not is_one_address(value)


def test_the_longest_parts_ses_takes_still_go():
    longest = "l" * 64 + "@" + "b" * 63 + ".org"
    assert ses_address(longest) == longest
