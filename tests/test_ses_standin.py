"""The SES stand-in speaks the SES v2 API well enough for a real boto3 client."""

import base64
import json
import re
import time
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

try:
    from amazonsender.template import bulk_content
except ImportError:  # before bulk_content moved out of message.py
    from amazonsender.message import bulk_content
from amazonsender.events import parse_ses_event
from amazonsender.ses import (
    ACCOUNT,
    IN_DOUBT,
    RECIPIENT,
    THROTTLED,
    TRANSIENT,
    SendError,
    SesTransport,
    bulk_result,
    classify_client_error,
)
from tests.support.ses_standin import (
    BULK_EMAIL_PATH,
    SEND_EMAIL_PATH,
    BulkDelivery,
    SesStandIn,
    bulk_status_for,
    render_template,
)

RAW = b"From: news@example.test\r\nTo: ann@x.org\r\nSubject: Hi\r\n\r\nHello Ann\r\n"


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        yield standin


def make_client(ses, **config):
    """A client of the stand-in; `config` adds botocore Config options, such
    as parameter_validation=False for requests botocore itself would refuse."""
    return boto3.client(
        "sesv2",
        endpoint_url=ses.url,
        region_name="us-east-1",
        aws_access_key_id="fake",
        aws_secret_access_key="fake",
        # One attempt: botocore would retry a throttled call by itself.
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )


def send(client, to="ann@x.org"):
    return client.send_email(
        FromEmailAddress="news@example.test",
        Destination={"ToAddresses": [to]},
        Content={"Raw": {"Data": RAW}},
        EmailTags=[{"Name": "mailout_id", "Value": "m-1"}],
        ConfigurationSetName="newsletter",
    )


def test_send_email_is_recorded_and_answered(ses):
    response = send(make_client(ses))

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    [record] = ses.sent
    assert response["MessageId"] == record.message_id
    assert record.to_addresses == ["ann@x.org"]
    assert record.raw == RAW  # boto3 base64-encodes the blob; the stand-in decodes it
    assert record.message["Subject"] == "Hi"
    assert record.tags == {"mailout_id": "m-1"}
    assert record.body["ConfigurationSetName"] == "newsletter"
    assert record.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_message_ids_are_unique(ses):
    client = make_client(ses)
    ids = {send(client, f"r{i}@x.org")["MessageId"] for i in range(5)}
    assert len(ids) == 5
    assert ids == {r.message_id for r in ses.sent}


@pytest.mark.parametrize(
    "code, status, kind",
    [
        ("TooManyRequestsException", 429, THROTTLED),
        ("MessageRejected", 400, RECIPIENT),
    ],
)
def test_injected_error_reaches_boto3_as_client_error(ses, code, status, kind):
    client = make_client(ses)
    ses.fail_next(1, code, status, "no, not now")

    with pytest.raises(ClientError) as caught:
        send(client)

    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["Error"]["Message"] == "no, not now"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    # The application classifies it as it would a real SES error.
    assert classify_client_error(caught.value, "news@example.test").kind == kind
    # Only the next one failed.
    assert send(client)["MessageId"]
    assert [r.status for r in ses.requests] == [status, 200]
    assert ses.requests[0].error_code == code


def test_fail_address_fails_only_that_recipient(ses):
    client = make_client(ses)
    ses.fail_address("Bad@X.org")

    with pytest.raises(ClientError) as caught:
        send(client, "bad@x.org")
    assert caught.value.response["Error"]["Code"] == "MessageRejected"
    assert send(client, "good@x.org")["MessageId"]
    assert [r.to_addresses for r in ses.sent] == [["good@x.org"]]


class AppSettings:
    aws_region = "us-east-1"
    ses_from_email = "News <news@example.test>"
    ses_configuration_set = "newsletter"
    ses_reply_to = None


class Email:
    to_address = "ann@x.org"
    raw = RAW
    tags = {"mailout_id": "m-2"}


@pytest.fixture
def app_transport(ses, monkeypatch):
    """The application's SesTransport, built without an endpoint: the
    standard AWS_ENDPOINT_URL_SESV2 variable must be enough to reach the stand-in."""
    for name, value in ses.client_env().items():
        monkeypatch.setenv(name, value)
    return SesTransport.from_settings(AppSettings())


def test_the_application_transport_sends_through_it(ses, app_transport):
    message_id = app_transport.send(Email())

    [record] = ses.sent
    assert record.message_id == message_id
    assert record.body["FromEmailAddress"] == "News <news@example.test>"


def test_the_application_transport_makes_one_attempt_per_email(ses, app_transport):
    """botocore must not retry on its own: it would retry a read timeout,
    when SES may have accepted the email already (`max_attempts: 1` in its
    Config means one retry; `total_max_attempts: 1` means none). A 500 shows
    whether it retries."""
    ses.fail_next(1, "InternalFailure", 500, "try again")

    with pytest.raises(SendError) as caught:
        app_transport.send(Email())

    assert caught.value.kind == TRANSIENT
    assert len(ses.requests) == 1


def test_get_account(ses):
    account = make_client(ses).get_account()
    assert account["SendingEnabled"] is True
    assert account["SendQuota"] == {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0}


def test_keep_alive_requests_are_fast_and_latency_is_added(ses):
    client = make_client(ses)
    send(client)  # opens the connection
    started = time.monotonic()
    for _ in range(10):
        send(client)
    # Without TCP_NODELAY each kept-alive request costs ~40 ms.
    assert time.monotonic() - started < 0.3

    ses.latency = 0.2
    started = time.monotonic()
    send(client)
    assert time.monotonic() - started >= 0.2


def test_a_read_timeout_is_in_doubt_and_not_retried(ses):
    """SES may have accepted an email whose answer never came: the transport
    reports it as in doubt, and nothing sends it a second time."""
    from amazonsender.ses import IN_DOUBT

    client = make_client(ses, read_timeout=0.2)
    ses.latency = 0.5
    transport = SesTransport(client, from_address="news@example.test")
    from amazonsender.message import OutgoingEmail

    with pytest.raises(SendError) as caught:
        transport.send(OutgoingEmail(to_address="ann@x.org", raw=RAW, tags={}))
    assert caught.value.kind == IN_DOUBT
    time.sleep(0.5)
    assert len(ses.sent) == 1


def test_throttle_above_per_second_answers_429_beyond_n_in_a_second(ses):
    client = make_client(ses)
    ses.throttle_above_per_second = 3

    for _ in range(3):
        send(client)
    with pytest.raises(ClientError) as caught:
        send(client)

    error = caught.value.response
    assert (error["Error"]["Code"], error["Error"]["Message"]) == (
        "TooManyRequestsException", "Maximum sending rate exceeded."
    )
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert classify_client_error(caught.value, "news@example.test").kind == THROTTLED
    assert len(ses.throttled) == 1 and len(ses.sent) == 3
    time.sleep(1.05)  # the window has moved on
    assert send(client)["MessageId"]


def test_pause_sending_from_the_kth_send_until_resumed(ses):
    from amazonsender.ses import ACCOUNT

    client = make_client(ses)
    ses.pause_sending(from_send=3)
    send(client)
    send(client)

    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            send(client)
        assert caught.value.response["Error"]["Code"] == "SendingPausedException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert classify_client_error(caught.value, "news@example.test").kind == ACCOUNT

    ses.resume_sending()
    assert send(client)["MessageId"]
    assert [r.status for r in ses.send_requests] == [200, 200, 400, 400, 200]


def test_set_account_changes_what_get_account_answers(ses):
    ses.set_account(max_send_rate=500, sent_last_24_hours=10, sending_enabled=False)

    account = make_client(ses).get_account()

    assert account["SendingEnabled"] is False
    assert account["SendQuota"] == {"Max24HourSend": 50000.0, "MaxSendRate": 500.0, "SentLast24Hours": 10.0}


# --- SendBulkEmail ----------------------------------------------------------------

# Simple substitution only: {{{name}}} is "{", {{name}} and "}".
TEMPLATE = {
    "Subject": "News for {{name}}",
    "Html": '<p>Hello {{name}}, {{{name}}}</p><a href="https://u.test/?t={{t}}">Unsubscribe</a>',
    "Text": "Hello {{ name }}\nUnsubscribe: https://u.test/?t={{t}}\n",
}


def bulk_entry(destination, token="tok", name=None, headers=None, tags=None):
    data = {"t": token}
    if name is not None:
        data["name"] = name
    entry = {
        "Destination": {"ToAddresses": [destination]},
        "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}},
    }
    if headers is not None:
        entry["ReplacementHeaders"] = [{"Name": n, "Value": v} for n, v in headers]
    if tags is not None:
        entry["ReplacementTags"] = [{"Name": n, "Value": v} for n, v in tags.items()]
    return entry


def send_bulk(client, entries, template=None, template_data=None, **extra):
    request = {
        "FromEmailAddress": "News <news@example.test>",
        "DefaultEmailTags": [{"Name": "mailout_id", "Value": "m-3"}],
        "DefaultContent": {
            "Template": {
                "TemplateContent": template or TEMPLATE,
                "TemplateData": json.dumps(template_data or {"name": "reader"}),
                "Headers": [
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                    {"Name": "X-Campaign", "Value": "default"},
                ],
            }
        },
        "BulkEmailEntries": entries,
        "ConfigurationSetName": "newsletter",
        **extra,
    }
    return client.send_bulk_email(**request)


def addresses(n, domain="x.org"):
    return [f"r{i}@{domain}" for i in range(n)]


def test_send_bulk_email_sends_one_rendered_email_per_entry(ses):
    long_url = "<https://news.example.test/unsubscribe?token=" + "A" * 150 + ">"
    entries = [
        bulk_entry("Ann Example <ann@x.org>", token="a.1", name="Ann & <Co>",
                   headers=[("List-Unsubscribe", long_url), ("X-Campaign", "mine")], tags={"extra": "1"}),
        bulk_entry("=?utf-8?b?Wm/Dqw==?= <zoe@x.org>", token="z.2"),  # "Zoë", as RFC 2047
        bulk_entry('"Smith, John" <john@x.org>', token="j.3", name="John"),
    ]

    response = send_bulk(make_client(ses), entries, ReplyToAddresses=["editor@example.test"])

    results = response["BulkEmailEntryResults"]
    assert [r["Status"] for r in results] == ["SUCCESS"] * 3
    [request] = ses.requests
    assert request.is_bulk and request.is_send and not request.is_send_email
    assert ses.send_requests == ses.bulk_requests == [request] and ses.send_email_requests == []
    assert request.to_addresses == ["ann@x.org", "zoe@x.org", "john@x.org"]
    assert request.tags == {"mailout_id": "m-3"}

    sent = ses.sent
    assert all(isinstance(d, BulkDelivery) for d in sent)
    assert [d.to_addresses for d in sent] == [["ann@x.org"], ["zoe@x.org"], ["john@x.org"]]
    assert [d.message_id for d in sent] == [r["MessageId"] for r in results]
    assert len({d.message_id for d in sent}) == 3
    assert all(d.accepted_at >= d.received_at == request.received_at for d in sent)
    assert sent[0].tags == {"mailout_id": "m-3", "extra": "1"} and sent[1].tags == {"mailout_id": "m-3"}
    assert sent[0].body["ConfigurationSetName"] == "newsletter" and sent[0].request is request

    ann = sent[0].message
    assert ann["From"] == "News <news@example.test>"
    assert ann["To"] == "Ann Example <ann@x.org>"
    assert ann["Subject"] == "News for Ann & <Co>"  # not escaped outside the Html part
    assert ann["Reply-To"] == "editor@example.test"
    assert ann["Message-ID"] == f"<{sent[0].message_id}@email.amazonses.com>"
    assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Long, unfolded, not an encoded word; the entry's header replaces the template's.
    assert ann["List-Unsubscribe"] == long_url and f"List-Unsubscribe: {long_url}\r\n".encode() in sent[0].raw
    assert ann.get_all("X-Campaign") == ["mine"]
    html_part = ann.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html_part == (
        '<p>Hello Ann &amp; &lt;Co&gt;, {Ann &amp; &lt;Co&gt;}</p><a href="https://u.test/?t=a.1">Unsubscribe</a>\n'
    )
    text_part = ann.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text_part == "Hello Ann & <Co>\nUnsubscribe: https://u.test/?t=a.1\n"

    zoe = sent[1].message
    assert zoe["To"] == "Zoë <zoe@x.org>" and zoe["To"].addresses[0].addr_spec == "zoe@x.org"
    assert zoe["Subject"] == "News for reader"  # TemplateData where the entry has no value
    assert "List-Unsubscribe" not in zoe and zoe["X-Campaign"] == "default"
    assert "Reply-To" in zoe
    assert "https://u.test/?t=z.2" in zoe.get_body(("plain",)).get_content()
    assert sent[2].message["To"].addresses[0].display_name == "Smith, John"


def test_the_application_transport_sends_bulk_through_it(ses, app_transport):
    content, _ = bulk_content(
        mailout_id="m-9", subject="Hi", body_html="<p>Hello</p>", unsubscribe_base="https://n.test/u?token="
    )
    recipients = [content.recipient(to_email=a, to_name=None, token=f"tok{i}") for i, a in enumerate(addresses(3))]
    ses.fail_address("r1@x.org", "MessageRejected", 400, "Address blacklisted.")

    results = app_transport.send_bulk(content, recipients)

    assert [r.message_id for r in results] == [ses.sent[0].message_id, None, ses.sent[1].message_id]
    assert results[1].error.kind == RECIPIENT and str(results[1].error) == "MESSAGE_REJECTED: Address blacklisted."
    assert [d.to_addresses[0] for d in ses.sent] == ["r0@x.org", "r2@x.org"]
    assert ses.sent[1].message["List-Unsubscribe"] == "<https://n.test/u?token=tok2>"
    assert "https://n.test/u?token=tok2" in ses.sent[1].message.get_body(("html",)).get_content()




def ok_bulk_request() -> dict:
    """A SendBulkEmail request SES takes, for a test to spoil."""
    return {
        "FromEmailAddress": "news@example.test",
        "DefaultContent": {"Template": {"TemplateContent": dict(TEMPLATE), "TemplateData": "{}"}},
        "BulkEmailEntries": [bulk_entry("ok@x.org")],
    }

@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r.pop("FromEmailAddress"), id="no sender"),
        pytest.param(lambda r: r.update(FromEmailAddress="Café <news@example.test>"), id="non-ASCII sender"),
        pytest.param(lambda r: r.update(ReplyToAddresses=["Zoë <z@x.org>"]), id="non-ASCII reply-to"),
        pytest.param(
            lambda r: r.update(DefaultContent={"Template": {"TemplateName": "stored"}}), id="no inline template"
        ),
        pytest.param(lambda r: r["DefaultContent"]["Template"]["TemplateContent"].pop("Subject"), id="no subject"),
        pytest.param(lambda r: r.update(BulkEmailEntries=[]), id="no entries"),
        pytest.param(lambda r: r.update(BulkEmailEntries=[bulk_entry(a) for a in addresses(51)]), id="51 entries"),
        pytest.param(lambda r: r["BulkEmailEntries"].append({"Destination": {}}), id="no destination"),
        pytest.param(
            lambda r: r["BulkEmailEntries"].append({"Destination": {"ToAddresses": []}}), id="empty destination"
        ),
        pytest.param(lambda r: r["BulkEmailEntries"].append(bulk_entry("Zoë <zoe@x.org>")), id="raw non-ASCII name"),
        pytest.param(lambda r: r["BulkEmailEntries"].append(bulk_entry("not an address")), id="no address"),
        pytest.param(
            lambda r: r["BulkEmailEntries"].append(bulk_entry("a@x.org", headers=[("X-A", "1\r\nBcc: e@vil")])),
            id="header line break",
        ),
        pytest.param(lambda r: r["DefaultContent"]["Template"].update(TemplateData="{nope"), id="bad TemplateData"),
        pytest.param(lambda r: r["DefaultContent"]["Template"]["TemplateContent"].update(Html="x" * 500_001),
                     id="template over 500 KB"),
    ],
)
def test_a_malformed_bulk_request_is_refused_as_a_whole(ses, change):
    request = ok_bulk_request()
    change(request)

    with pytest.raises(ClientError) as caught:
        make_client(ses, parameter_validation=False).send_bulk_email(**request)

    assert caught.value.response["Error"]["Code"] == "BadRequestException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert classify_client_error(caught.value, "news@example.test").kind == RECIPIENT
    assert ses.sent == [] and [r.status for r in ses.bulk_requests] == [400]


def test_fifty_entries_are_accepted(ses):
    response = send_bulk(make_client(ses), [bulk_entry(a) for a in addresses(50)])
    assert len(response["BulkEmailEntryResults"]) == 50
    assert sorted(d.to_addresses[0] for d in ses.sent) == sorted(addresses(50))


@pytest.mark.parametrize(
    "code, status, entry_status, kind",
    [
        ("MessageRejected", 400, "MESSAGE_REJECTED", RECIPIENT),
        ("TooManyRequestsException", 429, "ACCOUNT_THROTTLED", THROTTLED),
        ("LimitExceededException", 429, "ACCOUNT_THROTTLED", THROTTLED),
        ("InternalFailure", 500, "TRANSIENT_FAILURE", TRANSIENT),
        ("ServiceUnavailable", 503, "TRANSIENT_FAILURE", TRANSIENT),
        ("SendingPausedException", 400, "ACCOUNT_SENDING_PAUSED", ACCOUNT),
        ("AccountSendingPausedException", 400, "ACCOUNT_SENDING_PAUSED", ACCOUNT),
        ("MailFromDomainNotVerifiedException", 400, "MAIL_FROM_DOMAIN_NOT_VERIFIED", ACCOUNT),
        ("BadRequestException", 400, "INVALID_PARAMETER", RECIPIENT),
        ("FAILED", 400, "FAILED", TRANSIENT),
    ],
)
def test_fail_address_gives_that_entry_its_status(ses, code, status, entry_status, kind):
    assert bulk_status_for(code, status) == entry_status
    ses.fail_address("R1@x.org", code, status, "because")

    response = send_bulk(make_client(ses), [bulk_entry(a) for a in addresses(3)])

    results = response["BulkEmailEntryResults"]
    assert results[1] == {"Status": entry_status, "Error": "because"}
    assert [r["Status"] for r in results[::2]] == ["SUCCESS", "SUCCESS"]
    assert [d.to_addresses[0] for d in ses.sent] == ["r0@x.org", "r2@x.org"]
    [(request, index, result)] = ses.bulk_entry_failures
    assert (request.status, index, result["Status"]) == (200, 1, entry_status)
    assert bulk_result(results[1], "news@example.test").error.kind == kind


def test_fail_address_times_limits_it_and_works_for_send_email_too(ses):
    client = make_client(ses)
    ses.fail_address("r0@x.org", "TooManyRequestsException", 429, "slow down", times=2)

    statuses = [send_bulk(client, [bulk_entry("r0@x.org")])["BulkEmailEntryResults"][0]["Status"] for _ in range(3)]

    assert statuses == ["ACCOUNT_THROTTLED", "ACCOUNT_THROTTLED", "SUCCESS"]
    ses.fail_address("ann@x.org", "MessageRejected", 400, "once", times=1)
    with pytest.raises(ClientError):
        send(client, "ann@x.org")
    assert send(client, "ann@x.org")["MessageId"]


def test_fail_next_fails_a_bulk_call_as_a_whole(ses):
    client = make_client(ses)
    ses.fail_next(2, "TooManyRequestsException", 429, "Maximum sending rate exceeded.")

    with pytest.raises(ClientError) as caught:
        send_bulk(client, [bulk_entry(a) for a in addresses(3)])
    assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert classify_client_error(caught.value, "news@example.test").kind == THROTTLED
    with pytest.raises(ClientError):
        send(client)  # the second one: either API
    assert send_bulk(client, [bulk_entry("r0@x.org")])["BulkEmailEntryResults"][0]["Status"] == "SUCCESS"

    assert [(r.route, r.status) for r in ses.send_requests] == [
        (BULK_EMAIL_PATH, 429), ("/v2/email/outbound-emails", 429), (BULK_EMAIL_PATH, 200)
    ]
    assert ses.throttled == ses.send_requests[:2]
    assert ses.throttled[0].to_addresses == addresses(3)
    assert [d.to_addresses for d in ses.sent] == [["r0@x.org"]]


def test_pause_sending_counts_emails_part_way_through_a_bulk_call(ses):
    client = make_client(ses)
    send(client, "first@x.org")  # email 1
    ses.pause_sending(from_send=4)

    # Emails 2 to 5: the 4th and the 5th are refused inside the answer.
    results = send_bulk(client, [bulk_entry(a) for a in addresses(4)])["BulkEmailEntryResults"]
    assert [r["Status"] for r in results] == ["SUCCESS", "SUCCESS", "ACCOUNT_SENDING_PAUSED", "ACCOUNT_SENDING_PAUSED"]
    assert results[2]["Error"] == "Email sending is disabled for your entire Amazon SES account."
    assert bulk_result(results[2], "news@example.test").error.kind == ACCOUNT
    # A call that starts at or after the 4th is refused as a whole.
    with pytest.raises(ClientError) as caught:
        send_bulk(client, [bulk_entry("r9@x.org")])
    assert caught.value.response["Error"]["Code"] == "SendingPausedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        send(client)

    ses.resume_sending()
    assert send_bulk(client, [bulk_entry("r8@x.org")])["BulkEmailEntryResults"][0]["Status"] == "SUCCESS"
    assert [d.to_addresses[0] for d in ses.sent] == ["first@x.org", "r0@x.org", "r1@x.org", "r8@x.org"]


def test_throttle_above_per_second_counts_the_emails_of_a_bulk_call(ses):
    client = make_client(ses)
    ses.throttle_above_per_second = 5
    ses.fail_address("r1@x.org")  # refused on its own: not counted

    send_bulk(client, [bulk_entry(a) for a in addresses(4)])  # 3 accepted
    with pytest.raises(ClientError) as caught:
        send_bulk(client, [bulk_entry(a) for a in addresses(3, "y.org")])  # 3 + 3 > 5
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["Error"]["Message"] == "Maximum sending rate exceeded."
    send_bulk(client, [bulk_entry(a) for a in addresses(2, "z.org")])  # 5: at the limit
    with pytest.raises(ClientError):
        send(client)  # a SendEmail counts against the same window

    assert len(ses.sent) == 5 and len(ses.throttled) == 2
    accepted = sorted(d.accepted_at for d in ses.sent)
    assert accepted[-1] - accepted[0] < 1.0


def test_a_short_answer_leaves_results_out_but_the_emails_go(ses, app_transport):
    client = make_client(ses)
    ses.short_answer_next(1, keep=1)

    assert len(send_bulk(client, [bulk_entry(a) for a in addresses(3)])["BulkEmailEntryResults"]) == 1
    assert len(send_bulk(client, [bulk_entry(a) for a in addresses(3, "y.org")])["BulkEmailEntryResults"]) == 3
    assert len(ses.sent) == 6
    assert [r["Status"] for r in ses.bulk_requests[0].entry_results] == ["SUCCESS"] * 3  # what SES did

    ses.bulk_short_answer = True
    content, _ = bulk_content(
        mailout_id="m", subject="Hi", body_html="<p>x</p>", unsubscribe_base="https://n.test/u?t="
    )
    results = app_transport.send_bulk(content, [content.recipient(to_email="a@x.org", to_name=None, token="t")])
    assert results[0].error.kind == IN_DOUBT
    assert ses.sent[-1].to_addresses == ["a@x.org"]


def test_an_entry_that_cannot_be_rendered_is_accepted_but_never_delivered(ses):
    entries = [bulk_entry("ok@x.org"), {"Destination": {"ToAddresses": ["no-token@x.org"]}}]

    results = send_bulk(make_client(ses), entries)["BulkEmailEntryResults"]

    assert [r["Status"] for r in results] == ["SUCCESS", "SUCCESS"]
    assert [d.to_addresses for d in ses.sent] == [["ok@x.org"]]
    [failure] = ses.rendering_failures
    assert failure.to_addresses == ["no-token@x.org"]
    assert failure.rendering_error == "Attribute 't' is not present in the rendering data."


@pytest.mark.parametrize(
    "template, data, escape, expected",
    [
        ("a {{x}} b", {"x": "<&>\"'`="}, True, "a &lt;&amp;&gt;&quot;&#x27;&#x60;&#x3D; b"),
        ("a {{x}} b", {"x": "<&>"}, False, "a <&> b"),
        ("{{ x }}/{{x}}/{{  x\t}}", {"x": 1}, True, "1/1/1"),
        ("{{b}} {{n}} [{{z}}]", {"b": True, "n": 2.5, "z": None}, True, "true 2.5 []"),
        # No triple-brace raw insert: the outer braces stay, the value is escaped.
        ("{{{x}}}", {"x": "<&>"}, True, "{&lt;&amp;&gt;}"),
        ("?t={{{t}}}", {"t": "tok"}, False, "?t={tok}"),
        ("?t={{t}}", {"t": "tok"}, False, "?t=tok"),
        # The text's own braces: a lone "}}" or "{" stays as it is.
        ("{ x } }} a}}b {", {}, True, "{ x } }} a}}b {"),
        ("p {color: red}} {{t}}}}", {"t": "v"}, False, "p {color: red}} v}}"),
    ],
)
def test_simple_substitution(template, data, escape, expected):
    assert render_template(template, data, escape_html=escape) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{missing}}", "{{#if x}}y{{/if}}", "a {{ b", "{{x.y}}", "{{{{x}}}}", "{{! comment }}", "{{> partial}}",
        "{{x y}}", "{{&x}}",
    ],  # fmt: skip
)
def test_simple_substitution_refuses_what_it_cannot_render(template):
    from tests.support.ses_standin import _RenderingFailure

    with pytest.raises(_RenderingFailure):
        render_template(template, {"x": "1", "y": {"z": 1}}, escape_html=True)


# --- SendEmail: what SES refuses ------------------------------------------------------


def raw(*header_lines, body="Hello Ann"):
    """A raw message: these header lines (From and To by default), a blank line, the body."""
    lines = header_lines or ("From: news@example.test", "To: ann@x.org", "Subject: Hi")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def send_request(**change):
    request = {
        "FromEmailAddress": "news@example.test",
        "Destination": {"ToAddresses": ["ann@x.org"]},
        "Content": {"Raw": {"Data": RAW}},
        "EmailTags": [{"Name": "mailout_id", "Value": "m-1"}],
    }
    request.update(change)
    return request


def raw_data(*header_lines, body="Hello Ann"):
    return {"Content": {"Raw": {"Data": raw(*header_lines, body=body)}}}


HEADERS = ("From: news@example.test", "To: ann@x.org", "Subject: Hi")


@pytest.mark.parametrize(
    "change, problem",
    [
        # Addresses: 7-bit ASCII (no SMTPUTF8), one mailbox each.
        pytest.param({"FromEmailAddress": "Café <news@example.test>"}, "not 7-bit ASCII", id="non-ASCII sender name"),
        pytest.param({"FromEmailAddress": "café@example.test"}, "not 7-bit ASCII", id="non-ASCII sender local part"),
        pytest.param({"ReplyToAddresses": ["Zoë <z@x.org>"]}, "ReplyToAddresses[0]", id="non-ASCII reply-to"),
        pytest.param({"Destination": {"ToAddresses": ["zoë@x.org"]}}, "not 7-bit ASCII", id="non-ASCII local part"),
        pytest.param(
            {"Destination": {"ToAddresses": ["ann@bücher.example"]}}, "not 7-bit ASCII", id="IDN domain not punycode"
        ),
        pytest.param(
            {"Destination": {"ToAddresses": ["ann@xn--zz.example"]}}, "not valid punycode", id="broken punycode"
        ),
        pytest.param(
            {"Destination": {"ToAddresses": ["ann@x.org"], "CcAddresses": ["Zoë <z@x.org>"]}},
            "Destination.CcAddresses[0]",
            id="non-ASCII cc",
        ),
        pytest.param(
            {"Destination": {"ToAddresses": ["ann@x.org"], "BccAddresses": ["nobody"]}},
            "Destination.BccAddresses[0]",
            id="bcc not an address",
        ),
        pytest.param({"Destination": {"ToAddresses": ["ann@x.org, bob@x.org"]}}, "not one email", id="two in one"),
        pytest.param({"Destination": {"ToAddresses": ["ann"]}}, "not one email", id="no domain"),
        pytest.param({"Destination": {"ToAddresses": ["ann@localhost"]}}, "not a host name", id="one-label domain"),
        pytest.param({"Destination": {"ToAddresses": ["ann@x_y.org"]}}, "not a host name", id="underscore domain"),
        pytest.param({"Destination": {}}, "ToAddresses are required", id="no recipient"),
        # Message tags: letters, digits, "_" and "-".
        pytest.param({"EmailTags": [{"Name": "mailout_id", "Value": "m 1"}]}, "EmailTags[0].Value", id="tag space"),
        pytest.param({"EmailTags": [{"Name": "mailout:id", "Value": "m"}]}, "EmailTags[0].Name", id="tag colon"),
        pytest.param({"EmailTags": [{"Name": "t", "Value": "v" * 257}]}, "256", id="tag too long"),
        # The raw message.
        pytest.param(raw_data(*HEADERS, "X-Name: Caf\u00e9"), "not 7-bit ASCII", id="non-ASCII header"),
        pytest.param(raw_data(*HEADERS, "X-Long: " + "a" * 991), "(header) has 999", id="header line 999"),
        pytest.param(raw_data(*HEADERS, body="b" * 999), "(body) has 999", id="body line 999"),
        pytest.param(
            raw_data(*HEADERS, body="ok\r\n" + "b" * 2000 + "\r\nok"), "(body) has 2000", id="body line 2000"
        ),
        pytest.param({"Content": {"Raw": {"Data": b"From: news@example.test\r\nTo: ann@x.org"}}}, "no blank line",
                     id="no body separator"),
        pytest.param(raw_data("To: ann@x.org", "Subject: Hi"), "no From header", id="no From"),
        pytest.param(raw_data(*HEADERS, "Subject: Again"), "more than one subject", id="two Subjects"),
        pytest.param(raw_data(*HEADERS, "Message-ID: <a@x>", "Message-ID: <b@x>"), "more than one message-id",
                     id="two Message-IDs"),
        pytest.param(raw_data(*HEADERS, "Hello there"), "not a header field", id="not a field"),
        pytest.param(raw_data(" folded: first", *HEADERS), "not a header field", id="continuation first"),
        pytest.param(raw_data(*HEADERS, "X-Space : x"), "not a header field", id="space before colon"),
        pytest.param(raw_data("From: news@example.test", "To: Smith, John <j@x.org>"), "To header",
                     id="To does not parse"),
        pytest.param(raw_data("From: news@", "To: ann@x.org"), "From header", id="From does not parse"),
        pytest.param(raw_data(*HEADERS, "Cc: a@x.org, ann@"), "Cc header", id="Cc does not parse"),
        pytest.param(raw_data("From: news@example.test", "To: ann@bad_domain.org"), "not a host name",
                     id="To domain not a host"),
    ],
)
def test_send_email_refuses_what_ses_refuses(ses, change, problem):
    with pytest.raises(ClientError) as caught:
        make_client(ses).send_email(**send_request(**change))

    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("BadRequestException", 400)
    assert problem.lower() in error["Error"]["Message"].lower()
    assert classify_client_error(caught.value, "news@example.test").kind == RECIPIENT
    assert ses.sent == [] and [r.status for r in ses.send_email_requests] == [400]


@pytest.mark.parametrize(
    "change, header_to",
    [
        pytest.param({}, ["ann@x.org"], id="plain"),
        pytest.param({"FromEmailAddress": "=?utf-8?q?Caf=C3=A9?= <news@example.test>"}, ["ann@x.org"],
                     id="RFC 2047 sender name"),
        pytest.param(
            {"Destination": {"ToAddresses": ["ann@xn--bcher-kva.example"]},
             **raw_data("From: news@example.test", "To: Ann <ann@xn--bcher-kva.example>")},
            ["ann@xn--bcher-kva.example"],
            id="punycode domain",
        ),
        pytest.param(
            raw_data("From: News <news@example.test>", "To: =?utf-8?b?Wm/Dqw==?= <zoe@x.org>,", " bob@x.org",
                     "Subject: folded"),
            ["zoe@x.org", "bob@x.org"],
            id="folded To, encoded name",
        ),
        pytest.param(raw_data("From: news@example.test", "To: undisclosed-recipients:;"), [], id="group"),
        pytest.param(raw_data("From: news@example.test", "Subject: no To"), [], id="no To header"),
        pytest.param(raw_data(*HEADERS, "X-Long: " + "a" * 990, body="b" * 998), ["ann@x.org"], id="998 is fine"),
        pytest.param(raw_data(*HEADERS, body="ends with }} and {{ braces"), ["ann@x.org"], id="braces in a body"),
    ],
)
def test_send_email_takes_what_ses_takes_and_records_the_to_header(ses, change, header_to):
    make_client(ses).send_email(**send_request(**change))

    [record] = ses.sent
    assert record.header_to == header_to


def test_the_to_header_can_be_checked_against_the_recipient(ses):
    """What a test of the application asserts: the To header names exactly
    the recipient, whatever Destination says."""
    client = make_client(ses)
    send(client, "ann@x.org")  # RAW's To is ann@x.org
    send(client, "bob@x.org")  # ... and not bob

    assert [(r.to_addresses, r.header_to) for r in ses.sent] == [
        (["ann@x.org"], ["ann@x.org"]),
        (["bob@x.org"], ["ann@x.org"]),
    ]
    send_bulk(client, [bulk_entry("Ann <ann@x.org>")])
    assert ses.sent[-1].header_to == ["ann@x.org"] == ses.sent[-1].message["To"].addresses[0].addr_spec.split()


@pytest.mark.parametrize(
    "change, problem",
    [
        pytest.param(lambda r: r.update(FromEmailAddress="news@xn--zz.example"), "punycode", id="sender punycode"),
        pytest.param(lambda r: r["BulkEmailEntries"].append(bulk_entry("a@bücher.example")), "7-bit ASCII",
                     id="IDN destination"),
        pytest.param(lambda r: r["BulkEmailEntries"].append(bulk_entry("a@x.org, b@x.org")), "not one",
                     id="two in one destination"),
        pytest.param(
            lambda r: r["BulkEmailEntries"].append(
                {"Destination": {"ToAddresses": ["a@x.org"], "CcAddresses": ["Zoë <z@x.org>"]}}
            ),
            "CcAddresses[0]",
            id="non-ASCII cc",
        ),
        pytest.param(lambda r: r["BulkEmailEntries"].append(bulk_entry("a@x.org", tags={"extra": "a.b"})),
                     "ReplacementTags[0].Value", id="tag with a dot"),
        pytest.param(lambda r: r.update(DefaultEmailTags=[{"Name": "mailout id", "Value": "m"}]),
                     "DefaultEmailTags[0].Name", id="tag name with a space"),
        pytest.param(
            lambda r: r["BulkEmailEntries"].append(bulk_entry("a@x.org", headers=[("X-Long", "v" * 991)])),
            "996",
            id="header name and value over 996",
        ),
    ],
)
def test_a_bulk_request_with_what_ses_refuses_is_refused_as_a_whole(ses, change, problem):
    request = ok_bulk_request()
    change(request)

    with pytest.raises(ClientError) as caught:
        make_client(ses).send_bulk_email(**request)

    assert caught.value.response["Error"]["Code"] == "BadRequestException"
    assert problem in caught.value.response["Error"]["Message"]
    assert ses.sent == [] and [r.status for r in ses.bulk_requests] == [400]


# --- Every request body against botocore's model of SES v2 ------------------------------


def post(ses, path, body):
    """A request botocore would refuse to send: JSON as rest-json carries it."""
    return requests.post(ses.url + path, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=5)


def json_send_email(**change):
    body = {
        "FromEmailAddress": "news@example.test",
        "Destination": {"ToAddresses": ["ann@x.org"]},
        "Content": {"Raw": {"Data": base64.b64encode(RAW).decode()}},
    }
    body.update(change)
    return body


def json_bulk(**change):
    body = {
        "FromEmailAddress": "news@example.test",
        "DefaultContent": {"Template": {"TemplateContent": dict(TEMPLATE), "TemplateData": '{"name": "x"}'}},
        "BulkEmailEntries": [bulk_entry("ok@x.org")],
    }
    body.update(change)
    return body


@pytest.mark.parametrize(
    "path, body, problems",
    [
        pytest.param(SEND_EMAIL_PATH, json_send_email(Foo=1), ["Foo"], id="unknown member"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(Destination={"ToAddresses": ["ann@x.org"], "To": ["b@x.org"]}),
                     ["Destination: unknown member 'To'"], id="unknown nested member"),
        pytest.param(SEND_EMAIL_PATH, {k: v for k, v in json_send_email().items() if k != "Content"},
                     ["required member 'Content'"], id="no Content"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(Content={"Raw": {}}), ["Content.Raw: required member 'Data'"],
                     id="no Raw.Data"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(Destination={"ToAddresses": "ann@x.org"}),
                     ["Destination.ToAddresses: expected a list"], id="a string for a list"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(FromEmailAddress=5), ["FromEmailAddress: expected a string"],
                     id="a number for a string"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(Content={"Raw": {"Data": "not base64!"}}),
                     ["Content.Raw.Data: expected base64"], id="blob not base64"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(TenantName=""), ["TenantName: 0 characters, fewer than"],
                     id="string under its min"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(EmailTags=[{"Name": "mailout_id"}]),
                     ["EmailTags[0]: required member 'Value'"], id="tag without a value"),
        pytest.param(SEND_EMAIL_PATH, json_send_email(Foo=1, Bar=2, FromEmailAddress=[]),
                     ["3 validation errors", "'Foo'", "'Bar'", "FromEmailAddress: expected a string"],
                     id="every problem listed"),
        pytest.param(BULK_EMAIL_PATH, json_bulk(BulkEmailEntries=[{**bulk_entry("a@x.org"), "Tags": []}]),
                     ["BulkEmailEntries[0]: unknown member 'Tags'"], id="bulk unknown member"),
        pytest.param(BULK_EMAIL_PATH, {k: v for k, v in json_bulk().items() if k != "BulkEmailEntries"},
                     ["required member 'BulkEmailEntries'"], id="bulk no entries member"),
        pytest.param(BULK_EMAIL_PATH, json_bulk(BulkEmailEntries={"Destination": {}}),
                     ["BulkEmailEntries: expected a list"], id="bulk object for a list"),
        pytest.param(BULK_EMAIL_PATH, json_bulk(BulkEmailEntries=[{"ReplacementTags": []}]),
                     ["BulkEmailEntries[0]: required member 'Destination'"], id="bulk entry without Destination"),
        pytest.param(BULK_EMAIL_PATH, json_bulk(DefaultContent="template"), ["DefaultContent: expected an object"],
                     id="bulk string for an object"),
        pytest.param(
            BULK_EMAIL_PATH,
            json_bulk(BulkEmailEntries=[bulk_entry("a@x.org", headers=[("X-A", "")])]),
            ["BulkEmailEntries[0].ReplacementHeaders[0].Value: 0 characters, fewer than the minimum 1"],
            id="bulk header value under its min",
        ),
    ],
)
def test_a_body_off_the_model_is_refused_listing_its_problems(ses, path, body, problems):
    answer = post(ses, path, body)

    assert answer.status_code == 400
    assert answer.headers["x-amzn-ErrorType"].split(":")[0] == "BadRequestException"
    message = answer.json()["message"]
    assert "validation error" in message
    for problem in problems:
        assert problem in message
    assert ses.sent == [] and [r.status for r in ses.send_requests] == [400]


@pytest.mark.parametrize(
    "change, problem",
    [
        # What botocore does not check before sending (max, enum, pattern).
        pytest.param(
            lambda t: t.update(TemplateData=json.dumps({"x": "y" * 262_144})),
            "TemplateData: 262153 characters, more than the maximum 262144",
            id="string over its max",
        ),
        pytest.param(lambda t: t.update(Headers=[{"Name": f"X-{i}", "Value": "v"} for i in range(16)]),
                     "Headers: 16 entries, more than the maximum 15", id="list over its max"),
        pytest.param(
            lambda t: t.update(Headers=[{"Name": "X-A:B", "Value": "v"}]),
            "Headers[0].Name: 'X-A:B' does not match",
            id="header name pattern",
        ),
        pytest.param(lambda t: t.update(Headers=[{"Name": "X-A", "Value": "caf\u00e9"}]), "Headers[0].Value:",
                     id="header value not printable ASCII"),
        pytest.param(lambda t: t.update(Headers=[{"Name": "X-A", "Value": "a\tb"}]), "does not match the pattern",
                     id="header value with a tab"),
    ],
)
def test_a_bulk_request_off_the_model_is_refused_through_boto3(ses, change, problem):
    request = {
        "FromEmailAddress": "news@example.test",
        "DefaultContent": {"Template": {"TemplateContent": dict(TEMPLATE), "TemplateData": '{"name": "x"}'}},
        "BulkEmailEntries": [bulk_entry("ok@x.org")],
    }
    change(request["DefaultContent"]["Template"])

    with pytest.raises(ClientError) as caught:
        make_client(ses).send_bulk_email(**request)

    assert caught.value.response["Error"]["Code"] == "BadRequestException"
    assert problem in caught.value.response["Error"]["Message"]
    assert ses.sent == []


def test_an_enum_off_the_model_is_refused(ses):
    with pytest.raises(ClientError) as caught:
        make_client(ses).send_email(
            **send_request(ConfigurationOverrides={"Tracking": {"OpenTrackingEnabled": "YES"}})
        )
    message = caught.value.response["Error"]["Message"]
    assert "ConfigurationOverrides.Tracking.OpenTrackingEnabled: 'YES' is not one of ENABLED, DISABLED" in message


def test_the_model_is_botocores(ses):
    """The checks walk the installed botocore's shapes, so a member botocore
    knows is accepted and one it does not know is refused."""
    from tests.support.ses_standin_checks import input_shape

    assert set(input_shape("SendEmail").members) >= {"FromEmailAddress", "Destination", "Content", "EmailTags"}
    assert input_shape("SendBulkEmail").required_members == ["DefaultContent", "BulkEmailEntries"]
    assert send(make_client(ses))["MessageId"]
    assert post(ses, SEND_EMAIL_PATH, json_send_email(ConfigurationSetName="newsletter")).status_code == 200


# --- The events SES publishes ------------------------------------------------------------

ISO_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_a_rendering_failure_is_published_as_ses_documents_it(ses):
    """Field for field the "Rendering Failure record" of AWS's "Examples of
    event data that Amazon SES publishes to Amazon SNS"."""
    mailout_id = str(uuid.uuid4())
    entries = [bulk_entry("ok@x.org"), {"Destination": {"ToAddresses": ["No Token <no-token@x.org>"]}}]

    results = send_bulk(
        make_client(ses), entries, DefaultEmailTags=[{"Name": "mailout_id", "Value": mailout_id}]
    )["BulkEmailEntryResults"]

    [text] = ses.rendering_failure_events()
    event = json.loads(text)
    assert list(event) == ["eventType", "mail", "failure"]
    assert event["eventType"] == "Rendering Failure"
    assert event["failure"] == {
        "errorMessage": "Attribute 't' is not present in the rendering data.",
        "templateName": None,  # an inline template has no name
    }
    mail = event["mail"]
    assert list(mail) == [
        "timestamp", "source", "sourceArn", "sendingAccountId", "messageId", "destination", "headersTruncated", "tags",
    ]  # fmt: skip
    assert ISO_MILLIS.fullmatch(mail["timestamp"])
    assert mail["source"] == "News <news@example.test>"
    assert mail["sourceArn"] == "arn:aws:ses:us-east-1:123456789012:identity/example.test"
    assert mail["sendingAccountId"] == "123456789012"
    assert mail["messageId"] == results[1]["MessageId"] == ses.rendering_failures[0].message_id
    assert mail["destination"] == ["No Token <no-token@x.org>"]
    assert mail["headersTruncated"] is False
    assert mail["tags"]["ses:configuration-set"] == ["newsletter"]
    assert mail["tags"]["ses:operation"] == ["SendBulkEmail"]
    assert mail["tags"]["mailout_id"] == [mailout_id]

    # The application reads it as the event it is.
    parsed = parse_ses_event(text)
    assert (parsed.event_type, parsed.ses_message_id, str(parsed.mailout_id)) == (
        "Rendering Failure", results[1]["MessageId"], mailout_id,
    )  # fmt: skip


def test_a_rendering_failure_names_the_template_the_request_named(ses):
    entries = [{"Destination": {"ToAddresses": ["a@x.org"]}, "ReplacementTags": [{"Name": "extra", "Value": "1"}]}]
    request = {
        "FromEmailAddress": "news@example.test",
        "DefaultContent": {"Template": {"TemplateName": "newsletter-inline", "TemplateContent": dict(TEMPLATE)}},
        "DefaultEmailTags": [{"Name": "mailout_id", "Value": "m-3"}],
        "BulkEmailEntries": entries,
    }

    make_client(ses).send_bulk_email(**request)

    [event] = [json.loads(text) for text in ses.rendering_failure_events()]
    assert event["failure"] == {
        "errorMessage": "Attribute 'name' is not present in the rendering data.",
        "templateName": "newsletter-inline",
    }
    assert event["mail"]["tags"]["mailout_id"] == ["m-3"] and event["mail"]["tags"]["extra"] == ["1"]
    assert "ses:configuration-set" not in event["mail"]["tags"]  # the request named none
    assert ses.sent == []


@pytest.mark.parametrize("api", ["SendEmail", "SendBulkEmail"])
def test_bounce_and_complaint_events_for_a_sent_email(ses, api):
    mailout_id = str(uuid.uuid4())
    client = make_client(ses)
    if api == "SendEmail":
        client.send_email(**send_request(EmailTags=[{"Name": "mailout_id", "Value": mailout_id}],
                                         ConfigurationSetName="newsletter"))
    else:
        send_bulk(client, [bulk_entry("ann@x.org")], DefaultEmailTags=[{"Name": "mailout_id", "Value": mailout_id}])
    [email] = ses.sent

    bounce = json.loads(ses.bounce_event(email))
    assert list(bounce) == ["eventType", "bounce", "mail"]
    assert bounce["bounce"]["bounceType"] == "Permanent" and bounce["bounce"]["bounceSubType"] == "General"
    assert bounce["bounce"]["bouncedRecipients"] == [
        {"emailAddress": "ann@x.org", "action": "failed", "status": "5.1.1",
         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
    ]  # fmt: skip
    assert set(bounce["bounce"]) == {"bounceType", "bounceSubType", "bouncedRecipients", "timestamp", "feedbackId",
                                     "reportingMTA"}
    mail = bounce["mail"]
    assert mail["messageId"] == email.message_id and mail["destination"] == ["ann@x.org"]
    assert mail["tags"]["ses:operation"] == [api] and mail["tags"]["mailout_id"] == [mailout_id]
    assert mail["commonHeaders"]["to"] == ["ann@x.org"] and mail["commonHeaders"]["messageId"] == email.message_id
    assert {"name": "To", "value": "ann@x.org"} in mail["headers"]

    complaint = json.loads(ses.complaint_event(email))
    assert complaint["eventType"] == "Complaint"
    assert complaint["complaint"]["complainedRecipients"] == [{"emailAddress": "ann@x.org"}]
    assert complaint["complaint"]["complaintFeedbackType"] == "abuse"
    assert complaint["complaint"]["feedbackId"] != bounce["bounce"]["feedbackId"]

    undetermined = json.loads(ses.bounce_event(email, bounce_type="Undetermined", bounce_sub_type="Undetermined"))
    assert undetermined["bounce"]["bouncedRecipients"] == [{"emailAddress": "ann@x.org"}]
    for text, kind in ((ses.bounce_event(email, bounce_type="Transient", bounce_sub_type="MailboxFull"), "Bounce"),
                       (ses.complaint_event(email), "Complaint")):
        parsed = parse_ses_event(text)
        assert (parsed.event_type, parsed.addresses, str(parsed.mailout_id)) == (kind, ["ann@x.org"], mailout_id)


def test_a_raw_message_over_40_mb_once_base64_encoded_is_refused():
    from tests.support.ses_standin_checks import BadRequest, check_raw_message

    head = b"From: news@example.test\r\nTo: a@example.org\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    fits = head + line * (29 * 1024 * 1024 // len(line))
    assert check_raw_message(fits) == ["a@example.org"]
    with pytest.raises(BadRequest, match="40 MB"):
        check_raw_message(fits + line * (1024 * 1024 // len(line) + 1000))
