"""Test doubles the test modules share: one scriptable transport in place of
SES (and the real one made to suit moto), a clock, and a pool whose database
fails on cue."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

# The one place this module meets the transport interface of
# amazonsender/ses.py beyond `send`, `send_bulk` and `account_limits`.
from amazonsender.ses import BulkResult, SesTransport


@dataclass(frozen=True)
class Call:
    """One call to the fake transport, seen by its `on_call` hook."""

    number: int  # 1 = the first call started
    email: object  # the OutgoingEmail (None for a bulk call)
    message_id: str  # what the call answers with if nothing fails

    @property
    def address(self) -> str | None:
        return self.email.to_address if self.email is not None else None


class FakeTransport:
    """Stands in for the SES transport: `send(email)` answers a message id or
    raises, `account_limits()` is SES's GetAccount.

    The script, all optional:
    - `failures`: {address: error} raises that error on every call for the
      address; {address: [errors]} raises them in turn, then it succeeds.
    - `answer(number, address)`: an exception to raise for that call, or
      None (it may also raise itself); consulted after `failures`.
    - `hooks`: {number: fn()} runs as that call starts, before anything else.
    - `latency`: seconds each call takes (counted in flight meanwhile).
    - `on_call(call)`: runs during every call, after the latency, before the
      answer.
    - `ids`: the message id, from the call number `{n}` and `{address}`.
    - `limits` / `account_error`: what GetAccount answers / raises.
    - `passthrough`: a real transport that answers the calls the script lets
      through (the fake then only watches and scripts around it).

    It records `calls` (the address of every call, in order), `times` (when
    each call started), `sent` and `emails` (the accepted addresses and
    emails), `threads` (names of the calling threads), `most_in_flight`,
    and `asked` (GetAccount calls).
    """

    def __init__(
        self, *, failures=None, answer=None, hooks=None, latency=0.0, on_call=None, ids="msg-{n}",
        limits=None, account_error=None, passthrough=None,
    ):
        self.failures = {a: list(e) if isinstance(e, list) else e for a, e in (failures or {}).items()}
        self.answer, self.hooks, self.latency, self.on_call = answer, dict(hooks or {}), latency, on_call
        self.ids, self.limits, self.account_error, self.passthrough = ids, limits, account_error, passthrough
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.times: list[float] = []
        self.sent: list[str] = []
        self.emails: list = []
        self.threads: set[str] = set()
        self.in_flight = self.most_in_flight = self.asked = self._numbers = 0

    @property
    def addresses(self) -> list[str]:
        return list(self.sent)

    def account_limits(self):
        self.asked += 1
        if self.account_error is not None:
            raise self.account_error
        return self.limits

    def send(self, email):
        with self._in_flight(email.to_address) as number:
            message_id = self.ids.format(n=number, address=email.to_address)
            if self.on_call:
                self.on_call(Call(number, email, message_id))
            error = self._scripted_error(number, email.to_address)
            if error is not None:
                raise error
            if self.passthrough is not None:
                message_id = self.passthrough.send(email)
            with self.lock:
                self.sent.append(email.to_address)
                self.emails.append(email)
            return message_id

    @contextmanager
    def _in_flight(self, address):
        with self.lock:
            self._numbers += 1
            number = self._numbers
            if address is not None:
                self.calls.append(address)
            self.times.append(time.monotonic())
            self.threads.add(threading.current_thread().name)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            hook = self.hooks.get(number)
            if hook:
                hook()
            if self.latency:
                time.sleep(self.latency)
            yield number
        finally:
            with self.lock:
                self.in_flight -= 1

    def _scripted_error(self, number, address):
        with self.lock:
            scripted = self.failures.get(address)
            if isinstance(scripted, list):
                scripted = scripted.pop(0) if scripted else None
        if scripted is None and self.answer is not None:
            scripted = self.answer(number, address)
        return scripted


class FakeBulkTransport(FakeTransport):
    """The fake transport that also takes SendBulkEmail (`send_bulk`), which
    makes the sender use bulk calls where settings allow. A bulk call is
    counted, hooked and delayed like any other; its answer comes from
    `passthrough`, else every recipient gets a message id."""

    def send_bulk(self, content, recipients):
        with self._in_flight(None) as number:
            if self.on_call:
                self.on_call(Call(number, None, self.ids.format(n=number, address="")))
            if self.passthrough is not None:
                return self.passthrough.send_bulk(content, recipients)
            return [
                BulkResult(message_id=self.ids.format(n=f"{number}.{i}", address=r.to_address))
                for i, r in enumerate(recipients, 1)
            ]


class MotoSesTransport(SesTransport):
    """The real SES transport against moto, which does not implement
    GetAccount: the quota check is tested with Stubber and the stand-in."""

    def account_limits(self):
        return None


class FakeClock:
    """A monotonic clock that moves only when told to, or when slept on."""

    def __init__(self, now: float = 100.0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyPool:
    """The real pool, failing on cue: `connection()` raises OperationalError
    for the next `refusals` calls (a database restarting); once
    `statements_left` is set, the statement after that many fails
    mid-transaction (a connection lost halfway through a unit of work); and
    with `lose_next_commit_answer` the next unit of work commits, then reports
    the connection lost (the commit's answer never came back)."""

    def __init__(self, pool):
        self.pool = pool
        self.refusals = 0
        self.refused = 0
        self.statements_left: int | None = None
        self.lose_next_commit_answer = False

    @contextmanager
    def connection(self, *args, **kwargs):
        if self.refusals > 0:
            self.refusals -= 1
            self.refused += 1
            raise psycopg.OperationalError(
                'connection to server at "127.0.0.1", port 5432 failed: Connection refused'
            )
        lose_answer, self.lose_next_commit_answer = self.lose_next_commit_answer, False
        with self.pool.connection(*args, **kwargs) as connection:
            yield _BreakingConnection(connection, self)
        if lose_answer:
            raise psycopg.OperationalError("server closed the connection unexpectedly")


class _BreakingConnection:
    def __init__(self, connection, owner: FlakyPool):
        self._connection = connection
        self._owner = owner

    def execute(self, *args, **kwargs):
        if self._owner.statements_left is not None:
            if self._owner.statements_left <= 0:
                self._owner.statements_left = None
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            self._owner.statements_left -= 1
        return self._connection.execute(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._connection, name)
