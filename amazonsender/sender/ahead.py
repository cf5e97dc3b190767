"""Reading ahead: the rows a run has read from the ledger and not yet sent, cut into SES calls.

The run reads a batch (BATCH_SIZE rows, or more when more calls are in
flight at once) while the calls of the one before are under way, so a batch
boundary costs the sending threads no pause. Reads go through the queue in
id order from a cursor; a short read ends the pass, and the next starts
from the beginning (a page queued meanwhile put rows anywhere). Read rows
stay 'queued' in the ledger until the call that carries them marks them
(sending.py), so a read from the beginning leaves out `unsent`: every row
read and not yet marked. A read from the cursor excludes nothing and may
meet such rows again: `add` drops them, so no call carries a row twice (in
two calls, the mark would let only one send it).

Thread-safe: the run's loop reads and cuts calls, its sending threads say
when a call is through.
"""

from __future__ import annotations

import collections
import threading
from uuid import UUID

from .. import store


class ReadAhead:
    def __init__(self) -> None:
        self.buffer: collections.deque[store.Recipient] = collections.deque()
        self.unsent: set[UUID] = set()
        # The last row of this pass's reads; None: the next read starts a pass.
        self.cursor: UUID | None = None
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, recipients: list[store.Recipient]) -> None:
        """Read rows, less those read already and not yet marked: a read
        from the cursor may meet rows the pass before left read ahead, and
        one call carrying a row twice would send its email twice."""
        with self.lock:
            for recipient in recipients:
                if recipient.log_id not in self.unsent:
                    self.unsent.add(recipient.log_id)
                    self.buffer.append(recipient)

    def next_call(self, size: int) -> list[store.Recipient] | None:
        """The next call's recipients (up to `size`), or None when none are read."""
        with self.lock:
            if not self.buffer:
                return None
            return [self.buffer.popleft() for _ in range(min(size, len(self.buffer)))]

    def through(self, recipients: list[store.Recipient]) -> None:
        """Their call marked them, or will never be made."""
        with self.lock:
            self.unsent.difference_update(r.log_id for r in recipients)

    def exclude(self) -> list[UUID]:
        """What the next read must leave out."""
        with self.lock:
            return list(self.unsent)
