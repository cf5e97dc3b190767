"""Reading ahead (sender/ahead.py) through the run's own reads of a real
ledger: a row read again before its call marked it is never handed out twice,
least of all twice in one SendBulkEmail call."""

from __future__ import annotations

from collections import Counter

import pytest

from amazonsender import sender
from amazonsender.sender.run import Run
from tests.fakes import FakeBulkTransport
from tests.support.db import add_mailout, add_subscribers
from tests.support.sending import claim_and_queue, emails
from tests.support.settings import with_settings


pytestmark = pytest.mark.usefixtures("fast_backoff", "no_stop_request")


def log_ids(conn, mailout_id) -> list:
    rows = conn.execute(
        "SELECT id, email, subscriber_id FROM send_logs WHERE mailout_id = %s ORDER BY id", (mailout_id,)
    ).fetchall()
    return rows


def test_a_row_read_again_before_its_mark_is_not_handed_out_twice(pool, conn, settings):
    """A pass ends on a short read (its rows still read ahead); the next pass
    starts with a read that is full of subscribers who left since (skipped),
    so the read after it goes on from a cursor with no exclusions and meets
    the rows still read ahead. They must not be cut into a call twice: one
    SendBulkEmail call would carry the same recipient twice."""
    bulk = with_settings(settings, ses_bulk_send="auto", rate_limit_per_sec=2000.0, batch_size=10)
    add_subscribers(conn, emails(5))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    transport = FakeBulkTransport()
    run = Run(pool, transport, bulk, claim, sleep=None, pacer=None, stop=sender.stop_requested, progress=None)
    run.queueing.done = True
    assert run.sending.per_call == 10
    rows = log_ids(conn, mailout_id)
    # The pass so far read up to the second row (and sent it, say).
    run.ahead.cursor = rows[1]["id"]
    assert run.read(4)
    assert run.ahead.cursor is None  # a short read: the pass is over
    assert len(run.ahead) == 3
    # The first two subscribers leave: the next read, from the start, is full
    # of them (skipped), and the one after goes on from its cursor.
    conn.execute(
        "UPDATE subscribers SET status = 'unsubscribed' WHERE id = ANY(%s)",
        ([rows[0]["subscriber_id"], rows[1]["subscriber_id"]],),
    )
    assert run.read(2)
    assert run.ahead.cursor == rows[1]["id"]
    assert run.read(4)

    chunk = run.ahead.next_call(run.sending.per_call)
    assert Counter(r.log_id for r in chunk).most_common(1)[0][1] == 1, "a row twice in one call"
    destinations = []
    real_send_bulk = transport.send_bulk

    def send_bulk(content, recipients):
        destinations.extend(r.destination for r in recipients)
        return real_send_bulk(content, recipients)

    transport.send_bulk = send_bulk
    run.sending.send_call(chunk)
    assert sorted(destinations) == sorted(row["email"] for row in rows[2:])
