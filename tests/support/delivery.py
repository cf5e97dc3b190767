"""Helpers for tests that send through the SES stand-in: a list to send to, what the stand-in received, what the ledger says, and waiting for it."""

from __future__ import annotations

import time
from collections import Counter
from email.utils import getaddresses

from tests.support.db import add_mailout, add_subscribers
from tests.support.ses_standin import SesStandIn

def seed(conn, n: int, prefix: str = "reader") -> tuple:
    emails = [f"{prefix}{i:03d}@example.org" for i in range(n)]
    add_subscribers(conn, emails)
    add_subscribers(conn, [f"{prefix}-gone@example.org"], status="unsubscribed")
    return add_mailout(conn), emails


def received(ses: SesStandIn, mailout_id) -> Counter:
    """How many times each address was accepted by the stand-in for this
    mailout, checked in the request's Destination and in the email's own To."""
    counts = Counter()
    for record in ses.sent:
        if record.tags.get("mailout_id") != str(mailout_id):
            continue
        [destination] = record.to_addresses
        [(_, header_to)] = getaddresses([record.message["To"]])
        assert header_to.lower() == destination.lower(), (header_to, destination)
        counts[destination] += 1
    return counts


def rows(conn, mailout_id) -> dict[str, dict]:
    result = conn.execute(
        "SELECT email, status, ses_message_id, error_message FROM send_logs WHERE mailout_id = %s", (mailout_id,)
    ).fetchall()
    return {row["email"]: row for row in result}


def statuses(conn, mailout_id) -> Counter:
    return Counter(row["status"] for row in rows(conn, mailout_id).values())


def assert_each_received_once(ses: SesStandIn, conn, mailout_id, emails) -> None:
    """Every address accepted exactly once, nobody else, and the ledger
    says 'sent' with the message id the stand-in gave."""
    counts = received(ses, mailout_id)
    assert sorted(counts.elements()) == sorted(emails)
    ledger = rows(conn, mailout_id)
    assert {email: row["status"] for email, row in ledger.items()} == {email: "sent" for email in emails}
    message_ids = {r.to_addresses[0]: r.message_id for r in ses.sent if r.tags.get("mailout_id") == str(mailout_id)}
    assert {email: row["ses_message_id"] for email, row in ledger.items()} == message_ids


def wait_until(condition, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(interval)


def unanswered(ses: SesStandIn) -> list:
    """The send requests SES has received and not answered yet: the calls in flight."""
    return [r for r in ses.send_requests if r.answered_at is None]


def at_once(requests: list) -> list[int]:
    """For each request (in order), how many of `requests` were at SES
    when it arrived, itself included: received, not yet answered."""
    return [
        sum(1 for other in requests if other.received_at <= r.received_at < (other.answered_at or float("inf")))
        for r in requests
    ]
