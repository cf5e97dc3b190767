"""The SES stand-in speaks the SES v2 API well enough for a real boto3 client."""

import json
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

try:
    from amazonsender.template import bulk_content
except ImportError:  # before bulk_content moved out of message.py
    from amazonsender.message import bulk_content
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
from tests.ses_standin import BULK_EMAIL_PATH, BulkDelivery, SesStandIn, bulk_status_for, render_template

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
    request = {
        "FromEmailAddress": "news@example.test",
        "DefaultContent": {"Template": {"TemplateContent": dict(TEMPLATE), "TemplateData": "{}"}},
        "BulkEmailEntries": [bulk_entry("ok@x.org")],
    }
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
    ["{{missing}}", "{{#if x}}y{{/if}}", "a {{ b", "{{x.y}}", "{{{{x}}}}", "{{! comment }}", "{{> partial}}", "{{x y}}"],
)
def test_simple_substitution_refuses_what_it_cannot_render(template):
    from tests.ses_standin import _RenderingFailure

    with pytest.raises(_RenderingFailure):
        render_template(template, {"x": "1", "y": {"z": 1}}, escape_html=True)
