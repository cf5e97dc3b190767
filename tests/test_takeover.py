"""A resume that takes a mailout from a run still alive (a person's pause then `mailout resume`, --force, or a heartbeat gone stale while the run lived): nobody lost, nobody twice, and the old run makes no more SES calls."""

from __future__ import annotations

import time
from collections import Counter

from amazonsender import sender, store
from amazonsender.transport import ErrorKind, SendError
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, emails, queue_everyone, take_rows
from tests.support.settings import with_settings


def test_pause_then_resume_by_hand_sends_the_rest_of_the_live_runs_batch(pool, conn, settings):
    sender.process_stop.clear()
    people = emails(10)
    add_subscribers(conn, people)
    mailout_id = add_mailout(conn)
    fast = with_settings(settings, batch_size=10, heartbeat_stale_seconds=2)
    claim = sender.claim_mailout(pool, mailout_id)
    taken = {}

    def a_person_pauses_then_resumes():
        # During run A's first SES call: `mailout pause ID`, then `mailout resume ID`.
        sender.pause_mailout(pool, mailout_id)
        taken["claim"] = sender.resume_mailout(pool, mailout_id, fast)
        time.sleep(1.5)  # A's lease (renewed every 0.5 s here) notices

    first = FakeTransport(hooks={1: a_person_pauses_then_resumes})
    sender.send_claimed_mailout(pool, first, fast, claim)
    second = FakeTransport()
    summary = sender.send_claimed_mailout(pool, second, fast, taken["claim"])

    received = Counter(first.sent) + Counter(second.sent)
    assert sorted(received) == sorted(people) and set(received.values()) == {1}
    assert summary.status == "sent" and mailout_row(conn, mailout_id)["status"] == "sent"
    assert set(ledger(conn, mailout_id).values()) == {"sent"}


def test_a_paused_run_makes_no_more_ses_calls_while_it_retries_a_throttled_email(pool, conn, settings):
    sender.process_stop.clear()
    add_subscribers(conn, ["t@list.example"])
    mailout_id = add_mailout(conn)
    fast = with_settings(settings, batch_size=10, heartbeat_stale_seconds=1)
    claim = sender.claim_mailout(pool, mailout_id)
    throttled = [SendError("Throttling: Maximum sending rate exceeded", kind=ErrorKind.THROTTLED)] * 5
    transport = FakeTransport(
        failures={"t@list.example": throttled}, hooks={1: lambda: sender.pause_mailout(pool, mailout_id)}
    )
    sender.send_claimed_mailout(pool, transport, fast, claim, sleep=lambda seconds: time.sleep(0.3))
    assert len(transport.calls) == 1 and transport.sent == []
    assert mailout_row(conn, mailout_id)["status"] == "paused"
    assert ledger(conn, mailout_id) == {"t@list.example": "queued"}


def test_rows_given_back_after_the_mailout_ended_reopen_it_for_the_watcher(pool, conn):
    add_subscribers(conn, ["a@list.example", "b@list.example"])
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    taken, _ = take_rows(conn, mailout_id, 2)
    # Another run took the mailout over, marked the batch in doubt and ended it.
    assert store.mark_in_doubt(conn, mailout_id) == 2
    conn.execute("UPDATE mailouts SET status = 'sent', sent_at = now() WHERE id = %s", (mailout_id,))
    # The old run gives back what it never sent.
    store.record_outcomes(conn, mailout_id, [store.Outcome(taken[0].log_id, "sent", "msg-1"),
                                             store.Outcome(taken[1].log_id, "queued")])
    row = mailout_row(conn, mailout_id)
    assert (row["status"], row["stop_reason"], row["sent_at"]) == ("paused", "shutdown", None)
    assert sorted(ledger(conn, mailout_id).values()) == ["queued", "sent"]
    assert claim.runner_id  # the claim's run is the one that lost it


def test_a_run_never_ends_sent_with_a_row_queued(pool, conn):
    add_subscribers(conn, ["a@list.example"])
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    assert not store.finish_mailout(conn, mailout_id, claim.runner_id, "sent")
    assert mailout_row(conn, mailout_id)["status"] == "sending"


def test_a_notion_retry_after_the_snapshot_answers_the_first_recipients(pool, conn):
    add_subscribers(conn, ["a@list.example", "b@list.example", "c@list.example"])
    mailout_id = add_mailout(conn)
    claim = sender.claim_mailout(pool, mailout_id, event_id="evt-1")
    conn.execute("DELETE FROM subscribers WHERE email = 'c@list.example'")  # forgotten before its page
    queue_everyone(pool, claim)
    replay = store.claimed_by_event(conn, mailout_id, "evt-1")
    assert replay["recipients"] == claim.recipients == 3
    assert mailout_row(conn, mailout_id)["recipients"] == 2
