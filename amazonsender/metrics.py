"""Prometheus metrics, served at GET /metrics.

Under gunicorn every worker is a process of its own; gunicorn.conf.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, so
/metrics adds up all of them. Only counters and histograms are used: they
add up across processes without any special mode.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

EMAILS = Counter(
    "amazonsender_emails_total",
    "Recipients handled by the sender, by result (sent, failed, unknown, skipped).",
    ["result"],
)
SES_LATENCY = Histogram(
    "amazonsender_ses_request_seconds",
    "Time of each SES API call, by operation and outcome.",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SNS_MESSAGES = Counter(
    "amazonsender_sns_messages_total",
    "SNS messages received at /ses-events, by SES event type (or SNS type) and outcome.",
    ["type", "outcome"],
)
WEBHOOKS = Counter(
    "amazonsender_webhook_requests_total",
    "POST /send-mailout answers, by HTTP status.",
    ["status"],
)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, from all worker processes when
    PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
