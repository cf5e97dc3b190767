"""Verification of Amazon SNS messages: signature, freshness, topic, and
where (and how often) the signing certificate is fetched. It follows AWS's
"Verifying the signatures of Amazon SNS messages"; no Flask in here: the
view turns these exceptions into status codes.

A valid signature only proves that *some* AWS account's topic sent the
message: anyone can subscribe our URL to a topic of their own and sign forged
bounces with AWS's key. So the topic must also be one of ours.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import deque
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
# A certificate URL that could not be fetched (or held no certificate) is not
# fetched again for this long, whoever names it. Shorter than the ~60 s over
# which SNS's default HTTP policy retries, so a transient failure of a real
# certificate still leaves SNS a retry that fetches again.
CERT_FAILURE_MEMORY_SECONDS = 30
CERT_FAILURE_ENTRIES = 64
# New certificate URLs fetched per process in any 60 s; SNS uses one URL per
# region for years, so this only ever limits forged messages.
#
# Residual risk: nothing before the fetch tells a forged message from a
# genuine one (MessageId, Timestamp, etc. are attacker-chosen until the
# signature is checked, and that needs the certificate), so forged messages
# naming fresh well-formed URLs on our topic's host can still spend this
# budget, and a genuinely new URL (a rotation) then gets 503 until a minute
# with budget left; SNS retries. A bounded rate is what issue 12 asks for. A
# URL that was fetched successfully before is fetched again outside the
# budget when its cache entry expires (see CertificateCache), so the daily
# refresh of the certificate in use never waits behind forged URLs.
CERT_NEW_URLS_PER_MINUTE = 10


class InvalidMessage(Exception):
    """Malformed, badly signed, stale, or with a certificate URL we refuse."""


class TopicNotAllowed(Exception):
    """Validly shaped, but from a topic that is not in SNS_TOPIC_ARNS."""


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched now; SNS should retry."""


# Region names as AWS spells them (us-east-1, us-gov-west-1, cn-north-1):
# ASCII only, so that no full-width or other Unicode digit gets through.
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
# The domain of SNS's endpoints in each partition we accept, and how that
# partition's region names begin (so that aws-cn cannot name us-east-1).
_PARTITIONS = {
    "aws": ("amazonaws.com", ""),
    "aws-us-gov": ("amazonaws.com", "us-gov-"),
    "aws-cn": ("amazonaws.com.cn", "cn-"),
}


def sns_host(topic_arn: object) -> str | None:
    """`sns.<region>.amazonaws.com[.cn]` for the region and partition of
    `arn:<partition>:sns:<region>:<account>:<name>`, or None.

    Binding the host to the topic closes what "any sns.<label>.amazonaws.com"
    leaves open: `sns.s3-us-west-2.amazonaws.com` is the legacy endpoint of an
    S3 bucket named `sns`, whose owner could serve a certificate of their own.
    """
    if not isinstance(topic_arn, str):
        return None
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or parts[1] not in _PARTITIONS:
        return None
    domain, prefix = _PARTITIONS[parts[1]]
    region = parts[3]
    if not _REGION.fullmatch(region) or not region.startswith(prefix):
        return None
    if parts[1] == "aws" and region.startswith(("cn-", "us-gov-")):
        return None
    return f"sns.{region}.{domain}"


def _split_sns_url(url: object, topic_arn: object):
    """The parts of an https URL whose host is exactly sns_host(topic_arn),
    or None. The whole netloc is compared, so any port (even :443), user-info,
    upper case, trailing dot, IDN or a longer host fails with one test."""
    host = sns_host(topic_arn)
    if host is None or not isinstance(url, str) or not url.isascii():
        return None
    # No fragment, not even an empty one, and nothing a parser might read twice.
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url) or "\\" in url or "#" in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "https" or parts.netloc != host or not parts.path.startswith("/"):
        return None
    return parts


# The only path SNS signs with, as in AWS's examples, e.g. in "HTTP/HTTPS
# notification JSON format": /SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem.
# AWS documents no length for the hex part; every URL it has used has 32
# lowercase hex digits (an MD5-sized name), so that is what we take. Nothing
# else: no dot segment, no percent-encoding, no second slash, no other case.
# requests normalises such URLs before fetching, so each would be another
# cache key for the same file; with one spelling per file, 32 aliases of the
# genuine certificate cannot take the cache's 32 places.
_CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]{32}\.pem", re.ASCII)


def is_certificate_url(url: object, topic_arn: object) -> bool:
    """True only for https://sns.<the topic's region>.amazonaws.com[.cn]/SimpleNotificationService-<32 hex>.pem
    with no query: where SNS keeps the certificates it signs with."""
    parts = _split_sns_url(url, topic_arn)
    return (
        parts is not None
        and "?" not in url
        and _CERT_PATH.fullmatch(parts.path) is not None
        and url == f"https://{parts.netloc}{parts.path}"
    )


def is_subscribe_url(url: object, topic_arn: object) -> bool:
    """True only for https://sns.<the topic's region>.amazonaws.com[.cn]/...:
    the URL a subscription confirmation asks us to GET."""
    return _split_sns_url(url, topic_arn) is not None


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
    fetch. SNS changes the URL when it rotates the certificate.

    A forged message may name any well-formed certificate URL on our topic's
    SNS host, so fetching is bounded: a URL that failed is not fetched again
    for CERT_FAILURE_MEMORY_SECONDS, at most CERT_NEW_URLS_PER_MINUTE URLs
    are fetched a minute (per process), and threads asking for the same URL
    wait for one fetch. A cached key is returned before any of these limits.

    Only a successful fetch enters the key table (CERT_CACHE_ENTRIES); a
    failure goes to its own table, so failing or forged URLs can never evict
    a good key. An expired key stays in the table: its URL is known good, and
    is fetched again without counting against the per-minute budget (at most
    once per CERT_FAILURE_MEMORY_SECONDS if it fails, and only URLs SNS
    served a certificate for ever get there).
    """

    def __init__(self, fetch: Callable[[str], bytes] = fetch_url, *, clock: Callable[[], float] = time.monotonic):
        self.fetch = fetch
        self.clock = clock
        self._keys: dict[str, tuple[float, rsa.RSAPublicKey]] = {}
        self._failures: dict[str, tuple[float, Exception]] = {}
        self._fetch_times: deque[float] = deque()
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        while True:
            with self._lock:
                now = self.clock()
                key = self._known(url, now)
                if key is not None:
                    return key
                pending = self._pending.get(url)
                if pending is None:
                    if url not in self._keys:  # known good URLs skip the budget
                        self._admit(now)
                    self._pending[url] = threading.Event()
                    break
            # Another thread is fetching this URL: its answer is ours too.
            pending.wait(CERT_FETCH_TIMEOUT_SECONDS + 1)
        try:
            key = self._load(url)
        except (CertificateUnavailable, InvalidMessage) as exc:
            self._remember(url, (self.clock(), exc), self._failures, CERT_FAILURE_ENTRIES)
            raise
        else:
            self._remember(url, (self.clock(), key), self._keys, CERT_CACHE_ENTRIES)
            return key
        finally:
            with self._lock:
                self._pending.pop(url).set()

    def _known(self, url: str, now: float) -> rsa.RSAPublicKey | None:
        """The cached key, None if the URL must be fetched, or the remembered
        failure raised again (a fresh exception of the same kind)."""
        cached = self._keys.get(url)
        if cached and now - cached[0] < CERT_CACHE_SECONDS:
            return cached[1]
        failed = self._failures.get(url)
        if failed and now - failed[0] < CERT_FAILURE_MEMORY_SECONDS:
            raise type(failed[1])(f"{failed[1]} (not fetched again for {CERT_FAILURE_MEMORY_SECONDS} s)")
        return None

    def _admit(self, now: float) -> None:
        """Count a fetch against the per-minute budget, or refuse it: SNS
        retries a 503, so a genuine new certificate gets its turn."""
        while self._fetch_times and now - self._fetch_times[0] >= 60:
            self._fetch_times.popleft()
        if len(self._fetch_times) >= CERT_NEW_URLS_PER_MINUTE:
            raise CertificateUnavailable(f"more than {CERT_NEW_URLS_PER_MINUTE} new certificate URLs this minute")
        self._fetch_times.append(now)

    def _load(self, url: str) -> rsa.RSAPublicKey:
        pem = self.fetch(url)
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError as exc:
            raise InvalidMessage("the signing certificate is not a PEM certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidMessage("the signing certificate does not hold an RSA key")
        return key

    def _remember(self, url: str, entry: tuple, table: dict, limit: int) -> None:
        with self._lock:
            table.pop(url, None)
            if len(table) >= limit:
                table.pop(next(iter(table)))  # the oldest: dicts keep insertion order
            table[url] = entry


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
        # Both URLs must be on the SNS endpoint of the topic's own region,
        # checked before any fetch (and before the topic, which is signed).
        topic = message["TopicArn"]
        cert_url = message.get("SigningCertURL")
        if not is_certificate_url(cert_url, topic):
            raise InvalidMessage("SigningCertURL is not https://sns.<TopicArn's region>.amazonaws.com/....pem")
        if kind != NOTIFICATION and not is_subscribe_url(message["SubscribeURL"], topic):
            raise InvalidMessage("SubscribeURL is not an https URL of sns.<TopicArn's region>.amazonaws.com")
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
