"""The SES transport: the request it makes and how it reads SES's errors.

botocore's Stubber checks our request against the real SES v2 model and
feeds back responses and errors as SES would send them."""

from __future__ import annotations

import boto3
import pytest
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from botocore.exceptions import (
    BotoCoreError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from amazonsender.message import OutgoingEmail

from amazonsender.ses import (
    ACCOUNT,
    IN_DOUBT,
    RECIPIENT,
    THROTTLED,
    TRANSIENT,
    OutboxTransport,
    SendError,
    SesTransport,
)

EMAIL = OutgoingEmail(to_address="ann@list.example", raw=b"From: x\r\n\r\nhi", tags={"mailout_id": "m-1"})


@pytest.fixture
def stubbed(aws_env):
    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_send_uses_raw_content_tags_and_configuration_set(stubbed):
    client, stubber = stubbed
    stubber.add_response(
        "send_email",
        {"MessageId": "0100018c-abc"},
        {
            "FromEmailAddress": "News <news@example.test>",
            "Destination": {"ToAddresses": ["ann@list.example"]},
            "Content": {"Raw": {"Data": EMAIL.raw}},
            "EmailTags": [{"Name": "mailout_id", "Value": "m-1"}],
            "ConfigurationSetName": "newsletter",
        },
    )
    transport = SesTransport(client, from_address="News <news@example.test>", configuration_set="newsletter")
    assert transport.send(EMAIL) == "0100018c-abc"


def test_without_configuration_set_none_is_sent(stubbed):
    client, stubber = stubbed
    stubber.add_response(
        "send_email",
        {"MessageId": "m"},
        {
            "FromEmailAddress": "news@example.test",
            "Destination": {"ToAddresses": ["ann@list.example"]},
            "Content": {"Raw": {"Data": EMAIL.raw}},
            "EmailTags": [{"Name": "mailout_id", "Value": "m-1"}],
        },
    )
    assert SesTransport(client, from_address="news@example.test").send(EMAIL) == "m"


@pytest.mark.parametrize(
    "code, status, message, kind",
    [
        ("TooManyRequestsException", 429, "Too many requests", THROTTLED),
        ("LimitExceededException", 400, "Limit exceeded", THROTTLED),
        ("Throttling", 400, "Maximum sending rate exceeded.", THROTTLED),
        ("SomethingElse", 429, "slow down", THROTTLED),
        ("SendingPausedException", 400, "Sending is paused for this account", ACCOUNT),
        ("AccountSuspendedException", 400, "suspended", ACCOUNT),
        ("MailFromDomainNotVerifiedException", 400, "MAIL FROM not verified", ACCOUNT),
        ("AccessDeniedException", 403, "not authorized to perform ses:SendEmail", ACCOUNT),
        ("UnrecognizedClientException", 403, "The security token included in the request is invalid", ACCOUNT),
        ("ExpiredTokenException", 403, "expired", ACCOUNT),
        (
            "MessageRejected",
            400,
            "Email address is not verified. The following identities failed the check in region"
            " US-EAST-1: news@example.test",
            ACCOUNT,
        ),
        (
            "MessageRejected",
            400,
            "Email address is not verified. The following identities failed the check in region"
            " US-EAST-1: ann@list.example",
            RECIPIENT,
        ),
        ("BadRequestException", 400, "Missing final '@domain'", RECIPIENT),
        ("MessageRejected", 400, "Illegal address", RECIPIENT),
        ("NotFoundException", 404, "Configuration set <newsletter> does not exist.", ACCOUNT),
        ("ConfigurationSetDoesNotExist", 400, "Configuration set does not exist", ACCOUNT),
        ("InternalFailure", 500, "internal", TRANSIENT),
        ("ServiceUnavailable", 503, "unavailable", TRANSIENT),
    ],
)
def test_errors_are_classified(stubbed, code, status, message, kind):
    client, stubber = stubbed
    stubber.add_client_error("send_email", service_error_code=code, service_message=message, http_status_code=status)
    transport = SesTransport(client, from_address="News <news@example.test>")
    with pytest.raises(SendError) as caught:
        transport.send(EMAIL)
    assert caught.value.kind == kind
    assert code in str(caught.value)


def test_the_client_has_no_hard_coded_endpoint(aws_env, monkeypatch, settings):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", "http://127.0.0.1:4566")
    transport = SesTransport.from_settings(settings)
    assert transport.client.meta.endpoint_url == "http://127.0.0.1:4566"
    monkeypatch.delenv("AWS_ENDPOINT_URL_SESV2")
    transport = SesTransport.from_settings(settings)
    assert transport.client.meta.endpoint_url == "https://email.us-east-1.amazonaws.com"


def test_outbox_writes_one_eml_per_email(tmp_path):
    outbox = OutboxTransport(tmp_path / "outbox")
    first = outbox.send(EMAIL)
    second = outbox.send(EMAIL)
    assert first != second
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == sorted([f"{first}.eml", f"{second}.eml"])
    assert (tmp_path / "outbox" / f"{first}.eml").read_bytes() == EMAIL.raw


@pytest.mark.parametrize(
    "error, kind",
    [
        (lambda: EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"), TRANSIENT),
        (lambda: ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), TRANSIENT),
        (lambda: ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), IN_DOUBT),
        (lambda: ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com"), IN_DOUBT),
        (lambda: ResponseStreamingError(error="the answer broke off"), IN_DOUBT),
        (lambda: ResponseParserError("the answer could not be read"), IN_DOUBT),
        (lambda: BotoCoreError(), IN_DOUBT),
        (lambda: NoRegionError(), ACCOUNT),
    ],
)
def test_network_errors_before_and_after_the_request_left(aws_env, error, kind):
    """Not connecting is safe to retry; losing the answer is not (SES may
    have the email), so it is 'in doubt' and never sent again."""
    client = boto3.client("sesv2", region_name="us-east-1")

    def fail(**kwargs):
        raise error()

    client.meta.events.register("before-send.sesv2.SendEmail", fail)
    with pytest.raises(SendError) as caught:
        SesTransport(client, from_address="news@example.test").send(EMAIL)
    assert caught.value.kind == kind


def test_both_apis_give_ses_an_ascii_sender_and_reply_to(stubbed):
    """SES requires 7-bit addresses, a non-ASCII display name as RFC 2047
    encoded words: the exact request shapes, checked by botocore's Stubber
    against the sesv2 model."""
    from amazonsender.template import bulk_content

    client, stubber = stubbed
    sender_mailbox = "=?utf-8?b?Q2Fmw6kgR2F6ZXR0ZQ==?= <news@xn--bcher-kva.example>"
    reply_mailbox = "=?utf-8?b?UsOpZGFjdGlvbg==?= <r@example.test>"
    stubber.add_response(
        "send_email",
        {"MessageId": "m-1"},
        {
            "FromEmailAddress": sender_mailbox,
            "Destination": {"ToAddresses": ["ann@list.example"]},
            "Content": {"Raw": {"Data": EMAIL.raw}},
            "EmailTags": [{"Name": "mailout_id", "Value": "m-1"}],
        },
    )
    content, _ = bulk_content(
        mailout_id="m-1", subject="News }}", body_html="<p>Hi }}</p>", unsubscribe_base="https://n.test/u?token="
    )
    recipient = content.recipient(to_email="zoe@bücher.example", to_name="Zoë", token="tok.en")
    stubber.add_response(
        "send_bulk_email",
        {"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "m-2"}]},
        {
            "FromEmailAddress": sender_mailbox,
            "ReplyToAddresses": [reply_mailbox],
            "DefaultEmailTags": [{"Name": "mailout_id", "Value": "m-1"}],
            "DefaultContent": {
                "Template": {
                    "TemplateContent": {"Subject": "News }}", "Html": content.html, "Text": content.text},
                    "TemplateData": "{}",
                    "Headers": [{"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}],
                }
            },
            "BulkEmailEntries": [
                {
                    "Destination": {"ToAddresses": ["=?utf-8?b?Wm/Dqw==?= <zoe@xn--bcher-kva.example>"]},
                    "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": '{"t":"tok.en"}'}},
                    "ReplacementHeaders": [{"Name": "List-Unsubscribe", "Value": "<https://n.test/u?token=tok.en>"}],
                }
            ],
        },
    )
    transport = SesTransport(
        client, from_address="Café Gazette <news@bücher.example>", reply_to="Rédaction <r@example.test>"
    )
    assert transport.send(EMAIL) == "m-1"
    [result] = transport.send_bulk(content, [recipient])
    assert result.message_id == "m-2"
    assert "https://n.test/u?token={{t}}" in content.html and "{{{" not in content.html + content.text
