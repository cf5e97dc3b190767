"""A run's hold on its mailout: the heartbeat that says the run is alive, and whether the mailout is still its own.

A claim or a resume writes a fresh `runner_id` on the mailout; the heartbeat
is only written while that id is still there. A resume takes over a mailout
whose heartbeat is older than HEARTBEAT_STALE_SECONDS (or any, with --force),
so a run writes it every quarter of that, whatever it is waiting for, and
stops when it finds the mailout taken over or changed by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import store

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self, pool: ConnectionPool, mailout_id: UUID, runner_id: UUID, stale_seconds: float, on_lost: Callable[[], None]
    ):
        self.pool = pool
        self.mailout_id = mailout_id
        self.runner_id = runner_id
        self.interval = stale_seconds / 4
        # Called (from the heartbeat thread) when the mailout is no longer ours.
        self.on_lost = on_lost
        self.lock = threading.Lock()
        self.last_written = time.monotonic()

    def renew(self, conn) -> bool:
        """Write the heartbeat in the caller's transaction; False when the
        mailout is no longer this run's."""
        return store.heartbeat(conn, self.mailout_id, self.runner_id)

    def renewed(self) -> None:
        """The heartbeat was just written: the next one is not due before an interval."""
        self.last_written = time.monotonic()

    def due(self) -> bool:
        """Between emails: is a heartbeat due? If so, the caller writes it
        now, and the next one is due an interval later."""
        with self.lock:
            if time.monotonic() - self.last_written < self.interval:
                return False
            self.last_written = time.monotonic()
        return True

    @contextmanager
    def beating(self) -> Iterator[None]:
        """A thread writes the heartbeat for as long as the block runs."""
        done = threading.Event()
        thread = threading.Thread(target=self._beat, args=(done,), name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _beat(self, done: threading.Event) -> None:
        # Every interval, whatever the run is waiting for (a slow pace, an
        # SES answer, a backoff), so a resume never mistakes it for a dead run.
        while not done.wait(self.interval):
            try:
                with self.pool.connection() as conn:
                    owned = self.renew(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("heartbeat not written (database unreachable): %s", str(exc).strip()[:200])
                continue
            if not owned:
                self.on_lost()
                return
