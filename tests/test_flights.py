"""Flights (amazonsender/sender/flights.py), the SES calls a run keeps in flight, on a fake clock: SEND_CONCURRENCY=auto grows to the slots a slow SES needs, shrinks gradually when it gets faster, stays under its ceiling; a number stays that number; a wait for a slot gives up when asked."""

from __future__ import annotations

import math
import threading

from amazonsender.sender.flights import AUTO, START_SLOTS, Flights
from tests.fakes import FakeClock

RATE = 40.0  # calls a second


def never() -> bool:
    return False


def after(n: int):
    """A give_up that says yes from its (n+1)-th question on."""
    asked = []

    def give_up() -> bool:
        asked.append(1)
        return len(asked) > n

    give_up.asked = asked
    return give_up


def needed(seconds: float, rate: float = RATE) -> int:
    """The slots flights.py means to keep for calls of `seconds` at `rate`."""
    return math.ceil(rate * seconds * 1.25) + 1


def call(flights: Flights, clock: FakeClock, seconds: float) -> None:
    """One call that takes `seconds`, start to answer."""
    ticket = flights.acquire(never)
    assert ticket is not None
    clock.now += seconds
    flights.release(ticket)


def auto(clock, rate=lambda: RATE, ceiling=64) -> Flights:
    return Flights(AUTO, ceiling, rate, clock=clock)


def test_auto_starts_cautious_and_grows_to_what_250_ms_answers_need():
    clock = FakeClock()
    flights = auto(clock)
    assert flights.limit() == START_SLOTS
    tickets = [flights.acquire(never)]
    clock.now += 0.01
    tickets.append(flights.acquire(never))
    assert None not in tickets
    assert flights.acquire(after(2)) is None  # all taken: it waits, then gives up
    # The pacer let them go (a run's call says so: `restart`), and they
    # have taken 250 ms since: that counts before any answer.
    for ticket in tickets:
        flights.restart(ticket)
    clock.now += 0.25
    assert flights.limit() == needed(0.25) == 14
    for ticket in tickets:
        flights.release(ticket)
    assert flights.limit() == 14
    taken = [flights.acquire(never) for _ in range(14)]
    assert None not in taken and flights.in_flight == 14
    assert flights.acquire(after(2)) is None  # the 15th waits
    assert flights.highest == 14


def test_auto_shrinks_gradually_when_ses_gets_faster_and_follows_a_slower_one_at_once():
    clock = FakeClock()
    flights = auto(clock)
    for _ in range(3):
        call(flights, clock, 0.25)
    assert flights.limit() == 14
    limits = []
    for _ in range(30):
        call(flights, clock, 0.05)
        limits.append(flights.limit())
    assert limits == sorted(limits, reverse=True)  # never up while answers are faster
    assert needed(0.05) < limits[0] < 14  # one faster answer moves it part of the way
    assert limits[-1] == needed(0.05) == 4
    assert len(set(limits)) > 3  # in steps, not at once
    call(flights, clock, 0.5)
    assert flights.limit() == needed(0.5)  # slower: at once


def test_auto_follows_the_pace_and_stays_under_its_ceiling():
    clock = FakeClock()
    rate = [RATE]
    flights = auto(clock, rate=lambda: rate[0], ceiling=20)
    call(flights, clock, 0.25)
    assert flights.limit() == 14
    rate[0] = RATE / 2  # SES throttled us: the pace is halved
    assert flights.limit() == needed(0.25, RATE / 2) == 8
    call(flights, clock, 2.0)  # a 2 s answer would need 101 at 40/s
    rate[0] = RATE
    assert flights.limit() == 20


def test_a_call_never_made_says_nothing_of_the_answer_time():
    clock = FakeClock()
    flights = auto(clock)
    call(flights, clock, 0.25)
    ticket = flights.acquire(never)
    clock.now += 5.0  # waited for the pace, then the run stopped
    flights.release(ticket, answered=False)
    assert flights.limit() == 14


def test_a_fixed_number_stays_that_number():
    clock = FakeClock()
    flights = Flights(3, 64, lambda: RATE, clock=clock)
    assert flights.limit() == 3
    call(flights, clock, 1.0)
    assert flights.limit() == 3
    tickets = [flights.acquire(never) for _ in range(3)]
    clock.now += 2.0
    assert flights.limit() == 3
    give_up = after(2)
    assert flights.acquire(give_up) is None
    assert len(give_up.asked) == 3  # it waited for a slot, asking each time
    flights.release(tickets[0])
    assert flights.acquire(never) is not None


def test_acquire_gives_up_at_once_when_the_run_stops_even_with_free_slots():
    flights = auto(FakeClock())
    assert flights.acquire(lambda: True) is None
    assert flights.in_flight == 0


def test_a_waiting_acquire_takes_the_slot_a_release_frees():
    clock = FakeClock()
    flights = Flights(1, 64, lambda: RATE, clock=clock)
    first = flights.acquire(never)
    got = []
    waiter = threading.Thread(target=lambda: got.append(flights.acquire(after(200))))
    waiter.start()
    flights.release(first)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert got and got[0] is not None and got[0] != first
    flights.release(got[0])
    flights.wait_idle()
    assert flights.in_flight == 0


def test_a_call_still_waiting_for_the_pacer_does_not_count_as_a_slow_answer():
    """Slots beyond what SES's answer time needs wait for the pacer; were that
    wait counted as an answer time under way, every slot waiting would ask
    for more, and the limit would climb to its ceiling whatever SES's
    answer time."""
    clock = FakeClock()
    flights = auto(clock)
    call(flights, clock, 0.05)  # SES answers in 50 ms
    assert flights.limit() == needed(0.05) == 4
    first, second = flights.acquire(never), flights.acquire(never)
    flights.restart(first)  # the pacer let it go; the other waits its turn
    clock.now += 0.05
    flights.release(first)
    clock.now += 0.5  # still waiting for the pacer (a slowed-down pace, say)
    assert flights.limit() == needed(0.05)
    flights.restart(second)
    clock.now += 0.3  # in SES for 300 ms: that does count
    assert flights.limit() == needed(0.3)
