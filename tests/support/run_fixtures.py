"""Fixtures for tests that run the sender in this process: retries without the real back-off, and no stop request carried between tests.

Registered for every test module in tests/conftest.py (pytest_plugins); a
module that wants them says so once:

    pytestmark = pytest.mark.usefixtures("fast_backoff", "no_stop_request")
"""

from __future__ import annotations

import pytest

from amazonsender import sender
from amazonsender.sender import attempts


@pytest.fixture
def fast_backoff(monkeypatch):
    """A retried call waits a millisecond, not the real back-off."""
    monkeypatch.setattr(attempts, "backoff_seconds", lambda attempt: 0.001)


@pytest.fixture
def no_stop_request():
    """The process-wide stop event must not leak between tests."""
    sender.stop_requested.clear()
    yield
    sender.stop_requested.clear()
