"""SES SendBulkEmail: several recipients per call, through the real sender, a
real Postgres and the real SesTransport, whose boto3 client talks to the SES
stand-in (tests/support/ses_standin.py), so that boto3's own request building and
error parsing run. The stand-in renders every accepted entry as the email SES
would send, so what each recipient receives is checked, not just the call."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import math
from collections import Counter
from email.parser import BytesHeaderParser
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from amazonsender import sender
from amazonsender.message import Footer, MessageBuilder
from amazonsender.template import (
    MAX_TEMPLATE_BYTES,
    TOKEN_PLACEHOLDER,
    BulkContent,
    bulk_content,
)
from amazonsender.ses import (
    ACCOUNT,
    BULK_STATUS_KINDS,
    IN_DOUBT,
    RECIPIENT,
    THROTTLED,
    TRANSIENT,
    SesTransport,
    bulk_result,
)
from amazonsender.links import UnsubscribeTokens
from tests.fakes import FakeBulkTransport
from tests.support.db import add_mailout, add_subscribers, mailout_row
from tests.support.sending import claim_and_queue, emails, send_order
from tests.support.settings import UNSUBSCRIBE_SECRET, with_settings
from tests.support.ses_standin import BulkDelivery, SesStandIn

UNSUBSCRIBE_BASE = "https://news.example.test/unsubscribe?token="


pytestmark = pytest.mark.usefixtures("fast_backoff", "no_stop_request")


@pytest.fixture
def ses(standin_transport):
    return standin_transport[0]


@pytest.fixture
def bulk_settings(settings):
    """Bulk on, 2000/s and batches of 10: ten recipients per call."""
    return with_settings(settings, ses_bulk_send="auto", rate_limit_per_sec=2000.0, batch_size=10)


@pytest.fixture
def transport(ses, bulk_settings) -> SesTransport:
    """The production transport, built from settings; the standard
    AWS_ENDPOINT_URL_SESV2 variable points it at the stand-in."""
    return SesTransport.from_settings(bulk_settings)


def run(pool, transport, settings, mailout_id, **kwargs):
    claim = sender.claim_mailout(pool, mailout_id)
    return sender.send_claimed_mailout(pool, transport, settings, claim, **kwargs)


def claim(pool, conn, mailout_id) -> tuple[sender.Claim, list[str]]:
    """The claim, and the addresses in the order the sender will take them."""
    return claim_and_queue(pool, mailout_id), send_order(conn, mailout_id)


def resume(pool, transport, settings, mailout_id):
    claim = sender.resume_mailout(pool, mailout_id, settings)
    return sender.send_claimed_mailout(pool, transport, settings, claim)


def rows(conn, mailout_id) -> dict[str, dict]:
    result = conn.execute(
        "SELECT email, status, ses_message_id, error_message, subscriber_id FROM send_logs WHERE mailout_id = %s",
        (mailout_id,),
    ).fetchall()
    return {row["email"]: row for row in result}


def statuses(conn, mailout_id) -> dict[str, str]:
    return {address: row["status"] for address, row in rows(conn, mailout_id).items()}


def received(ses: SesStandIn) -> Counter:
    """How many emails each address got, checked against the email's own To."""
    counts = Counter()
    for record in ses.sent:
        [address] = record.to_addresses
        to = BytesHeaderParser(policy=email.policy.default).parsebytes(record.raw)["To"]
        assert to.addresses[0].addr_spec.lower() == address.lower()
        counts[address] += 1
    return counts


def assert_everyone_once(ses, conn, mailout_id, addresses, *, unknown=()) -> None:
    """Each address received exactly one email; each row 'sent' with that
    email's SES message id (or 'unknown' for those listed)."""
    counts = received(ses)
    assert sorted(counts.elements()) == sorted(addresses)
    ids = {record.to_addresses[0]: record.message_id for record in ses.sent}
    ledger = rows(conn, mailout_id)
    expected = {a: ("unknown" if a in unknown else "sent") for a in addresses}
    assert {a: row["status"] for a, row in ledger.items()} == expected
    for address in addresses:
        if address not in unknown:
            assert ledger[address]["ses_message_id"] == ids[address]


def entry_sizes(ses) -> list[int]:
    return [len(r.body["BulkEmailEntries"]) for r in ses.bulk_requests]


# --- every recipient once, with their own message -------------------------------------


@pytest.mark.parametrize("rate, per_call, n", [(2000.0, 10, 23), (50.0, 5, 12)])
def test_everyone_gets_exactly_one_email_in_calls_of_several(
    pool, conn, ses, transport, bulk_settings, rate, per_call, n
):
    settings = with_settings(bulk_settings, rate_limit_per_sec=rate)
    assert sender.recipients_per_call(rate, settings.batch_size) == per_call
    add_subscribers(conn, emails(n))
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id)

    assert summary.status == "sent" and summary.sent == n and summary.failed == summary.in_doubt == 0
    assert ses.send_email_requests == []
    assert len(ses.bulk_requests) == math.ceil(n / per_call)
    assert all(size <= per_call for size in entry_sizes(ses)) and sum(entry_sizes(ses)) == n
    assert all(r.status == 200 for r in ses.requests)
    assert_everyone_once(ses, conn, mailout_id, emails(n))
    assert len({row["ses_message_id"] for row in rows(conn, mailout_id).values()}) == n
    assert mailout_row(conn, mailout_id)["status"] == "sent"


def unsubscribe_token(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["token"]
    return token


def test_each_message_carries_its_own_name_link_headers_and_tags(pool, conn, ses, transport, bulk_settings):
    names = {
        "ann@list.example": "Ann Example",
        "zoe@list.example": "Zoë Ünïcödé",
        "john@list.example": "Smith, John",
        "kim@list.example": "  Kim \t Lee  ",
    }
    addresses = [*names, "bob@list.example"]
    ids = dict(zip(addresses, add_subscribers(conn, addresses, names=names)))
    mailout_id = add_mailout(conn, subject="Spring news – ünïcode", body="<html><body><p>Hello</p></body></html>")
    tokens = UnsubscribeTokens(UNSUBSCRIBE_SECRET)

    run(pool, transport, bulk_settings, mailout_id)

    [request] = ses.bulk_requests
    assert request.body["ConfigurationSetName"] == "newsletter"
    assert request.body["FromEmailAddress"] == bulk_settings.ses_from_email
    assert request.body["ReplyToAddresses"] == ["editor@example.test"]
    by_address = {record.to_addresses[0]: record for record in ses.sent}
    assert set(by_address) == set(addresses)
    links = set()
    for address, record in by_address.items():
        assert isinstance(record, BulkDelivery)
        assert record.tags == {"mailout_id": str(mailout_id)}
        message = record.message
        assert message["From"] == "Newsletter <news@example.test>"
        assert message["Subject"] == "Spring news – ünïcode"
        assert message["Reply-To"] == "editor@example.test"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        header = message["List-Unsubscribe"]
        assert header.startswith(f"<{UNSUBSCRIBE_BASE}") and header.endswith(">")
        url = header[1:-1]
        # The token in the link is this subscriber's.
        assert tokens.read(unsubscribe_token(url)) == ids[address]
        html_part = message.get_body(("html",)).get_content()
        text_part = message.get_body(("plain",)).get_content()
        assert html_part.count(url) == 1 and text_part.count(f"Unsubscribe: {url}") == 1
        assert html_part.index("Unsubscribe") < html_part.index("</body>")
        assert "{{" not in html_part + text_part + message["Subject"]
        links.add(url)
        [mailbox] = message["To"].addresses
        assert mailbox.addr_spec == address
        assert mailbox.display_name == " ".join((names.get(address) or "").split())
    assert len(links) == len(addresses)
    # A non-ASCII name went to SES as RFC 2047 encoded words, as SES requires.
    zoe = by_address["zoe@list.example"]
    assert zoe.destination.isascii() and "=?utf-8?" in zoe.destination
    assert by_address["bob@list.example"].destination == "bob@list.example"


def test_the_bulk_message_reads_like_the_send_email_one(pool, conn, ses, transport, bulk_settings):
    """The template SES fills in makes the same message, as a mail client
    shows it, as MessageBuilder does for SendEmail."""
    body = (
        "<html><head><style>p{color:red}</style></head><body><h1>Title</h1><p>Some &amp; text, "
        '<a href="https://example.org/x?a=1&amp;b=2">a link</a>.</p><ul><li>one</li><li>two</li></ul></body></html>'
    )
    [subscriber_id] = add_subscribers(conn, ["ann@list.example"], names={"ann@list.example": "Ann"})
    add_subscribers(conn, ["bob@list.example"])
    mailout_id = add_mailout(conn, subject="Same", body=body)

    run(pool, transport, bulk_settings, mailout_id)

    bulk = {r.to_addresses[0]: r.message for r in ses.sent}["ann@list.example"]
    url = bulk["List-Unsubscribe"][1:-1]
    assert UnsubscribeTokens(UNSUBSCRIBE_SECRET).read(unsubscribe_token(url)) == subscriber_id
    built = MessageBuilder(
        mailout_id=str(mailout_id), subject="Same", body_html=body,
        from_address=bulk_settings.ses_from_email, reply_to=bulk_settings.ses_reply_to,
    ).build(to_email="ann@list.example", to_name="Ann", unsubscribe_url=url)
    single = email.message_from_bytes(built.raw, policy=email.policy.default)
    for kind in ("html", "plain"):
        assert bulk.get_body((kind,)).get_content() == single.get_body((kind,)).get_content()
    for name in ("From", "To", "Subject", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert bulk[name] == single[name], name


# --- when bulk is not used -----------------------------------------------------------


def sent_for(ses, mailout_id) -> list:
    return [record for record in ses.sent if record.tags.get("mailout_id") == str(mailout_id)]


def requests_for(ses, mailout_id) -> list:
    return [record for record in ses.send_requests if record.tags.get("mailout_id") == str(mailout_id)]


def test_content_that_cannot_be_a_template_goes_by_send_email(pool, conn, ses, transport, bulk_settings, caplog):
    """One mailout after another to the same 12 subscribers, each sent once
    by SendEmail, with its content as it is."""
    add_subscribers(conn, emails(12))
    cases = [
        ("Save the {{date}}", "<p>Hello</p>"),
        ("News", "<p>Hello {{name}}</p>"),
        ("News", "<p>Braces: &#123;&#123;x&#125;&#125;</p>"),
        ("News", "<p>Big</p>" + "x" * MAX_TEMPLATE_BYTES),
        # SES would write it as it is, and mail clients decode it.
        ("=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=", "<p>Hello</p>"),
    ]
    for subject, body in cases:
        mailout_id = add_mailout(conn, subject=subject, body=body)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="amazonsender.sender"):
            summary = run(pool, transport, bulk_settings, mailout_id)

        case = f"subject {subject!r}, body {body[:40]!r}"
        assert summary.status == "sent" and summary.sent == 12, case
        requests = requests_for(ses, mailout_id)
        assert [r.is_send_email for r in requests] == [True] * 12, case
        sent = sent_for(ses, mailout_id)
        assert sorted(r.to_addresses[0] for r in sent) == emails(12), case
        assert {a: row["status"] for a, row in rows(conn, mailout_id).items()} == dict.fromkeys(emails(12), "sent")
        assert any("one SendEmail per recipient" in record.getMessage() for record in caplog.records), case
        message = sent[0].message
        assert message["Subject"] == subject
        if "{{" in body:
            assert "{{name}}" in message.get_body(("html",)).get_content()
    assert ses.bulk_requests == []


def test_send_email_only_when_bulk_is_off_or_the_rate_too_low(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(3))
    for changes in ({"ses_bulk_send": "off"}, {"rate_limit_per_sec": 19.0}, {"batch_size": 1}):
        mailout_id = add_mailout(conn)

        summary = run(pool, transport, with_settings(bulk_settings, **changes), mailout_id)

        assert summary.status == "sent" and summary.sent == 3, changes
        assert [r.is_send_email for r in requests_for(ses, mailout_id)] == [True] * 3, changes
        assert sorted(r.to_addresses[0] for r in sent_for(ses, mailout_id)) == emails(3)
    assert ses.bulk_requests == []


def test_credentials_without_send_bulk_email_go_on_with_send_email(pool, conn, ses, transport, bulk_settings):
    """An IAM policy that allows ses:SendEmail only: the first bulk call is
    refused, and the mailout goes on (that call's recipients included) one
    SendEmail per recipient."""
    add_subscribers(conn, emails(23))
    ses.fail_next(
        1, "AccessDeniedException", 403,
        "User: arn:aws:iam::123456789012:user/sender is not authorized to perform: ses:SendBulkEmail",
    )
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 23 and summary.failed == 0
    assert [r.status for r in ses.bulk_requests] == [403]
    assert len(ses.send_email_requests) == 23
    assert_everyone_once(ses, conn, mailout_id, emails(23))


def test_a_transport_without_send_bulk_gets_one_email_at_a_time(pool, conn, bulk_settings, recording_transport):
    add_subscribers(conn, emails(12))
    mailout_id = add_mailout(conn)

    summary = run(pool, recording_transport, bulk_settings, mailout_id)

    assert summary.status == "sent" and sorted(recording_transport.addresses) == emails(12)


# --- refusals ------------------------------------------------------------------------------


def test_a_rejected_address_fails_with_the_reason_and_the_rest_is_sent(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(23))
    bad = emails(23)[14]
    ses.fail_address(bad, "MessageRejected", 400, "Address blacklisted.")
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 22 and summary.failed == 1
    ledger = rows(conn, mailout_id)
    assert ledger[bad]["status"] == "failed" and ledger[bad]["ses_message_id"] is None
    assert ledger[bad]["error_message"] == "MESSAGE_REJECTED: Address blacklisted."
    others = [a for a in emails(23) if a != bad]
    assert sorted(received(ses).elements()) == others
    assert all(ledger[a]["status"] == "sent" for a in others)
    # Final: asked once, never again.
    assert entry_sizes(ses) == [10, 10, 3]
    assert len(ses.bulk_entry_failures) == 1


def test_a_call_refused_as_a_whole_sends_each_recipient_alone(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(23))
    mailout_id = add_mailout(conn)
    claimed, order = claim(pool, conn, mailout_id)
    ses.fail_next(1, "BadRequestException", 400, "Something in this request is not valid.")
    bad = order[4]  # in the first call
    ses.fail_address(bad, "MessageRejected", 400, "Address blacklisted.")

    summary = sender.send_claimed_mailout(pool, transport, bulk_settings, claimed)

    assert summary.status == "sent" and summary.sent == 22 and summary.failed == 1
    first = ses.bulk_requests[0]
    assert (first.status, first.error_code, len(first.body["BulkEmailEntries"])) == (400, "BadRequestException", 10)
    # The first batch's ten one by one, then the other batches as usual.
    assert entry_sizes(ses) == [10] + [1] * 10 + [10, 3]
    assert [r.to_addresses for r in ses.bulk_requests[1:11]] == [[a] for a in order[:10]]
    ledger = rows(conn, mailout_id)
    assert ledger[bad]["status"] == "failed"
    assert ledger[bad]["error_message"] == "MESSAGE_REJECTED: Address blacklisted."
    others = sorted(a for a in order if a != bad)
    assert sorted(received(ses).elements()) == others
    assert all(ledger[a]["status"] == "sent" for a in others)


def test_a_recipient_refused_as_a_whole_call_on_its_own_fails(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(3))
    ses.fail_next(2, "BadRequestException", 400, "Invalid request.")
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    # The call of three is refused, then the first recipient alone: that one fails.
    assert entry_sizes(ses) == [3, 1, 1, 1]
    first = send_order(conn, mailout_id)[0]
    ledger = rows(conn, mailout_id)
    assert ledger[first]["status"] == "failed"
    assert ledger[first]["error_message"] == "BadRequestException: Invalid request."
    assert summary.sent == 2 and summary.failed == 1 and summary.status == "sent"
    assert sorted(received(ses).elements()) == sorted(a for a in emails(3) if a != first)


# --- throttling and transient errors --------------------------------------------------------


def test_a_throttled_call_is_sent_again_and_nobody_fails(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(23))
    ses.fail_next(2, "TooManyRequestsException", 429, "Maximum sending rate exceeded.")
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 23 and summary.failed == 0
    assert len(ses.throttled) == 2
    assert entry_sizes(ses) == [10, 10, 10, 10, 3]
    assert_everyone_once(ses, conn, mailout_id, emails(23))


def test_throttled_entries_alone_are_sent_again(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(23))
    mailout_id = add_mailout(conn)
    claimed, order = claim(pool, conn, mailout_id)
    slow = [order[2], order[7]]  # both in the first call
    for address in slow:
        ses.fail_address(address, "TooManyRequestsException", 429, "Maximum sending rate exceeded.", times=2)

    summary = sender.send_claimed_mailout(pool, transport, bulk_settings, claimed)

    assert summary.status == "sent" and summary.sent == 23 and summary.failed == 0
    assert ses.throttled == []  # each call was answered 200
    assert [result["Status"] for _, _, result in ses.bulk_entry_failures] == ["ACCOUNT_THROTTLED"] * 4
    # Only the two throttled recipients went again, together, twice.
    assert entry_sizes(ses) == [10, 2, 2, 10, 3]
    assert sorted(ses.bulk_requests[1].to_addresses) == sorted(slow)
    assert_everyone_once(ses, conn, mailout_id, emails(23))


def test_the_stand_in_throttling_bulk_calls_is_absorbed(pool, conn, ses, transport, bulk_settings):
    """SES's own rate, below ours: whole calls answered 429 and sent again."""
    add_subscribers(conn, emails(20))
    ses.throttle_above_per_second = 15
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, with_settings(bulk_settings, rate_limit_per_sec=100.0), mailout_id)

    assert summary.status == "sent" and summary.sent == 20 and summary.failed == 0
    assert ses.throttled, "the stand-in never throttled: the test did not test anything"
    assert_everyone_once(ses, conn, mailout_id, emails(20))


def test_a_transient_entry_is_retried_then_fails_and_a_5xx_call_is_retried(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(23))
    mailout_id = add_mailout(conn)
    claimed, order = claim(pool, conn, mailout_id)
    broken, flaky = order[3], order[15]  # in the first call, in the second
    ses.fail_address(broken, "InternalFailure", 500, "Internal error.")
    ses.fail_address(flaky, "ServiceUnavailable", 503, "Try later.", times=1)
    ses.fail_next(2, "InternalFailure", 500, "We encountered an internal error.")

    summary = sender.send_claimed_mailout(pool, transport, bulk_settings, claimed)

    assert summary.status == "sent" and summary.sent == 22 and summary.failed == 1
    ledger = rows(conn, mailout_id)
    assert ledger[broken]["status"] == "failed"
    assert ledger[broken]["error_message"] == "TRANSIENT_FAILURE: Internal error."
    # The first call failed twice as a whole (500), then went: the broken
    # entry's third transient answer (sender.TRANSIENT_ATTEMPTS) was final.
    # The flaky one in the second call went again, alone.
    assert [r.status for r in ses.bulk_requests] == [500, 500, 200, 200, 200, 200]
    assert entry_sizes(ses) == [10, 10, 10, 10, 1, 3]
    tried = Counter(a for r in ses.bulk_requests for a in r.to_addresses)
    assert tried[broken] == sender.TRANSIENT_ATTEMPTS and tried[flaky] == 2
    others = sorted(a for a in order if a != broken)
    assert sorted(received(ses).elements()) == others
    assert all(ledger[a]["status"] == "sent" for a in others)


def test_a_whole_call_failing_every_attempt_fails_its_recipients_only(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(13))
    ses.fail_next(sender.TRANSIENT_ATTEMPTS, "InternalFailure", 500, "Down.")
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.failed == 10 and summary.sent == 3 and summary.status == "sent"
    order = send_order(conn, mailout_id)
    assert {statuses(conn, mailout_id)[a] for a in order[:10]} == {"failed"}
    assert sorted(received(ses).elements()) == sorted(order[10:])


# --- a paused account -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "from_send, sent_before, error",
    [
        pytest.param(15, 14, "ACCOUNT_SENDING_PAUSED: Email sending is disabled", id="part way through a call"),
        pytest.param(11, 10, "SendingPausedException: Email sending is disabled", id="whole call"),
    ],
)
def test_a_paused_account_stops_the_mailout_and_a_resume_completes_it(
    pool, conn, ses, transport, bulk_settings, from_send, sent_before, error
):
    add_subscribers(conn, emails(25))
    ses.pause_sending(from_send=from_send)
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "failed"
    assert (summary.sent, summary.queued, summary.failed, summary.in_doubt) == (sent_before, 25 - sent_before, 0, 0)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "failed" and row["error"].startswith(error) and summary.error.startswith(error)
    assert f"mailout resume {mailout_id}" in row["error"]
    order = send_order(conn, mailout_id)
    assert [statuses(conn, mailout_id)[a] for a in order] == ["sent"] * sent_before + ["queued"] * (25 - sent_before)
    assert sorted(received(ses).elements()) == sorted(order[:sent_before])
    assert len(ses.bulk_requests) == 2  # nothing more after the pause

    ses.resume_sending()
    resumed = resume(pool, transport, bulk_settings, mailout_id)

    assert resumed.status == "sent" and resumed.sent == 25 and resumed.queued == 0
    assert_everyone_once(ses, conn, mailout_id, emails(25))


# --- answers that leave results out --------------------------------------------------------------


def test_recipients_without_a_result_are_unknown_and_never_sent_again(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(30))
    ses.short_answer_next(1, keep=4)  # the first call: 6 of its 10 results left out
    ses.pause_sending(from_send=21)  # the third call: the account is paused
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    order = send_order(conn, mailout_id)
    in_doubt = order[4:10]
    assert summary.status == "failed" and summary.in_doubt == 6 and summary.sent == 14 and summary.queued == 10
    ledger = rows(conn, mailout_id)
    assert {ledger[a]["status"] for a in in_doubt} == {"unknown"}
    assert all("no result" in ledger[a]["error_message"] for a in in_doubt)
    # They did reach SES (the answer lost them), once.
    assert sorted(received(ses).elements()) == sorted(order[:20])

    ses.resume_sending()
    resumed = resume(pool, transport, bulk_settings, mailout_id)

    assert resumed.status == "sent" and resumed.in_doubt == 6 and resumed.sent == 24
    assert_everyone_once(ses, conn, mailout_id, emails(30), unknown=set(in_doubt))


def test_a_lost_answer_to_a_bulk_call_leaves_its_recipients_unknown(pool, conn, ses, bulk_settings):
    """A read timeout: the call went out and may have been accepted."""
    import boto3
    from botocore.config import Config

    add_subscribers(conn, emails(13))
    client = boto3.client(
        "sesv2", endpoint_url=ses.url, region_name="us-east-1",
        config=Config(read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    transport = SesTransport(client, from_address=bulk_settings.ses_from_email, reply_to=bulk_settings.ses_reply_to)
    ses.latency = 0.4
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)

    # The first call's answer comes too late; the others in time.
    lose_first = FakeBulkTransport(passthrough=transport, hooks={2: lambda: setattr(ses, "latency", 0.0)})
    summary = sender.send_claimed_mailout(pool, lose_first, bulk_settings, claim)

    order = send_order(conn, mailout_id)
    assert summary.status == "sent" and summary.in_doubt == 10 and summary.sent == 3
    assert {statuses(conn, mailout_id)[a] for a in order[:10]} == {"unknown"}
    assert len(ses.bulk_requests) == 2
    assert sorted(received(ses).elements()) == sorted(order)


# --- SEND_CONCURRENCY ------------------------------------------------------------------------------


def test_concurrent_bulk_calls_send_everyone_once(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(130))
    rejected = emails(130)[33]
    ses.fail_address(rejected, "MessageRejected", 400, "Address blacklisted.")
    ses.fail_address(emails(130)[71], "TooManyRequestsException", 429, "Slow down.", times=1)
    ses.latency = 0.02
    # 40 per call, three calls per batch of 120, three at a time.
    settings = with_settings(bulk_settings, send_concurrency=3, rate_limit_per_sec=400.0, batch_size=120)
    assert sender.recipients_per_call(400.0, 120) == 40
    transport = FakeBulkTransport(passthrough=transport)  # notes which threads call it
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 129 and summary.failed == 1
    others = [a for a in emails(130) if a != rejected]
    assert sorted(received(ses).elements()) == others
    ledger = rows(conn, mailout_id)
    assert ledger[rejected]["status"] == "failed"
    assert all(ledger[a]["status"] == "sent" for a in others)
    assert len(transport.threads) > 1  # the calls were made by several threads


def test_concurrent_bulk_calls_stop_on_a_paused_account_and_resume(pool, conn, ses, transport, bulk_settings):
    add_subscribers(conn, emails(120))
    ses.pause_sending(from_send=50)
    ses.latency = 0.01
    settings = with_settings(bulk_settings, send_concurrency=3, rate_limit_per_sec=400.0, batch_size=120)
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id)

    assert summary.status == "failed" and summary.in_doubt == 0 and summary.failed == 0
    counts = Counter(statuses(conn, mailout_id).values())
    assert counts["sent"] == len(ses.sent) and counts["sent"] + counts["queued"] == 120
    assert max(received(ses).values()) == 1

    ses.resume_sending()
    resumed = resume(pool, transport, settings, mailout_id)
    assert resumed.status == "sent"
    assert_everyone_once(ses, conn, mailout_id, emails(120))


# --- units --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, batch_size, expected",
    [
        (6, 50, 1),
        (14, 50, 1),
        (19.99, 50, 1),
        (20, 50, 2),
        (20.5, 50, 2),
        (30, 50, 3),
        (50, 10, 5),
        (50, 50, 5),
        (99.5, 50, 9),  # 99: divisors up to 9
        (97, 50, 1),  # a prime: no divisor but 1 and itself
        (2000, 10, 10),
        (2000, 7, 5),
        (2000, 50, 50),
        (2000, 5000, 50),
        (10_000, 1, 1),
        (1000, 3, 2),
    ],
)
def test_recipients_per_call(rate, batch_size, expected):
    assert sender.recipients_per_call(rate, batch_size) == expected


def test_recipients_per_call_divides_the_rate_and_keeps_ten_calls_a_second():
    for rate in range(1, 3001):
        for batch_size in (1, 7, 10, 50, 500):
            size = sender.recipients_per_call(rate, batch_size)
            assert 1 <= size <= max(1, min(50, batch_size))
            if size > 1:
                assert rate % size == 0 and rate / size >= 10


def content(subject="News", body="<html><body><p>Hello</p></body></html>") -> tuple[BulkContent | None, str]:
    return bulk_content(mailout_id="m-1", subject=subject, body_html=body, unsubscribe_base=UNSUBSCRIBE_BASE)


def test_bulk_content_has_the_token_placeholder_in_both_footers_only():
    bulk, reason = content()
    assert reason == "" and bulk is not None
    url = UNSUBSCRIBE_BASE + TOKEN_PLACEHOLDER
    assert bulk.html.count(TOKEN_PLACEHOLDER) == 1 and f'href="{url}"' in bulk.html
    assert bulk.html.index(url) < bulk.html.index("</body>")
    assert bulk.text.count(TOKEN_PLACEHOLDER) == 1 and f"Unsubscribe: {url}\n" in bulk.text
    assert bulk.text.startswith("Hello")
    assert "{{" not in bulk.subject
    assert bulk.tags == {"mailout_id": "m-1"}
    assert dict(bulk.headers) == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert bulk.unsubscribe_base == UNSUBSCRIBE_BASE


@pytest.mark.parametrize(
    "subject, body, why",
    [
        ("Hi {{name}}", "<p>x</p>", "subject"),
        ("Hi", "<p>{{name}}</p>", "body"),
        ("Hi", "<p>{{{raw}}}</p>", "body"),
        ("Hi", "<style>a{{}}</style><p>x</p>", "body"),
        ("Hi", "<p>&#123;&#123;x</p>", "plain-text body"),
        ("Hi", "<p>&lbrace;&lbrace;x</p>", "plain-text body"),
        ("Hi", "<p>" + "é" * (MAX_TEMPLATE_BYTES // 4) + "</p>", "larger than"),
        ("Line\nbreak", "<p>x</p>", "subject"),
    ],
)
def test_bulk_content_refuses_what_cannot_be_an_ses_template(subject, body, why):
    bulk, reason = content(subject, body)
    assert bulk is None and why in reason


@pytest.mark.parametrize("subject, body", [("{ one } }}", "<p>{ a } {b} }}</p>"), ("Hi", "<p>{</p>{<p>x</p>")])
def test_bulk_content_takes_single_braces(subject, body):
    bulk, _ = content(subject, body)
    assert bulk is not None


def test_bulk_content_refuses_a_base_url_with_braces():
    bulk, reason = bulk_content(
        mailout_id="m", subject="s", body_html="<p>x</p>", unsubscribe_base="https://x/{{u}}?t="
    )
    assert bulk is None and reason


@pytest.mark.parametrize(
    "name, expected_destination, display_name",
    [
        (None, "ann@list.example", ""),
        ("", "ann@list.example", ""),
        ("  \t ", "ann@list.example", ""),
        ("Ann Example", "Ann Example <ann@list.example>", "Ann Example"),
        ("  Ann \n  Example ", "Ann Example <ann@list.example>", "Ann Example"),
        ("Smith, John", '"Smith, John" <ann@list.example>', "Smith, John"),
        ('Ann "the" Reader', '"Ann \\"the\\" Reader" <ann@list.example>', 'Ann "the" Reader'),
        ("Zoë", None, "Zoë"),
        ("王小明", None, "王小明"),
    ],
)
def test_bulk_recipient_destination(name, expected_destination, display_name):
    bulk, _ = content()
    recipient = bulk.recipient(to_email="ann@list.example", to_name=name, token="abc.DEF-_1")
    assert recipient.to_address == "ann@list.example"
    assert recipient.destination.isascii()
    if expected_destination is not None:
        assert recipient.destination == expected_destination
    else:
        assert recipient.destination.startswith("=?utf-8?") and recipient.destination.endswith(" <ann@list.example>")
    parsed = email.message_from_string(f"To: {recipient.destination}\n\n", policy=email.policy.default)
    [mailbox] = parsed["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (display_name, "ann@list.example")
    assert recipient.unsubscribe_url == UNSUBSCRIBE_BASE + "abc.DEF-_1"
    assert json.loads(recipient.template_data) == {"t": "abc.DEF-_1"}


def test_bulk_recipient_template_data_is_json_whatever_the_token():
    bulk, _ = content()
    odd = 'a"b\\c'
    with pytest.raises(ValueError):
        bulk.recipient(to_email="a@x.org", to_name=None, token="line\nbreak")
    recipient = bulk.recipient(to_email="a@x.org", to_name=None, token=odd)
    assert json.loads(recipient.template_data) == {"t": odd}


def test_bulk_recipient_token_round_trip():
    tokens = UnsubscribeTokens(UNSUBSCRIBE_SECRET)
    subscriber_id = UUID("12345678-1234-5678-1234-567812345678")
    bulk, _ = content()
    recipient = bulk.recipient(to_email="a@x.org", to_name=None, token=tokens.make(subscriber_id))
    assert tokens.read(unsubscribe_token(recipient.unsubscribe_url)) == subscriber_id
    assert json.loads(recipient.template_data)["t"] == unsubscribe_token(recipient.unsubscribe_url)


FROM = "news@example.test"


@pytest.mark.parametrize("status", sorted(BULK_STATUS_KINDS))
def test_bulk_result_maps_each_status_to_a_kind(status):
    result = bulk_result({"Status": status, "Error": "why"}, FROM)
    assert result.message_id is None
    assert result.error.kind == BULK_STATUS_KINDS[status]
    assert str(result.error) == f"{status}: why"


@pytest.mark.parametrize(
    "answer, kind, message_id",
    [
        ({"Status": "SUCCESS", "MessageId": "id-1"}, None, "id-1"),
        ({"Status": "SUCCESS"}, IN_DOUBT, None),
        (None, IN_DOUBT, None),
        ({}, IN_DOUBT, None),
        ({"Status": "SOMETHING_NEW", "Error": "?"}, TRANSIENT, None),
        ({"Status": "MESSAGE_REJECTED", "Error": "Email address is not verified: a@x.org"}, RECIPIENT, None),
        ({"Status": "MESSAGE_REJECTED", "Error": f"Email address is not verified: {FROM}"}, ACCOUNT, None),
        ({"Status": "MESSAGE_REJECTED"}, RECIPIENT, None),
        ({"Status": "ACCOUNT_THROTTLED"}, THROTTLED, None),
        ({"Status": "ACCOUNT_SENDING_PAUSED"}, ACCOUNT, None),
        ({"Status": "TRANSIENT_FAILURE"}, TRANSIENT, None),
    ],
)
def test_bulk_result(answer, kind, message_id):
    result = bulk_result(answer, FROM)
    assert result.message_id == message_id
    assert (result.error.kind if result.error else None) == kind


def test_bulk_status_kinds_cover_every_ses_status():
    from botocore.session import get_session

    statuses_in_model = set(get_session().get_service_model("sesv2").shape_for("BulkEmailStatus").enum)
    assert statuses_in_model - {"SUCCESS"} == set(BULK_STATUS_KINDS)


# --- addresses SES cannot take as they are ---------------------------------------------------------


def test_a_non_ascii_address_with_a_name_fails_alone(pool, conn, ses, transport, bulk_settings):
    addresses = [*emails(5), "zoë@exämple.org"]
    add_subscribers(conn, addresses, names={"zoë@exämple.org": "Zoë"})
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "sent", summary.error
    ledger = statuses(conn, mailout_id)
    assert ledger["zoë@exämple.org"] in ("sent", "failed")
    assert all(ledger[a] == "sent" for a in emails(5))


def test_a_non_ascii_address_without_a_name_fails_alone(pool, conn, ses, transport, bulk_settings):
    """SES has no SMTPUTF8: the stand-in refuses the call as a whole, and each
    recipient alone finds out whose address it was."""
    addresses = [*emails(5), "zoë@exämple.org"]
    add_subscribers(conn, addresses)
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 5 and summary.failed == 1
    assert statuses(conn, mailout_id)["zoë@exämple.org"] == "failed"
    assert sorted(received(ses).elements()) == emails(5)


def test_a_non_ascii_sender_name_goes_out_encoded(pool, conn, ses, bulk_settings):
    settings = with_settings(bulk_settings, ses_from_email="Café News <news@example.test>")
    add_subscribers(conn, emails(3))
    mailout_id = add_mailout(conn)

    summary = run(pool, SesTransport.from_settings(settings), settings, mailout_id)

    assert summary.status == "sent" and summary.sent == 3, summary
    assert ses.sent[0].message["From"] == "Café News <news@example.test>"


def test_a_call_refused_for_everyone_stops_at_the_circuit_breaker(pool, conn, ses, transport, bulk_settings):
    """A whole-call refusal that each recipient alone gets too is a problem
    of the mailout, not of ten addresses: MAX_CONSECUTIVE_FAILURES stops the
    split instead of failing every recipient of the call."""
    settings = with_settings(bulk_settings, max_consecutive_failures=3)
    add_subscribers(conn, emails(23))
    ses.fail_next(1000, "BadRequestException", 400, "Invalid request.")
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, settings, mailout_id)

    assert summary.status == "failed" and "3 failures in a row" in summary.error
    assert entry_sizes(ses) == [10, 1, 1, 1]
    assert Counter(statuses(conn, mailout_id).values()) == {"failed": 3, "queued": 20}
    assert received(ses) == Counter()


def test_a_name_that_looks_like_an_encoded_word_is_shown_as_written(pool, conn, ses, transport, bulk_settings):
    [address] = emails(1)
    add_subscribers(conn, [address], names={address: "=?utf-8?b?SGFja2Vy?="})
    mailout_id = add_mailout(conn)

    summary = run(pool, transport, bulk_settings, mailout_id)

    assert summary.sent == 1
    [record] = ses.sent
    assert record.destination.endswith(f" <{address}>") and "SGFja2Vy" not in record.destination
    assert record.message["To"].addresses[0].display_name == "=?utf-8?b?SGFja2Vy?="


@pytest.mark.parametrize(
    "footer",
    [Footer(newsletter_name="{{t}} news"), Footer(postal_address="{{t}} Street"), Footer(newsletter_name="A {{b")],
)
def test_braces_in_the_footer_settings_keep_the_mailout_out_of_a_template(footer):
    content, why = bulk_content(
        mailout_id="m", subject="News", body_html="<p>Hi</p>", unsubscribe_base="https://n.test/u?token=", footer=footer
    )
    assert content is None and "NEWSLETTER_NAME or POSTAL_ADDRESS" in why
