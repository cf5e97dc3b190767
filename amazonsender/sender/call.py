"""One SES call as it goes: its recipients' messages written ahead, the rows its mark took, and each one's outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from uuid import UUID

from .. import store
from ..template import BulkContent


class Call:
    """One SES call's recipients as the call goes: the rows it marked, whether
    SES was asked, and each recipient's outcome so far."""

    def __init__(self) -> None:
        # Made before the mark, so a retry after a lost COMMIT answer finds
        # the rows the first attempt marked.
        self.id = uuid.uuid4()
        self.marked: list[store.Recipient] = []
        # Rows a request to SES carried: in doubt if no answer comes back.
        self.handed: set[UUID] = set()
        self.settled: dict[UUID, store.Outcome] = {}
        # When the pacer let the next request go (Pacer.made, once it is made).
        self.released: float | None = None

    def outcomes(self) -> list[store.Outcome]:
        """Every marked row's outcome: 'queued' for one never attempted."""
        return [self.settled.get(r.log_id) or store.Outcome(r.log_id, "queued") for r in self.marked]


@dataclass
class Written:
    """A call's messages, written before the pacer lets it go: each
    recipient's email (`content` None: SendEmail) or entry of `content`
    (SendBulkEmail), or why theirs cannot be written."""

    content: BulkContent | None
    messages: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
