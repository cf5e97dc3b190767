"""Issue 14, item 2: the webhook answers right after the claim, and the run
queues the recipients afterwards in pages that commit their rows and a
cursor together: resumable after a death between pages, nobody queued twice,
nobody who was active at the claim missing, an unsubscribe before one's page
respected."""

from __future__ import annotations

from collections import Counter

import pytest

from amazonsender import sender, store
from amazonsender.sender import queueing
from amazonsender.web import webhook
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import emails
from tests.support.settings import SHARED_SECRET, with_settings

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


class Died(BaseException):
    """The process going away: no `except Exception` catches it, so nothing
    the run would record on an error is recorded."""


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(queueing, "PAGE_SIZE", 10)
    return 10


def by_id(conn) -> list[dict]:
    """The subscribers in the order the pages take them."""
    return conn.execute("SELECT id, email FROM subscribers ORDER BY id").fetchall()


def make_heartbeat_stale(conn, mailout_id) -> None:
    conn.execute("UPDATE mailouts SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (mailout_id,))


def test_the_webhook_answers_before_any_recipient_is_queued(app, client, conn, pool, settings, monkeypatch):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    started = []
    # The hook: the background run is held back until the answer has been read.
    monkeypatch.setattr(webhook, "start_in_background", lambda app, pool, transport, settings, claim, *rest: started.append(claim))

    answer = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)

    assert answer.status_code == 202
    assert answer.json["status"] == "sending" and answer.json["recipients"] == 25
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["queuing"] and ledger(conn, mailout_id) == {}
    status = client.get(f"/mailouts/{mailout_id}", headers=AUTH).json
    assert status["status"] == "sending" and status["queuing"] is True and status["queued_so_far"] == 0
    assert status["recipients"] == 25 and status["remaining"] == 25
    # A second webhook meanwhile is still a conflict.
    again = client.post("/send-mailout", json={"mailout_id": str(mailout_id)}, headers=AUTH)
    assert again.status_code == 409 and again.json["status"] == "sending"

    transport = FakeTransport()
    summary = sender.send_claimed_mailout(pool, transport, settings, started[0])

    assert summary.status == "sent" and summary.sent == 25 and summary.recipients == 25
    assert sorted(transport.sent) == sorted(emails(25))
    status = client.get(f"/mailouts/{mailout_id}", headers=AUTH).json
    assert status["queuing"] is False and status["queued_so_far"] is None and status["counts"] == {"sent": 25}


def test_the_first_email_leaves_after_the_first_page_and_pages_follow_the_batches(pool, conn, settings, small_pages):
    add_subscribers(conn, emails(35))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    seen = []
    look = lambda: seen.append(len(ledger(conn, mailout_id)))  # noqa: E731
    transport = FakeTransport(hooks={1: look, 9: look})

    summary = sender.send_claimed_mailout(pool, transport, with_settings(settings, batch_size=2), claim)

    # A page before the first read; the next one when less than a page is
    # queued ahead of the reads (which run ahead of the calls: by the first
    # email the second page may be in), never the whole list at once.
    assert small_pages <= seen[0] <= 2 * small_pages
    assert seen[0] <= seen[1] <= 3 * small_pages < 35
    assert summary.status == "sent" and summary.sent == 35
    assert not mailout_row(conn, mailout_id)["queuing"]


def test_a_run_that_dies_between_pages_is_resumed_from_the_cursor(pool, conn, settings, small_pages, monkeypatch):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    real_page = store.queue_page
    pages = Counter()

    def page_then_die(conn_, *args):
        pages["called"] += 1
        page = real_page(conn_, *args)
        if pages["called"] == 2:
            # The second page's rows and cursor are written, not committed.
            raise Died()
        return page

    monkeypatch.setattr(store, "queue_page", page_then_die)
    first = FakeTransport()
    with pytest.raises(Died):
        sender.send_claimed_mailout(pool, first, with_settings(settings, batch_size=4), claim)
    monkeypatch.setattr(store, "queue_page", real_page)

    # Page one is in and its cursor with it; page two left nothing behind.
    subscribers = by_id(conn)
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "sending" and row["queuing"]
    assert row["queue_cursor"] == subscribers[small_pages - 1]["id"] and row["queued_rows"] == small_pages
    assert set(ledger(conn, mailout_id)) == {s["email"] for s in subscribers[:small_pages]}
    # The calls handed out before it died went out (reading runs ahead of them).
    assert 1 <= len(first.sent) <= small_pages

    make_heartbeat_stale(conn, mailout_id)
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    second = FakeTransport()
    summary = sender.send_claimed_mailout(pool, second, with_settings(settings, batch_size=4), resumed)

    assert summary.status == "sent" and summary.recipients == 25
    everyone = first.sent + second.sent
    assert sorted(everyone) == sorted(emails(25)) and len(set(everyone)) == 25
    assert set(ledger(conn, mailout_id).values()) == {"sent"} and len(ledger(conn, mailout_id)) == 25


def test_who_leaves_or_joins_between_the_claim_and_their_page(pool, conn, settings, small_pages):
    add_subscribers(conn, emails(30))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    subscribers = by_id(conn)
    # One page is queued; then, before their own page comes:
    with pool.connection() as c:
        assert queueing.Queueing(mailout_id, claim.runner_id).next_page(c)
    already_queued, unsubscribed, bounced, deleted = (subscribers[i] for i in (3, 14, 25, 27))
    with pool.connection() as c:
        for who in (already_queued, unsubscribed):
            assert store.unsubscribe(c, who["id"])
    conn.execute(
        "UPDATE subscribers SET status = 'bounced', status_updated_at = now() WHERE id = %s", (bounced["id"],)
    )
    conn.execute("DELETE FROM subscribers WHERE id = %s", (deleted["id"],))
    add_subscribers(conn, ["newcomer@list.example"])

    transport = FakeTransport()
    summary = sender.send_claimed_mailout(pool, transport, settings, claim)

    states = ledger(conn, mailout_id)
    left = {already_queued["email"], unsubscribed["email"], bounced["email"]}
    # Everyone active at the claim has a row; who left is not sent to.
    assert {email for email, state in states.items() if state == "skipped"} == left
    assert "newcomer@list.example" not in states and deleted["email"] not in states
    assert sorted(transport.sent) == sorted(set(emails(30)) - left - {deleted["email"]})
    assert summary.status == "sent" and summary.recipients == 29 and summary.skipped == 3
    reasons = conn.execute(
        "SELECT email, error_message FROM send_logs WHERE mailout_id = %s AND status = 'skipped'", (mailout_id,)
    ).fetchall()
    assert {r["email"]: r["error_message"] for r in reasons} == {
        already_queued["email"]: "subscriber is unsubscribed",
        unsubscribed["email"]: "subscriber is unsubscribed",
        bounced["email"]: "subscriber is bounced",
    }


def test_a_page_of_nobody_to_send_to_does_not_end_the_mailout(pool, conn, settings, small_pages):
    """A page whose subscribers all left after the claim queues no row to
    send: the run must go on to the next page, not call the mailout sent."""
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    first_page = by_id(conn)[:small_pages]
    with pool.connection() as c:
        for who in first_page:
            store.unsubscribe(c, who["id"])

    transport = FakeTransport()
    summary = sender.send_claimed_mailout(pool, transport, settings, claim)

    assert summary.status == "sent" and len(transport.sent) == 25 - small_pages
    assert summary.skipped == small_pages and summary.recipients == 25


def test_a_forced_resume_during_the_snapshot_takes_the_pages_over(pool, conn, settings, small_pages):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    old = sender.claim_mailout(pool, mailout_id)
    old_pages = queueing.Queueing(mailout_id, old.runner_id)
    with pool.connection() as c:
        assert old_pages.next_page(c)

    new = sender.resume_mailout(pool, mailout_id, settings, force=True)
    with pool.connection() as c:
        assert not old_pages.next_page(c)  # no longer its mailout
    summary = sender.send_claimed_mailout(pool, FakeTransport(), settings, new)

    assert summary.status == "sent" and summary.sent == 25
    assert len(ledger(conn, mailout_id)) == 25


def test_a_run_stopped_mid_snapshot_is_paused_and_its_resume_finishes(pool, conn, settings, small_pages):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    stop = sender.StopSignal()
    first = FakeTransport(hooks={2: stop.set})

    paused = sender.send_claimed_mailout(pool, first, with_settings(settings, batch_size=3), claim, stop=stop)

    assert paused.status == "paused" and mailout_row(conn, mailout_id)["queuing"]
    resumed = sender.resume_mailout(pool, mailout_id, settings)
    second = FakeTransport()
    summary = sender.send_claimed_mailout(pool, second, settings, resumed)
    assert summary.status == "sent"
    assert sorted(first.sent + second.sent) == sorted(emails(25))


def test_a_mailout_set_back_to_ready_queues_only_who_is_not_in_its_ledger(pool, conn, settings, small_pages):
    add_subscribers(conn, emails(15))
    mailout_id = add_mailout(conn)
    first = FakeTransport()
    sender.send_claimed_mailout(pool, first, settings, sender.claim_mailout(pool, mailout_id))
    add_subscribers(conn, ["late@list.example"])
    conn.execute("UPDATE mailouts SET status = 'ready' WHERE id = %s", (mailout_id,))

    claim = sender.claim_mailout(pool, mailout_id)
    second = FakeTransport()
    summary = sender.send_claimed_mailout(pool, second, settings, claim)

    assert second.sent == ["late@list.example"]
    assert summary.status == "sent" and summary.recipients == 16


def test_mailout_status_says_recipients_are_being_queued(invoke, pool, conn, small_pages):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    with pool.connection() as c:
        assert queueing.Queueing(mailout_id, claim.runner_id).next_page(c)

    output = invoke("mailout", "status", mailout_id).output

    assert "queuing    recipients: 10 so far" in output
    assert "recipients 25" in output


def test_cli_resume_of_a_run_that_died_mid_snapshot_queues_the_rest_and_sends_it(invoke, standin, pool, conn,
                                                                                   small_pages):
    add_subscribers(conn, emails(25))
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id)
    with pool.connection() as c:
        assert queueing.Queueing(mailout_id, claim.runner_id).next_page(c)
    make_heartbeat_stale(conn, mailout_id)

    result = invoke("mailout", "resume", mailout_id)

    assert result.exit_code == 0, result.output
    assert "10 still queued and about 15 still to queue, 0 were in flight" in result.output
    assert sorted(r.to_addresses[0] for r in standin.sent) == sorted(emails(25))
    assert mailout_row(conn, mailout_id)["status"] == "sent"
