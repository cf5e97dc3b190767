"""How often forged SNS messages can make us fetch a certificate (issue 12):
a failed fetch is remembered, new certificate URLs are fetched at a bounded
rate per process, concurrent requests for one URL share one fetch, and none
of this ever delays a certificate already cached. Fetches go to the fake
fetcher of tests/support/sns_signing.py; time is a clock the test moves."""

from __future__ import annotations

import json
import threading
import time

import pytest

from amazonsender.sns import (
    CERT_CACHE_SECONDS,
    CERT_FAILURE_MEMORY_SECONDS,
    CERT_NEW_URLS_PER_MINUTE,
    CertificateCache,
    CertificateUnavailable,
    InvalidMessage,
    MessageVerifier,
)
from tests.fakes import FakeClock
from tests.support.sns_signing import CERT_URL, TOPIC_ARN, ses_sample

FORGED_STREAM = 200


@pytest.fixture
def clock():
    return FakeClock(1000.0)


@pytest.fixture
def verifier(sns_signer, clock):
    return MessageVerifier((TOPIC_ARN,), CertificateCache(sns_signer.fetch, clock=clock))


def bounce():
    return ses_sample("bounce_permanent_notification", address="ann@list.example", ses_message_id="m-1")


def forged(sns_signer, n: int) -> dict:
    """A message signed with our test key that names a certificate URL on the
    right host which SNS does not serve (the fake fetcher answers 404)."""
    return sns_signer.envelope(bounce(), cert_url=forged_url(n))


def forged_url(n: int) -> str:
    """Well formed (the path form SNS uses) but not a file SNS serves."""
    return f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n:032x}.pem"


def test_a_failed_fetch_is_remembered_for_a_while(verifier, sns_signer, clock):
    sns_signer.fail_fetch = True
    for _ in range(FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched == [CERT_URL]

    clock.now += CERT_FAILURE_MEMORY_SECONDS - 1
    with pytest.raises(CertificateUnavailable, match="not fetched again"):
        verifier.verify(sns_signer.envelope(bounce()))
    assert len(sns_signer.fetched) == 1

    # Then it is tried again, and works once the certificate can be fetched.
    clock.now += 2
    sns_signer.fail_fetch = False
    verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched == [CERT_URL, CERT_URL]


def test_something_that_is_not_a_certificate_is_remembered_too(clock, sns_signer):
    fetched = []

    def fetch(url):
        fetched.append(url)
        return b"<html>surprise</html>"

    verifier = MessageVerifier((TOPIC_ARN,), CertificateCache(fetch, clock=clock))
    for _ in range(20):
        with pytest.raises(InvalidMessage, match="certificate"):
            verifier.verify(sns_signer.envelope(bounce()))
    assert fetched == [CERT_URL]


def test_many_distinct_certificate_urls_are_fetched_at_a_bounded_rate(verifier, sns_signer, clock):
    for n in range(FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(forged(sns_signer, n))
        clock.now += 0.1  # 200 messages in 20 s
    assert len(sns_signer.fetched) == CERT_NEW_URLS_PER_MINUTE

    # A minute after the first fetch the budget is back, and bounded again.
    clock.now = 1000.0 + 60 + 20
    for n in range(FORGED_STREAM, 2 * FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(forged(sns_signer, n))
    assert len(sns_signer.fetched) == 2 * CERT_NEW_URLS_PER_MINUTE


def test_the_limit_never_blocks_a_cached_certificate(verifier, sns_signer, clock):
    verifier.verify(sns_signer.envelope(bounce()))
    for n in range(FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(forged(sns_signer, n))
    for _ in range(5):
        verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched.count(CERT_URL) == 1


def test_a_new_genuine_certificate_waits_for_the_budget_then_verifies(verifier, sns_signer, clock):
    for n in range(CERT_NEW_URLS_PER_MINUTE):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(forged(sns_signer, n))
    with pytest.raises(CertificateUnavailable, match="this minute"):
        verifier.verify(sns_signer.envelope(bounce()))
    assert CERT_URL not in sns_signer.fetched  # refused before fetching: SNS retries a 503
    clock.now += 60
    verifier.verify(sns_signer.envelope(bounce()))


def test_concurrent_requests_for_one_url_share_one_fetch(sns_signer):
    started = threading.Event()
    release = threading.Event()
    fetched = []

    def slow_fetch(url):
        fetched.append(url)
        started.set()
        release.wait(5)
        return sns_signer.fetch(url)

    verifier = MessageVerifier((TOPIC_ARN,), CertificateCache(slow_fetch))
    envelopes = [sns_signer.envelope(bounce()) for _ in range(16)]
    errors = []

    def verify(envelope):
        try:
            verifier.verify(envelope)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=verify, args=(envelope,)) for envelope in envelopes]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    time.sleep(0.05)  # the other threads reach the wait
    release.set()
    for thread in threads:
        thread.join(10)
    assert errors == [] and fetched == [CERT_URL]


def test_concurrent_forged_streams_fetch_within_the_budget(sns_signer):
    verifier = MessageVerifier((TOPIC_ARN,), CertificateCache(sns_signer.fetch))
    envelopes = [forged(sns_signer, n % 40) for n in range(400)]
    outcomes = []

    def verify(chunk):
        for envelope in chunk:
            try:
                verifier.verify(envelope)
            except CertificateUnavailable:
                outcomes.append("unavailable")

    threads = [threading.Thread(target=verify, args=(envelopes[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == ["unavailable"] * 400
    assert len(sns_signer.fetched) == CERT_NEW_URLS_PER_MINUTE


# --- through /ses-events ------------------------------------------------------------------------


def post(client, envelope):
    return client.post("/ses-events", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})


def test_a_forged_stream_is_answered_without_a_500_and_fetches_within_the_budget(sns_client, sns_signer):
    statuses = {post(sns_client, forged(sns_signer, n)).status_code for n in range(50)}
    assert statuses == {503}  # SNS retries a 503; no 500, no stack trace
    assert len(sns_signer.fetched) == CERT_NEW_URLS_PER_MINUTE


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL.replace("sns.us-east-1", "sns.s3-us-west-2"),
        CERT_URL.replace("sns.us-east-1", "sns.eu-west-1"),
        CERT_URL.replace("sns.us-east-1", "sns.us-east-\uff11"),
        CERT_URL.replace("amazonaws.com", "amazonaws.com.evil.com"),
        # Aliases of the genuine file, which requests would normalise and fetch.
        CERT_URL.replace(".com/", ".com/./"),
        CERT_URL.replace(".com/", ".com/x/../"),
        CERT_URL.replace(".com/S", ".com/%53"),
    ],
)
def test_a_certificate_url_off_the_topics_host_is_a_400_without_a_fetch(sns_client, sns_signer, url):
    response = post(sns_client, sns_signer.envelope(bounce(), cert_url=url))
    assert response.status_code == 400
    assert sns_signer.fetched == []


def test_failing_urls_never_evict_a_cached_certificate(verifier, sns_signer, clock):
    """Only a successful fetch enters the cache of keys; forged URLs that fail
    are remembered apart, however many there are."""
    verifier.verify(sns_signer.envelope(bounce()))
    for minute in range(20):  # 200 failed fetches, far more than either table holds
        for n in range(CERT_NEW_URLS_PER_MINUTE):
            with pytest.raises(CertificateUnavailable):
                verifier.verify(forged(sns_signer, minute * 100 + n))
        clock.now += 61
    verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched.count(CERT_URL) == 1
    assert len(sns_signer.fetched) == 20 * CERT_NEW_URLS_PER_MINUTE  # the genuine one used one of minute 0's


def test_a_certificate_fetched_before_is_fetched_again_outside_the_budget(verifier, sns_signer, clock):
    """When the daily cache entry expires, forged URLs holding the per-minute
    budget do not stop the genuine certificate from being fetched again."""
    verifier.verify(sns_signer.envelope(bounce()))
    clock.now += CERT_CACHE_SECONDS + 1
    for n in range(FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(forged(sns_signer, n))
    verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched.count(CERT_URL) == 2
    assert len(sns_signer.fetched) == 2 + CERT_NEW_URLS_PER_MINUTE


def test_a_known_url_that_fails_again_is_still_fetched_at_most_every_failure_period(verifier, sns_signer, clock):
    verifier.verify(sns_signer.envelope(bounce()))
    clock.now += CERT_CACHE_SECONDS + 1
    sns_signer.fail_fetch = True
    for _ in range(FORGED_STREAM):
        with pytest.raises(CertificateUnavailable):
            verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched.count(CERT_URL) == 2
    clock.now += CERT_FAILURE_MEMORY_SECONDS
    sns_signer.fail_fetch = False
    verifier.verify(sns_signer.envelope(bounce()))
    assert sns_signer.fetched.count(CERT_URL) == 3
