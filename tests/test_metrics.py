"""GET /metrics in the Prometheus text format, and what gets counted."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.db import add_mailout, add_subscribers
from tests.support.settings import SHARED_SECRET
from tests.support.sns_signing import ses_sample

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def test_emails_ses_latency_and_webhook_outcomes_are_counted(client, conn):
    add_subscribers(conn, ["a@list.example", "b@list.example"])
    mailout_id = add_mailout(conn)
    before = scrape(client)

    client.post("/send-mailout?wait=1", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    client.post("/send-mailout?wait=1", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    client.post("/send-mailout", json={"mailout_id": str(mailout_id)})

    after = scrape(client)
    assert delta(before, after, "amazonsender_emails_total", result="sent") == 2
    assert delta(before, after, "amazonsender_webhook_requests_total", status="200") == 1
    assert delta(before, after, "amazonsender_webhook_requests_total", status="409") == 1
    assert delta(before, after, "amazonsender_webhook_requests_total", status="401") == 1
    assert delta(before, after, "amazonsender_ses_request_seconds_count", operation="SendEmail", outcome="ok") == 2


def test_sns_messages_are_counted_by_type_and_outcome(sns_client, sns_signer, conn):
    add_subscribers(conn, ["ann@list.example"])
    before = scrape(sns_client)
    envelope = sns_signer.envelope(ses_sample("complaint_event", address="ann@list.example", ses_message_id="m",
                                              mailout_id="x"))
    for _ in range(2):
        sns_client.post("/ses-events", json=envelope)
    forged = dict(envelope, Message="changed")
    sns_client.post("/ses-events", json=forged)
    after = scrape(sns_client)
    assert delta(before, after, "amazonsender_sns_messages_total", type="Complaint", outcome="processed") == 1
    assert delta(before, after, "amazonsender_sns_messages_total", type="Complaint", outcome="duplicate") == 1
    assert delta(before, after, "amazonsender_sns_messages_total", type="unverified", outcome="refused") == 1
