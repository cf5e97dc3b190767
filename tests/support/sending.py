"""Helpers for tests that drive a send: recipient addresses, and how fast
the emails went."""

from __future__ import annotations


def emails(n, domain="list.example"):
    return [f"reader{i:03d}@{domain}" for i in range(n)]


def max_in_any_second(times: list[float]) -> int:
    """The largest number of sends in any half-open one-second window."""
    times = sorted(times)
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
