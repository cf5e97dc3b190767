"""What a transport is to the sender: the `Transport` protocol, and the `SendError` and `ErrorKind` it raises.

Two transports implement it, both in ses.py: `SesTransport` (Amazon SES v2)
and `OutboxTransport` (each email an .eml file, for local use). The sender
knows nothing else about them; the tests script their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .message import OutgoingEmail
    from .template import BulkContent, BulkRecipient


class ErrorKind(StrEnum):
    """What a failed send tells the sender to do next (sender/attempts.py
    holds what it does)."""

    # This address failed for good: record it and go on.
    RECIPIENT = "recipient"
    # Every send would fail (paused account, bad credentials, an unverified
    # sender): stop the mailout and keep the rest queued.
    ACCOUNT = "account"
    # SES asked us to slow down: wait and send the same email again.
    THROTTLED = "throttled"
    # A 5xx, or a connection that could not be made: retry a few times.
    TRANSIENT = "transient"
    # The request went out and no answer came back (a read timeout): SES may
    # have accepted it, so it is never sent again.
    IN_DOUBT = "in_doubt"


class SendError(Exception):
    def __init__(self, message: str, *, kind: ErrorKind | str, code: str = ""):
        super().__init__(message)
        self.kind = ErrorKind(kind)
        self.code = code  # SES's error code, when SES answered with one


@dataclass(frozen=True)
class BulkResult:
    """One recipient of a SendBulkEmail call: its message id, or why not."""

    message_id: str | None = None
    error: SendError | None = None


class Transport(Protocol):
    """Sends one email: its message id, or a SendError."""

    def send(self, email: OutgoingEmail) -> str: ...


class BulkTransport(Transport, Protocol):
    """A transport that also sends one mailout to several recipients per call
    (SES's SendBulkEmail). Raises SendError when the call fails as a whole;
    otherwise one result per recipient, in order."""

    def send_bulk(self, content: BulkContent, recipients: list[BulkRecipient]) -> list[BulkResult]: ...


def can_send_bulk(transport: Transport) -> bool:
    """Whether the transport is a BulkTransport (the outbox is not)."""
    return hasattr(transport, "send_bulk")
