"""Helpers for tests that drive a send: recipient addresses, the order they are sent in, and how fast
the emails went."""

from __future__ import annotations

from amazonsender import store
from amazonsender.sender.stop import StopReason, next_resume_in
from tests.support.db import add_mailout, add_subscribers


def emails(n, domain="list.example"):
    return [f"reader{i:03d}@{domain}" for i in range(n)]


def send_order(conn, mailout_id) -> list[str]:
    """The addresses of a claimed mailout in the order the sender takes them."""
    rows = conn.execute("SELECT email FROM send_logs WHERE mailout_id = %s ORDER BY id", (mailout_id,))
    return [row["email"] for row in rows]


def max_in_any_second(times: list[float]) -> int:
    """The largest number of sends in any half-open one-second window."""
    times = sorted(times)
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def queue_everyone(pool, claim, page_size: int = 10_000) -> None:
    """What a run does before its batches, all of it at once: queue every page
    of a claimed mailout's snapshot. For tests that look at (or change) the
    ledger between the claim and the send."""
    from amazonsender.sender.queueing import Queueing

    queueing = Queueing(claim.mailout_id, claim.runner_id, page_size)
    while not queueing.done:
        with pool.connection() as conn:
            assert queueing.next_page(conn), "the mailout is no longer this claim's"


def claim_and_queue(pool, mailout_id, **kwargs):
    """sender.claim_mailout, then every page of its snapshot (queue_everyone)."""
    from amazonsender import sender

    claim = sender.claim_mailout(pool, mailout_id, **kwargs)
    queue_everyone(pool, claim)
    return claim


def stopped(pool, conn, reason: StopReason | None, n: int = 6, *, status: str = "paused", attempts: int = 0):
    """A mailout claimed and stopped at once with `reason`, its rows queued."""
    add_subscribers(conn, [f"{(reason or 'none')}-{i}@example.org" for i in range(n)])
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    with pool.connection() as c:
        c.execute("UPDATE mailouts SET auto_resume_attempts = %s WHERE id = %s", (attempts, mailout_id))
        store.finish_mailout(
            c, mailout_id, claim.runner_id, status, "stopped", stop_reason=reason,
            resume_in=next_resume_in(reason, attempts) if reason else None,
        )
    return mailout_id


def take_rows(conn, mailout_id, size: int):
    """What a run does before a call, all at once: read up to `size` queued
    rows (those who left the list become 'skipped') and mark the rest
    'sending' for one call of the mailout's current runner. Returns (the
    marked recipients, skipped count)."""
    import uuid

    recipients, skipped, _ = store.read_batch(conn, mailout_id, size)
    runner = conn.execute("SELECT runner_id FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()["runner_id"]
    marked = set(store.mark_sending(conn, mailout_id, runner, uuid.uuid4(), [r.log_id for r in recipients]) or ())
    return [r for r in recipients if r.log_id in marked], skipped
