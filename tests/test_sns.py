"""SNS message verification, without Flask: signatures made here with a key
and certificate generated for the test, the certificate served by a fake
fetcher that records every URL it was asked for."""

from __future__ import annotations

import base64
import datetime

import pytest

from amazonsender.sns import (
    CertificateCache,
    CertificateUnavailable,
    InvalidMessage,
    MessageVerifier,
    TopicNotAllowed,
    is_certificate_url,
    is_subscribe_url,
    sns_host,
    string_to_sign,
)
from tests.support.sns_signing import (
    CERT_URL,
    OTHER_TOPIC_ARN,
    TOPIC_ARN,
    SnsSigner,
    make_key_and_certificate,
    ses_sample,
    sns_timestamp,
)

SECOND_TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events-eu"


@pytest.fixture
def verifier(sns_signer):
    return MessageVerifier((TOPIC_ARN, SECOND_TOPIC), CertificateCache(sns_signer.fetch))


def bounce_message():
    return ses_sample("bounce_permanent_notification", address="ann@list.example", ses_message_id="m-1")


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
@pytest.mark.parametrize("sample", ["bounce_permanent_notification", "complaint_event", "delivery_event"])
def test_real_shaped_notifications_verify(verifier, sns_signer, version, subject, sample):
    message = ses_sample(sample, address="ann@list.example", ses_message_id="m-1", mailout_id="x")
    envelope = sns_signer.envelope(message, version=version, subject=subject)
    verifier.verify(envelope)
    assert sns_signer.fetched == [CERT_URL]


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_confirmations_verify(verifier, sns_signer, kind, version):
    verifier.verify(sns_signer.envelope("You have chosen to subscribe...", kind=kind, version=version))


def test_the_string_to_sign_follows_aws_order():
    envelope = {
        "Type": "Notification",
        "MessageId": "id",
        "TopicArn": "arn",
        "Subject": "subj",
        "Message": "msg",
        "Timestamp": "ts",
        "UnsubscribeURL": "not signed",
    }
    assert string_to_sign(envelope) == (
        b"Message\nmsg\nMessageId\nid\nSubject\nsubj\nTimestamp\nts\nTopicArn\narn\nType\nNotification\n"
    )
    del envelope["Subject"]
    assert b"Subject" not in string_to_sign(envelope)


def flip_last_character(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


@pytest.mark.parametrize(
    "field, change",
    [
        ("Message", lambda v: v.replace("ann@list.example", "bob@list.example")),
        ("MessageId", lambda v: flip_last_character(v)),
        ("Subject", lambda v: v + "!"),
        ("Timestamp", lambda v: sns_timestamp()[:-4] + ("999Z" if not v.endswith("999Z") else "998Z")),
        ("TopicArn", lambda v: SECOND_TOPIC),
        ("Type", lambda v: "UnsubscribeConfirmation"),
        ("Signature", lambda v: base64.b64encode(bytes([base64.b64decode(v)[0] ^ 1]) + base64.b64decode(v)[1:]).decode()),
        ("SignatureVersion", lambda v: "2" if v == "1" else "1"),
    ],
)
@pytest.mark.parametrize("version", ["1", "2"])
def test_every_tampered_field_is_refused(verifier, sns_signer, field, change, version):
    envelope = sns_signer.envelope(bounce_message(), version=version, subject="Bounce")
    envelope[field] = change(envelope[field])
    with pytest.raises(InvalidMessage):
        verifier.verify(envelope)


def test_a_subject_added_after_signing_is_refused(verifier, sns_signer):
    envelope = sns_signer.envelope(bounce_message())
    envelope["Subject"] = "Injected"
    with pytest.raises(InvalidMessage):
        verifier.verify(envelope)


def test_a_removed_subject_is_refused(verifier, sns_signer):
    envelope = sns_signer.envelope(bounce_message(), subject="Signed subject")
    del envelope["Subject"]
    with pytest.raises(InvalidMessage):
        verifier.verify(envelope)


def test_a_signature_from_another_key_is_refused(verifier, sns_signer):
    other_key, _ = make_key_and_certificate()
    forger = SnsSigner(other_key, b"")
    envelope = forger.envelope(bounce_message())  # points at the real certificate URL
    with pytest.raises(InvalidMessage, match="signature"):
        verifier.verify(envelope)


# The path SNS signs with: /SimpleNotificationService-<32 lowercase hex>.pem.
PEM = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
GENUINE_NAME = CERT_URL.rsplit("/", 1)[1]  # SimpleNotificationService-<hex>.pem
HOST = "https://sns.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    "url",
    [
        # Aliases: requests (urllib3) normalises these and fetches the genuine
        # file, so each would take its own cache slot (the review's finding).
        f"{HOST}/./{GENUINE_NAME}",
        f"{HOST}/x/../{GENUINE_NAME}",
        f"{HOST}/../{GENUINE_NAME}",
        f"{HOST}/%2E/{GENUINE_NAME}",
        f"{HOST}/{GENUINE_NAME.replace('S', '%53', 1)}",
        f"{HOST}/{GENUINE_NAME.replace('.pem', '%2Epem')}",
        f"{HOST}/{GENUINE_NAME.replace('.pem', '.%70em')}",
        f"{HOST}//{GENUINE_NAME}",
        f"{HOST}/{GENUINE_NAME}/",
        f"{HOST}/{GENUINE_NAME}/.",
        f"{HOST}/{GENUINE_NAME};x",
        f"{HOST}/{GENUINE_NAME.upper().replace('.PEM', '.pem')}",
        f"{HOST}/{GENUINE_NAME.replace('.pem', '.PEM')}",
        f"{HOST}/{GENUINE_NAME.replace('SimpleNotificationService', 'simplenotificationservice')}",
        # Anything but the exact form AWS uses.
        f"{HOST}/SimpleNotificationService-0123456789abcdef0123456789abcde.pem",  # 31 hex
        f"{HOST}/SimpleNotificationService-0123456789abcdef0123456789abcdef0.pem",  # 33 hex
        f"{HOST}/SimpleNotificationService-0123456789abcdef0123456789abcdeg.pem",
        f"{HOST}/SimpleNotificationService-0123456789ABCDEF0123456789ABCDEF.pem",
        f"{HOST}/SimpleNotificationService-.pem",
        f"{HOST}/SimpleNotificationService0123456789abcdef0123456789abcdef.pem",
        f"{HOST}/x{PEM}",
        f"{HOST}/a/b{PEM}",
        f"{HOST}/SimpleNotificationService-abc.pem",
        f"{HOST}/forged-1.pem",
        f"{HOST}/x.pem",
        f"{HOST}{PEM}\n",
    ],
)
def test_only_the_exact_path_form_sns_uses_is_a_certificate_url(verifier, sns_signer, url):
    assert not is_certificate_url(url, TOPIC_ARN)
    with pytest.raises(InvalidMessage, match="SigningCertURL"):
        verifier.verify(sns_signer.envelope(bounce_message(), cert_url=url))
    assert sns_signer.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.org/SimpleNotificationService-x.pem",
        "https://sns.x.amazonaws.com.evil.org/cert.pem",
        "https://evil.org/sns.us-east-1.amazonaws.com/cert.pem",
        "https://evil.org/?sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.org/cert.pem",
        "https://evil.org@sns.us-east-1.amazonaws.com/cert.pem",
        "https://user:pass@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:443/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://sns.us-east-1.amazonaws.com:/cert.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.org/cert.pem",
        "https://sns.us-east-1.amazonaws.com%2F@evil.org/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "https://sns..amazonaws.com/cert.pem",
        "https://sns.us-east-1.evil.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/sns.us-east-1/cert.pem",
        "https://sqs.us-east-1.amazonaws.com/cert.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://sns.us-east-1.amazonaws.com/cert.pem.txt",
        "https://sns.us-east-1.amazonaws.com/",
        "https://sns.us-east-1.amazonaws.com./cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem\n",
        "//sns.us-east-1.amazonaws.com/cert.pem",
        "ftp://sns.us-east-1.amazonaws.com/cert.pem",
        "file:///etc/ssl/cert.pem",
        "https://[::1]/cert.pem",
        "https://127.0.0.1/cert.pem",
        # Issue 12: the host is exactly sns.<the TopicArn's region>.amazonaws.com.
        "https://sns.s3-us-west-2.amazonaws.com/x.pem",  # the legacy endpoint of an S3 bucket named `sns`
        "https://sns.s3.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",  # another region
        "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-x.pem",  # another partition
        "https://sns.us-east-\uff11.amazonaws.com/x.pem",  # a full-width digit one
        "https://sns.us-east-\u0661.amazonaws.com/x.pem",  # an Arabic-Indic digit one
        "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        "https://Sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.US-EAST-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com./x.pem",
        "https://sns.us-east-1.amazonaws.com:443/x.pem",
        "https://sns.us-east-1.amazonaws.com:0443/x.pem",
        "https://@sns.us-east-1.amazonaws.com/x.pem",
        "https://u@sns.us-east-1.amazonaws.com/x.pem",
        "https://xn--sns-ub1a.us-east-1.amazonaws.com/x.pem",
        "https://\u0455ns.us-east-1.amazonaws.com/x.pem",  # Cyrillic dze
        "https://sns.us-east-1.amazonaws.com\u3002/x.pem",  # ideographic full stop
        "https://sns.us\u2010east-1.amazonaws.com/x.pem",
        "https://sns-fips.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.api.aws/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem?a=b",
        "https://sns.us-east-1.amazonaws.com/x?.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        "https://sns.us-east-1.amazonaws.com/x.pem#",
        "https://sns.us-east-1.amazonaws.com/x.pem?",
        "https://sns.us-east-1.amazonaws.com/x.pem\x7f",
        "https://sns.us-east-1.amazonaws.com/\u00e9.pem",
        "https://sns.us-east-1.amazonaws.com",
        "",
        None,
        42,
    ],
)
def test_bad_certificate_urls_are_refused_without_any_request(verifier, sns_signer, url):
    envelope = sns_signer.envelope(bounce_message(), cert_url=url)
    with pytest.raises(InvalidMessage, match="SigningCertURL"):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


@pytest.mark.parametrize(
    "topic, url",
    [
        (TOPIC_ARN, CERT_URL),
        (TOPIC_ARN, f"https://sns.us-east-1.amazonaws.com{PEM}"),
        (SECOND_TOPIC, f"https://sns.eu-west-1.amazonaws.com{PEM}"),
        ("arn:aws:sns:ap-southeast-5:123456789012:t", f"https://sns.ap-southeast-5.amazonaws.com{PEM}"),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t", f"https://sns.cn-north-1.amazonaws.com.cn{PEM}"),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", f"https://sns.us-gov-west-1.amazonaws.com{PEM}"),
    ],
)
def test_good_certificate_urls(topic, url):
    assert is_certificate_url(url, topic)
    assert is_subscribe_url(url.rsplit("/", 1)[0] + "/?Action=ConfirmSubscription&Token=t", topic)


@pytest.mark.parametrize(
    "topic, url",
    [
        (SECOND_TOPIC, f"https://sns.us-east-1.amazonaws.com{PEM}"),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t", f"https://sns.cn-north-1.amazonaws.com{PEM}"),
        ("arn:aws:sns:cn-north-1:123456789012:t", f"https://sns.cn-north-1.amazonaws.com.cn{PEM}"),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", f"https://sns.us-gov-west-1.amazonaws.com.cn{PEM}"),
    ],
)
def test_a_certificate_url_of_another_region_or_partition_than_the_topic_is_refused(topic, url):
    assert not is_certificate_url(url, topic)


@pytest.mark.parametrize(
    "topic, host",
    [
        (TOPIC_ARN, "sns.us-east-1.amazonaws.com"),
        ("arn:aws:sns:il-central-1:123456789012:t", "sns.il-central-1.amazonaws.com"),
        ("arn:aws-cn:sns:cn-northwest-1:123456789012:t", "sns.cn-northwest-1.amazonaws.com.cn"),
        ("arn:aws-us-gov:sns:us-gov-east-1:123456789012:t", "sns.us-gov-east-1.amazonaws.com"),
        ("arn:aws:sns:us-east-\uff11:123456789012:t", None),
        ("arn:aws:sns:us-east-\u0661:123456789012:t", None),
        ("arn:aws:sns:US-EAST-1:123456789012:t", None),
        ("arn:aws:sns:s3-us-west-2:123456789012:t", None),
        ("arn:aws:sns:us-east-1.evil.com:123456789012:t", None),
        ("arn:aws:sns:us-east-1\n:123456789012:t", None),
        ("arn:aws:sns:useast1:123456789012:t", None),
        ("arn:aws:sns::123456789012:t", None),
        ("arn:aws:sns:cn-north-1:123456789012:t", None),  # a China region outside aws-cn
        ("arn:aws:sns:us-gov-west-1:123456789012:t", None),
        ("arn:aws-cn:sns:us-east-1:123456789012:t", None),
        ("arn:aws-us-gov:sns:us-east-1:123456789012:t", None),
        ("arn:aws-iso:sns:us-iso-east-1:123456789012:t", None),
        ("arn:aws:sqs:us-east-1:123456789012:t", None),
        ("arn:aws:sns:us-east-1:123456789012", None),
        ("arn:aws:sns:us-east-1:123456789012:t:extra", None),
        ("", None),
        (None, None),
    ],
)
def test_the_sns_host_of_a_topic(topic, host):
    assert sns_host(topic) == host


def test_a_certificate_url_for_another_region_than_the_topic_is_refused_before_any_fetch(verifier, sns_signer):
    # Genuinely signed, certificate genuinely at SNS, but the topic lives in eu-west-1.
    envelope = sns_signer.envelope(bounce_message(), topic=SECOND_TOPIC)
    with pytest.raises(InvalidMessage, match="SigningCertURL"):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://evil.org/?Action=ConfirmSubscription",
        "https://sns.s3-us-west-2.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-\uff11.amazonaws.com/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com:443/?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com./?Action=ConfirmSubscription",
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription#x",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    ],
)
@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_subscribe_url_off_the_topics_sns_host_is_refused(verifier, sns_signer, subscribe_url, kind):
    envelope = sns_signer.envelope("confirm", kind=kind)
    envelope["SubscribeURL"] = subscribe_url
    envelope = sns_signer.sign(envelope)
    with pytest.raises(InvalidMessage, match="SubscribeURL"):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


def test_a_subscribe_url_elsewhere_is_refused(verifier, sns_signer):
    envelope = sns_signer.envelope("confirm", kind="SubscriptionConfirmation")
    envelope["SubscribeURL"] = "https://evil.org/?Action=ConfirmSubscription"
    envelope = sns_signer.sign(envelope)
    with pytest.raises(InvalidMessage, match="SubscribeURL"):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


def test_an_unknown_topic_is_refused_without_a_fetch(verifier, sns_signer):
    envelope = sns_signer.envelope(bounce_message(), topic=OTHER_TOPIC_ARN)
    with pytest.raises(TopicNotAllowed):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


def test_no_configured_topic_trusts_nothing(sns_signer):
    verifier = MessageVerifier((), CertificateCache(sns_signer.fetch))
    with pytest.raises(TopicNotAllowed):
        verifier.verify(sns_signer.envelope(bounce_message()))


@pytest.mark.parametrize(
    "age",
    [datetime.timedelta(hours=1, minutes=1), datetime.timedelta(days=30), -datetime.timedelta(hours=1)],
)
def test_stale_or_future_messages_are_refused_without_a_fetch(verifier, sns_signer, age):
    moment = datetime.datetime.now(datetime.timezone.utc) - age
    envelope = sns_signer.envelope(bounce_message(), timestamp=sns_timestamp(moment))
    with pytest.raises(InvalidMessage):
        verifier.verify(envelope)
    assert sns_signer.fetched == []


def test_a_message_just_under_an_hour_old_is_accepted(verifier, sns_signer):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=59)
    verifier.verify(sns_signer.envelope(bounce_message(), timestamp=sns_timestamp(moment)))


@pytest.mark.parametrize(
    "change",
    [
        {"SignatureVersion": "3"},
        {"SignatureVersion": None},
        {"SignatureVersion": 1},
        {"Signature": "not base64!!"},
        {"Signature": ""},
        {"Signature": None},
        {"Type": "Surprise"},
        {"Type": None},
        {"Message": None},
        {"Message": {"nested": "object"}},
        {"MessageId": None},
        {"Timestamp": "yesterday"},
        {"Timestamp": None},
        {"TopicArn": None},
    ],
)
def test_malformed_envelopes_are_invalid(verifier, sns_signer, change):
    envelope = sns_signer.envelope(bounce_message())
    for key, value in change.items():
        if value is None:
            envelope.pop(key, None)
        else:
            envelope[key] = value
    with pytest.raises(InvalidMessage):
        verifier.verify(envelope)


@pytest.mark.parametrize("body", [[], "text", 42, None])
def test_non_objects_are_invalid(verifier, body):
    with pytest.raises(InvalidMessage):
        verifier.verify(body)


def test_certificates_are_cached_by_url(verifier, sns_signer):
    for _ in range(5):
        verifier.verify(sns_signer.envelope(bounce_message()))
    assert sns_signer.fetched == [CERT_URL]


def test_an_unreachable_certificate_is_reported_as_unavailable(verifier, sns_signer):
    sns_signer.fail_fetch = True
    with pytest.raises(CertificateUnavailable):
        verifier.verify(sns_signer.envelope(bounce_message()))


def test_something_that_is_not_a_certificate_is_invalid(sns_signer):
    verifier = MessageVerifier((TOPIC_ARN,), CertificateCache(lambda url: b"<html>surprise</html>"))
    with pytest.raises(InvalidMessage, match="certificate"):
        verifier.verify(sns_signer.envelope(bounce_message()))


def test_fetch_url_refuses_redirects_and_large_bodies(monkeypatch):
    from amazonsender import sns

    class FakeResponse:
        def __init__(self, status, chunks):
            self.status_code = status
            self.chunks = chunks

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def iter_content(self, size):
            return iter(self.chunks)

    calls = []

    def fake_get(url, **kwargs):
        calls.append(kwargs)
        return responses.pop(0)

    monkeypatch.setattr(sns.requests, "get", fake_get)
    responses = [FakeResponse(301, []), FakeResponse(200, [b"x" * 40_000, b"x" * 40_000]), FakeResponse(200, [b"ok"])]
    with pytest.raises(CertificateUnavailable, match="301"):
        sns.fetch_url(CERT_URL)
    with pytest.raises(CertificateUnavailable, match="larger"):
        sns.fetch_url(CERT_URL)
    assert sns.fetch_url(CERT_URL) == b"ok"
    assert all(call["allow_redirects"] is False and call["timeout"] <= 10 for call in calls)
