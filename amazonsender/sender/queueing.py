"""The snapshot after the claim: a run queues its mailout's recipients page by page, from the cursor the last page committed.

The claim only moves the mailout to 'sending' (so the webhook answers at
once for any list); the run that sends it queues the recipients, a page
whenever fewer than a page of rows is queued ahead of its reads, so the
first email goes out after the first page and the pages' time is spread over
the send instead of holding up its start. Each page is one transaction that commits its rows
and the mailout's cursor together (store.queue_page): a run that dies
between pages leaves a consistent ledger, and the run that resumes it goes
on from the cursor. The run ends the mailout 'sent' only once the last page
is committed and no row is left queued.
"""

from __future__ import annotations

import logging
from uuid import UUID

from .. import store

log = logging.getLogger(__name__)

# Recipients one page queues. A page is one INSERT ... SELECT through the
# subscribers' primary key: large enough that a million recipients take a
# hundred pages, small enough that each page (and the wait of the first
# email behind it) stays short.
PAGE_SIZE = 10_000


class Queueing:
    """A run's side of the snapshot: whether it is complete, and the next page."""

    def __init__(self, mailout_id: UUID, runner_id: UUID, page_size: int | None = None):
        self.mailout_id = mailout_id
        self.runner_id = runner_id
        self.page_size = page_size or PAGE_SIZE
        # Not known before the first call: a resumed mailout may have its
        # snapshot complete already, or not.
        self.done = False
        self.queued = 0
        self.skipped = 0
        # Rows this run has queued and not taken yet. A resumed run starts at
        # 0 and so queues a page first, whatever its ledger holds already.
        self.ahead = 0

    def wanted(self) -> bool:
        """Is a page due before the next read?"""
        return not self.done and self.ahead < self.page_size

    def taken(self, rows: int) -> None:
        """A read took `rows` queued rows."""
        self.ahead = max(0, self.ahead - rows)

    def next_page(self, conn) -> bool:
        """Queue the next page in the caller's transaction (safe to repeat:
        the page starts from the cursor that committed). False when the
        mailout is no longer this run's."""
        page = store.queue_page(conn, self.mailout_id, self.runner_id, self.page_size)
        if page is None:
            return False
        self.queued += page.queued
        self.skipped += page.skipped
        self.ahead += page.queued
        if page.done and (self.queued or self.skipped):
            log.info(
                "mailout %s: every recipient is queued (%d this run, %d skipped: left the list after the claim)",
                self.mailout_id,
                self.queued,
                self.skipped,
                extra={
                    "event": "queued",
                    "mailout_id": str(self.mailout_id),
                    "counts": {"queued": self.queued, "skipped": self.skipped},
                },
            )
        self.done = page.done
        return True
