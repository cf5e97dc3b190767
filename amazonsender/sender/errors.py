"""Why a mailout cannot be claimed, resumed or recorded: the sender's domain errors.

The webhook and the command line turn each into an HTTP answer or a message.
"""

from __future__ import annotations


class MailoutNotFound(Exception):
    pass


class MailoutNotReady(Exception):
    def __init__(self, status: str):
        super().__init__(f"mailout is '{status}', not 'ready'")
        self.status = status


class MailoutInvalid(Exception):
    """The mailout cannot be sent as it is (content.py says why)."""


class MailoutNotResumable(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class MailoutNotPausable(Exception):
    """Only a mailout under way ('sending', 'paused', 'failed') can be paused."""

    def __init__(self, status: str):
        hints = {"draft": "it has not started", "ready": "it has not started", "sent": "it is finished"}
        super().__init__(f"mailout is '{status}': {hints.get(status, 'nothing to pause')}")
        self.status = status


class RunnerAlive(Exception):
    """A 'sending' mailout whose runner wrote a heartbeat recently."""

    def __init__(self, age_seconds: float):
        super().__init__(
            f"the mailout is being sent by a live run (last heartbeat {age_seconds:.0f} s ago);"
            " use --force only if you are sure that run is gone"
        )
        self.age_seconds = age_seconds


class AccountCannotSend(Exception):
    """SES says this account cannot send the mailout now (disabled, or over quota)."""


class SesUnavailable(Exception):
    """SES could not be asked about the account now (try again later)."""


# Why a mailout cannot be claimed to start: what the webhook and the Notion
# press catch around claim_mailout (problems.py says how each is answered).
CANNOT_START = (MailoutNotFound, MailoutNotReady, MailoutInvalid, AccountCannotSend, SesUnavailable)


class DatabaseUnavailable(Exception):
    pass


class NoSendEvents(Exception):
    """`--resend-unconfirmed` without proof that SES publishes Send events
    for the mailout: a row with no event would say nothing."""


class NothingToResend(Exception):
    """`--resend-unconfirmed` found no in-doubt row old enough and without an SES event."""
