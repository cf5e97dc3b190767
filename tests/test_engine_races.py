"""The run with several calls in flight, each test arranging one order of
events between the sending threads (the fake transport waits on the run's
own state, for at most a few seconds, rather than on the clock)."""

from __future__ import annotations

import threading
import time

import pytest

from amazonsender import sender
from amazonsender.sender import attempts
from amazonsender.sender.run import Run
from amazonsender.ses import TRANSIENT, SendError
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, emails, send_order
from tests.support.settings import with_settings

# The longest a scripted call waits for the run to reach a state.
PATIENCE_SECONDS = 10.0


pytestmark = pytest.mark.usefixtures("fast_backoff", "no_stop_request")


def wait_until(condition) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def make_run(pool, transport, settings, claim) -> Run:
    return Run(pool, transport, settings, claim, sleep=lambda s: None, pacer=None, stop=sender.stop_requested,
               progress=None)


def test_a_call_that_gives_up_on_ses_after_the_breaker_tripped_goes_back_to_the_queue(pool, conn, settings):
    """SES is down. The first call gives up (SES never took its recipient)
    and the next call's check trips the breaker: paused as SES unavailable,
    its streak back to the queue. A call in flight meanwhile gives up too,
    just after: SES never took its recipient either, who must not stay
    'failed' (never sent by the automatic resume)."""
    add_subscribers(conn, emails(6))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)
    order = send_order(conn, mailout_id)
    settings = with_settings(settings, max_consecutive_failures=1, send_concurrency=2)
    run = None
    tries: dict[str, int] = {}
    lock = threading.Lock()

    def answer(number, address):
        with lock:
            tries[address] = tries.get(address, 0) + 1
            attempt = tries[address]
        last = attempt == attempts.TRANSIENT_ATTEMPTS
        if address == order[0] and last:
            # The first call's last try is answered once the second call
            # is at its own last try (in SES),
            wait_until(lambda: tries.get(order[1], 0) == attempts.TRANSIENT_ATTEMPTS)
        elif address == order[1] and last:
            # which is answered once the breaker tripped.
            wait_until(lambda: run.halting.halt is not None)
        return SendError("InternalFailure: 500", kind=TRANSIENT)

    transport = FakeTransport(answer=answer)
    run = make_run(pool, transport, settings, claim)
    summary = run.execute()

    assert summary.status == "paused" and mailout_row(conn, mailout_id)["stop_reason"] == "ses_unavailable"
    states = ledger(conn, mailout_id)
    assert tries[order[1]] == attempts.TRANSIENT_ATTEMPTS
    assert states[order[1]] == "queued", states
    assert set(states.values()) == {"queued"}


def test_a_call_the_executor_refuses_frees_its_slot_and_the_run_ends_recorded(pool, conn, settings, monkeypatch):
    """The executor refuses a call (as it does once the interpreter is
    shutting down): the run stops on it, and its wait for the calls in
    flight must not wait for that one, which never started."""
    from amazonsender.sender import run as run_module

    add_subscribers(conn, emails(4))
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(pool, mailout_id)

    class Refusing(run_module.ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(run_module, "ThreadPoolExecutor", Refusing)
    run = make_run(pool, FakeTransport(), settings, claim)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=run.execute()), daemon=True)
    thread.start()
    thread.join(PATIENCE_SECONDS)

    assert not thread.is_alive(), "the run waits for a call that never started"
    assert result["summary"].status == "failed"
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "failed" and row["stop_reason"] == "internal_error"
    assert set(ledger(conn, mailout_id).values()) == {"queued"}


def test_a_mark_slower_than_usual_goes_back_to_the_pacer_but_a_steady_far_database_does_not():
    """A stalled mark would let calls the pacer released meanwhile reach SES
    together; a database that is far (every mark slow alike) is no stall."""
    from types import SimpleNamespace

    from amazonsender.sender.sending import REPACE_SLOWER_BY_SECONDS, CallSender

    state = SimpleNamespace(lock=threading.Lock(), mark_seconds=None)

    def slow(seconds):
        return CallSender.mark_was_slow(state, seconds)

    assert not slow(0.03)  # the first sets what is usual
    assert not any(slow(0.03 + 0.005 * (n % 2)) for n in range(50))  # a far database, steady
    assert slow(0.03 + REPACE_SLOWER_BY_SECONDS + 0.05)  # a stall
    assert not slow(0.03)
