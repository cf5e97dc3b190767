"""Signs SNS envelopes the way Amazon SNS does, with a key and a self-signed
certificate made here, and serves that certificate through a fake fetcher."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from amazonsender.sns import CertificateUnavailable, string_to_sign

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"
OTHER_TOPIC_ARN = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
    "arn:aws:sns:us-east-1:123456789012:ses-events&Token=2336412f37fb687f5d51e6e2425"
)
SES_SAMPLES = Path(__file__).resolve().parent.parent / "data" / "ses"


def make_key_and_certificate(common_name="sns.amazonaws.com"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


def sns_timestamp(moment: datetime.datetime | None = None) -> str:
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ses_sample(name: str, **values) -> str:
    """A sample SES event from tests/data/ses with {{placeholders}} filled
    (address, ses_message_id, mailout_id, and feedback_id, new each time)."""
    text = (SES_SAMPLES / f"{name}.json").read_text()
    # Every bounce or complaint SES reports has its own feedbackId.
    values.setdefault("feedback_id", f"0100{uuid.uuid4().hex}-000000")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    return json.dumps(json.loads(text))


class SnsSigner:
    def __init__(self, key, certificate_pem: bytes):
        self.key = key
        self.certificate_pem = certificate_pem
        self.fetched: list[str] = []
        self.fail_fetch = False

    def envelope(
        self,
        message: str,
        *,
        kind: str = "Notification",
        topic: str = TOPIC_ARN,
        subject: str | None = None,
        version: str = "1",
        timestamp: str | None = None,
        message_id: str | None = None,
        cert_url: str = CERT_URL,
    ) -> dict:
        envelope = {
            "Type": kind,
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": timestamp or sns_timestamp(),
            "SignatureVersion": version,
            "SigningCertURL": cert_url,
        }
        if kind == "Notification":
            envelope["UnsubscribeURL"] = (
                "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + topic + ":0f1e"
            )
            if subject is not None:
                envelope["Subject"] = subject
        else:
            envelope["Token"] = "2336412f37fb687f5d51e6e2425"
            envelope["SubscribeURL"] = SUBSCRIBE_URL
        return self.sign(envelope)

    def sign(self, envelope: dict) -> dict:
        algorithm = hashes.SHA256() if envelope.get("SignatureVersion") == "2" else hashes.SHA1()
        signature = self.key.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope

    def fetch(self, url: str) -> bytes:
        """Stands in for the network: the certificate at CERT_URL, an XML
        answer at the subscription URL."""
        self.fetched.append(url)
        if self.fail_fetch:
            raise CertificateUnavailable(f"could not fetch {url}")
        if url == CERT_URL:
            return self.certificate_pem
        if url == SUBSCRIBE_URL:
            return b"<ConfirmSubscriptionResponse/>"
        raise CertificateUnavailable(f"{url} answered 404")
