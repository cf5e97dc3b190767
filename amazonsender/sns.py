"""Verification of Amazon SNS messages, as AWS describes it in
"Verifying the signatures of Amazon SNS messages". No Flask in here: the
view turns these exceptions into status codes.

A valid signature only proves that *some* AWS account's topic sent the
message: anyone can subscribe our URL to a topic of their own and sign forged
bounces with AWS's key. So the topic must also be one of ours.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields that are signed, in byte order, per message type.
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    NOTIFICATION: NOTIFICATION_FIELDS,
    SUBSCRIPTION_CONFIRMATION: CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: CONFIRMATION_FIELDS,
}
OPTIONAL_FIELDS = {"Subject"}
HASHES = {"1": hashes.SHA1(), "2": hashes.SHA256()}
PKCS1 = padding.PKCS1v15()

MAX_MESSAGE_AGE_SECONDS = 3600
MAX_CLOCK_SKEW_SECONDS = 300
CERT_FETCH_TIMEOUT_SECONDS = 5
CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SECONDS = 24 * 3600
CERT_CACHE_ENTRIES = 32


class InvalidMessage(Exception):
    """Malformed, badly signed, stale, or with a certificate URL we refuse."""


class TopicNotAllowed(Exception):
    """Validly shaped, but from a topic that is not in SNS_TOPIC_ARNS."""


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched now; SNS should retry."""


# URLs that passed is_aws_sns_url, so that the certificate URL every message
# names is checked once, not on every message. Only passes are kept, and at
# most this many (then it starts over).
_SNS_URLS_SEEN: set[tuple[str, str | None]] = set()
SNS_URLS_SEEN_MAX = 64


def is_aws_sns_url(url: str, *, path_suffix: str | None = None) -> bool:
    """True only for https://sns.<region>.amazonaws.com[.cn]/... with no
    user-info, no port, and (when given) a path ending in `path_suffix`.

    The host is compared as a whole, after the URL is split, so
    `sns.x.amazonaws.com.evil.org`, `evil.org/sns.x.amazonaws.com` and
    `sns.x.amazonaws.com@evil.org` all fail.
    """
    if not isinstance(url, str):
        return False
    if (url, path_suffix) in _SNS_URLS_SEEN:
        return True
    if not _check_sns_url(url, path_suffix):
        return False
    if len(_SNS_URLS_SEEN) >= SNS_URLS_SEEN_MAX:
        _SNS_URLS_SEEN.clear()
    _SNS_URLS_SEEN.add((url, path_suffix))
    return True


def _check_sns_url(url: str, path_suffix: str | None) -> bool:
    if any(ch.isspace() or ord(ch) < 32 for ch in url) or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or port is not None or "@" in parts.netloc:
        return False
    labels = parts.netloc.split(".")
    if parts.netloc != parts.netloc.lower():
        return False
    if labels[-2:] == ["amazonaws", "com"]:
        region = labels[1:-2]
    elif labels[-3:] == ["amazonaws", "com", "cn"]:
        region = labels[1:-3]
    else:
        return False
    if labels[0] != "sns" or len(region) != 1 or not _is_region(region[0]):
        return False
    return path_suffix is None or parts.path.endswith(path_suffix)


def _is_region(label: str) -> bool:
    return 3 <= len(label) <= 32 and all(ch.isalnum() or ch == "-" for ch in label) and label[0].isalpha()


def fetch_url(url: str, *, max_bytes: int = CERT_MAX_BYTES, timeout: float = CERT_FETCH_TIMEOUT_SECONDS) -> bytes:
    """GET a small document, refusing redirects and anything over max_bytes."""
    try:
        with requests.get(url, timeout=timeout, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise CertificateUnavailable(f"{url} answered {response.status_code}")
            body = b""
            for chunk in response.iter_content(8192):
                body += chunk
                if len(body) > max_bytes:
                    raise CertificateUnavailable(f"{url} is larger than {max_bytes} bytes")
            return body
    except requests.RequestException as exc:
        raise CertificateUnavailable(f"could not fetch {url}: {type(exc).__name__}") from exc


class CertificateCache:
    """Public keys by certificate URL, so that a burst of events costs one
    fetch. SNS changes the URL when it rotates the certificate."""

    def __init__(self, fetch: Callable[[str], bytes] = fetch_url, *, clock: Callable[[], float] = time.monotonic):
        self.fetch = fetch
        self.clock = clock
        self._keys: dict[str, tuple[float, rsa.RSAPublicKey]] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        now = self.clock()
        with self._lock:
            cached = self._keys.get(url)
            if cached and now - cached[0] < CERT_CACHE_SECONDS:
                return cached[1]
        pem = self.fetch(url)
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError as exc:
            raise InvalidMessage("the signing certificate is not a PEM certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidMessage("the signing certificate does not hold an RSA key")
        with self._lock:
            if len(self._keys) >= CERT_CACHE_ENTRIES:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = (now, key)
        return key


class MessageVerifier:
    def __init__(
        self,
        topics: tuple[str, ...] | list[str],
        certificates: CertificateCache | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.topics = frozenset(topics)
        self.certificates = certificates or CertificateCache()
        self.clock = clock

    def verify(self, message: dict) -> None:
        """Raise InvalidMessage, TopicNotAllowed or CertificateUnavailable
        unless the message is well formed, fresh, from one of our topics and
        signed by SNS. Checks that need no network come first, so a forged
        message never causes a fetch."""
        if not isinstance(message, dict):
            raise InvalidMessage("the body is not a JSON object")
        kind = message.get("Type")
        if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
            raise InvalidMessage(f"unknown message Type {kind!r}")
        for name in SIGNED_FIELDS[kind]:
            if name in OPTIONAL_FIELDS and message.get(name) is None:
                continue
            if not isinstance(message.get(name), str):
                raise InvalidMessage(f"{name} is missing or not a string")
        version = message.get("SignatureVersion")
        if not isinstance(version, str) or version not in HASHES:
            raise InvalidMessage(f"unsupported SignatureVersion {version!r}")
        cert_url = message.get("SigningCertURL")
        if not is_aws_sns_url(cert_url, path_suffix=".pem"):
            raise InvalidMessage("SigningCertURL is not an https URL of sns.<region>.amazonaws.com ending in .pem")
        if kind != NOTIFICATION and not is_aws_sns_url(message["SubscribeURL"]):
            raise InvalidMessage("SubscribeURL is not an https URL of sns.<region>.amazonaws.com")
        try:
            signature = base64.b64decode(message.get("Signature") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidMessage("Signature is not base64") from None
        if not signature:
            raise InvalidMessage("Signature is missing")
        if message["TopicArn"] not in self.topics:
            raise TopicNotAllowed(message["TopicArn"])
        self.check_timestamp(message["Timestamp"])

        key = self.certificates.public_key(cert_url)
        try:
            key.verify(signature, string_to_sign(message), PKCS1, HASHES[version])
        except InvalidSignature:
            raise InvalidMessage("the signature does not match the message") from None

    def check_timestamp(self, value: str) -> None:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidMessage(f"Timestamp is not an ISO 8601 time: {value[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        age = self.clock() - moment.timestamp()
        if age > MAX_MESSAGE_AGE_SECONDS:
            raise InvalidMessage("the message is more than an hour old (a replay?)")
        if age < -MAX_CLOCK_SKEW_SECONDS:
            raise InvalidMessage("the message's Timestamp is in the future")


def string_to_sign(message: dict) -> bytes:
    """`Name\\nValue\\n` for each signed field present, in byte order."""
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        if message.get(name) is not None:
            lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode("utf-8")
