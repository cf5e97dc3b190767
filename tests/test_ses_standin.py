"""The SES stand-in speaks the SES v2 API well enough for a real boto3 client."""

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from amazonsender.ses import RECIPIENT, THROTTLED, TRANSIENT, SendError, SesTransport, classify_client_error
from tests.ses_standin import SesStandIn

RAW = b"From: news@example.test\r\nTo: ann@x.org\r\nSubject: Hi\r\n\r\nHello Ann\r\n"


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        yield standin


def make_client(ses):
    return boto3.client(
        "sesv2",
        endpoint_url=ses.url,
        region_name="us-east-1",
        aws_access_key_id="fake",
        aws_secret_access_key="fake",
        # One attempt: botocore would retry a throttled call by itself.
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
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

    client = boto3.client(
        "sesv2",
        endpoint_url=ses.url,
        region_name="us-east-1",
        aws_access_key_id="fake",
        aws_secret_access_key="fake",
        config=Config(read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}),
    )
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
