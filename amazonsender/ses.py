"""Transports: Amazon SES (v2 API) and a local outbox, both implementing transport.Transport.

Each turns what went wrong into a `SendError` whose `ErrorKind`
(transport.py) tells the sender what to do next: SES's error codes, the
statuses of a SendBulkEmail answer and botocore's exceptions are classified
here, and nowhere else.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.parsers import ResponseParserError
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from . import metrics
from .addresses import bare_address as address_only
from .addresses import mailbox_of
from .message import OutgoingEmail
from .template import BulkContent, BulkRecipient
from .transport import BulkResult, ErrorKind, SendError, Transport  # noqa: F401 - SendError, BulkResult: the API here too

log = logging.getLogger(__name__)

# The kinds under their short names, as the tests and the sender import them.
RECIPIENT = ErrorKind.RECIPIENT
ACCOUNT = ErrorKind.ACCOUNT
THROTTLED = ErrorKind.THROTTLED
TRANSIENT = ErrorKind.TRANSIENT
IN_DOUBT = ErrorKind.IN_DOUBT

ACCOUNT_ERROR_CODES = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "ConfigurationSetDoesNotExistException",
    "ConfigurationSetDoesNotExist",
    "ConfigurationSetSendingPausedException",
    "AccountSendingPausedException",
    # SES v2 SendEmail's answer for a configuration set or identity that does
    # not exist: no email of the mailout can go.
    "NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
}
# Credentials that may not call this operation: for SendBulkEmail, the sender
# goes back to one SendEmail per recipient.
ACCESS_DENIED_CODES = {"AccessDeniedException", "AccessDenied"}
THROTTLING_ERROR_CODES = {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}


@dataclass(frozen=True)
class AccountLimits:
    sending_enabled: bool
    max_24_hour_send: float  # negative: unlimited
    sent_last_24_hours: float
    max_send_rate: float


def names_unverified_sender(message: str, from_address: str) -> bool:
    """A rejection that says our sender identity is not verified: no email
    of the mailout can go, so it is account-wide, not this recipient's."""
    return "not verified" in message.lower() and from_address.lower() in message.lower()


def classify_client_error(error: ClientError, from_address: str) -> SendError:
    info = error.response.get("Error", {})
    code = info.get("Code", "")
    message = info.get("Message", "") or str(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    text = f"{code}: {message}"
    if code in THROTTLING_ERROR_CODES or status == 429 or "maximum sending rate exceeded" in message.lower():
        return SendError(text, kind=THROTTLED, code=code)
    if code in ACCOUNT_ERROR_CODES:
        return SendError(text, kind=ACCOUNT, code=code)
    if code == "MessageRejected" and names_unverified_sender(message, from_address):
        return SendError(text, kind=ACCOUNT, code=code)
    if status >= 500:
        return SendError(text, kind=TRANSIENT, code=code)
    return SendError(text, kind=RECIPIENT, code=code)


# SendBulkEmail answers each entry with one of these statuses.
BULK_STATUS_KINDS = {
    "MESSAGE_REJECTED": RECIPIENT,
    "INVALID_PARAMETER": RECIPIENT,
    "ACCOUNT_THROTTLED": THROTTLED,
    "TRANSIENT_FAILURE": TRANSIENT,
    # "an unknown error": SES answered, so the email was not sent.
    "FAILED": TRANSIENT,
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": ACCOUNT,
    "CONFIGURATION_SET_NOT_FOUND": ACCOUNT,
    "TEMPLATE_NOT_FOUND": ACCOUNT,
    "ACCOUNT_SUSPENDED": ACCOUNT,
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": ACCOUNT,
    "INVALID_SENDING_POOL_NAME": ACCOUNT,
    "ACCOUNT_SENDING_PAUSED": ACCOUNT,
    "CONFIGURATION_SET_SENDING_PAUSED": ACCOUNT,
}


def bulk_result(answer: dict | None, from_address: str) -> BulkResult:
    if not answer:
        # SES took the call but said nothing about this entry.
        return BulkResult(error=SendError("SES gave no result for this recipient", kind=IN_DOUBT))
    status = answer.get("Status") or ""
    if status == "SUCCESS":
        if answer.get("MessageId"):
            return BulkResult(message_id=answer["MessageId"])
        return BulkResult(error=SendError("SES answered SUCCESS without a message id", kind=IN_DOUBT))
    text = f"{status}: {answer.get('Error') or 'no detail'}"
    kind = BULK_STATUS_KINDS.get(status, TRANSIENT)
    if status == "MESSAGE_REJECTED" and names_unverified_sender(text, from_address):
        kind = ACCOUNT
    return BulkResult(error=SendError(text, kind=kind))


class SesTransport:
    """Amazon SES v2: SendEmail and SendBulkEmail (a transport.BulkTransport),
    and the account's limits for the preflight check."""

    def __init__(
        self, client, *, from_address: str, configuration_set: str | None = None, reply_to: str | None = None
    ):
        self.client = client
        # FromEmailAddress and ReplyToAddresses as SES takes them on both
        # APIs: 7-bit ASCII, a non-ASCII display name as RFC 2047 encoded words.
        self.from_mailbox = mailbox_of(from_address)
        self.reply_to_mailbox = mailbox_of(reply_to) if reply_to else None
        self.from_address = from_address
        self.configuration_set = configuration_set
        # Only SendBulkEmail takes it here; a raw message carries its own.
        self.reply_to = reply_to

    @classmethod
    def from_settings(cls, settings) -> SesTransport:
        # No endpoint is given here, so boto3's standard AWS_ENDPOINT_URL and
        # AWS_ENDPOINT_URL_SESV2 variables (LocalStack, moto server) apply.
        # botocore's own retries are off: it would retry a read timeout, when
        # SES may already have accepted the email. The sender's policy
        # decides what is retried.
        config = Config(
            connect_timeout=5,
            read_timeout=20,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=32,
        )
        client = boto3.session.Session().client("sesv2", region_name=settings.aws_region, config=config)
        return cls(
            client,
            from_address=settings.ses_from_email,
            configuration_set=settings.ses_configuration_set,
            reply_to=settings.ses_reply_to,
        )

    def send(self, email: OutgoingEmail) -> str:
        request = {
            "FromEmailAddress": self.from_mailbox,
            "Destination": {"ToAddresses": [email.to_address]},
            "Content": {"Raw": {"Data": email.raw}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in email.tags.items()],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        response = self._call("SendEmail", self.client.send_email, request)
        return response["MessageId"]

    def send_bulk(self, content: BulkContent, recipients: list[BulkRecipient]) -> list[BulkResult]:
        """One SendBulkEmail call: the mailout as an inline template, each
        recipient with its own token and List-Unsubscribe header. Raises
        SendError when SES refuses the call as a whole; otherwise one result
        per recipient, in order."""
        request = {
            "FromEmailAddress": self.from_mailbox,
            "DefaultEmailTags": [{"Name": name, "Value": value} for name, value in content.tags.items()],
            "DefaultContent": {
                "Template": {
                    "TemplateContent": {"Subject": content.subject, "Html": content.html, "Text": content.text},
                    "TemplateData": "{}",
                    "Headers": [{"Name": name, "Value": value} for name, value in content.headers],
                }
            },
            "BulkEmailEntries": [
                {
                    "Destination": {"ToAddresses": [recipient.destination]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": recipient.template_data}
                    },
                    "ReplacementHeaders": [{"Name": "List-Unsubscribe", "Value": f"<{recipient.unsubscribe_url}>"}],
                }
                for recipient in recipients
            ],
        }
        if self.reply_to:
            request["ReplyToAddresses"] = [self.reply_to_mailbox]
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        response = self._call("SendBulkEmail", self.client.send_bulk_email, request)
        answers = response.get("BulkEmailEntryResults") or []
        sender = address_only(self.from_address)  # parsed once a call, not once an entry
        return [
            bulk_result(answers[index] if index < len(answers) else None, sender) for index in range(len(recipients))
        ]

    def _call(self, operation: str, method, request: dict) -> dict:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = method(**request)
            outcome = "ok"
            return response
        except ClientError as exc:
            raise classify_client_error(exc, address_only(self.from_address)) from exc
        except NoCredentialsError as exc:
            raise SendError(f"no AWS credentials: {exc}", kind=ACCOUNT) from exc
        except (ConnectTimeoutError, EndpointConnectionError) as exc:
            # The request never reached SES: safe to send again.
            raise SendError(f"could not connect to SES: {exc}", kind=TRANSIENT) from exc
        except (ReadTimeoutError, HTTPClientError) as exc:
            # The request went out and no answer came back: SES may have it.
            raise SendError(f"no answer from SES: {exc}", kind=IN_DOUBT) from exc
        except BotoConnectionError as exc:
            raise SendError(f"connection to SES failed: {exc}", kind=TRANSIENT) from exc
        except ParamValidationError as exc:
            # Refused by botocore before anything was sent: this email's data.
            raise SendError(f"invalid request for this email: {exc}", kind=RECIPIENT) from exc
        except (NoRegionError, PartialCredentialsError) as exc:
            raise SendError(f"AWS configuration: {exc}", kind=ACCOUNT) from exc
        except (BotoCoreError, ResponseParserError) as exc:
            # Anything else (an answer that could not be read, say) may come
            # after SES took the email: never send it again.
            raise SendError(f"SES call failed: {exc}", kind=IN_DOUBT) from exc
        finally:
            metrics.SES_LATENCY.labels(operation, outcome).observe(time.perf_counter() - started)

    def account_limits(self):
        """The account's quota and rate (SES v2 GetAccount), or None when the
        IAM policy does not allow ses:GetAccount (then nothing is checked)."""
        try:
            account = self.client.get_account()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AccessDenied", "AccessDeniedException"):
                log.warning("ses:GetAccount is not allowed for these credentials: quota and rate are not checked")
                return None
            raise classify_client_error(exc, address_only(self.from_address)) from exc
        except NoCredentialsError as exc:
            raise SendError(f"no AWS credentials: {exc}", kind=ACCOUNT) from exc
        except BotoCoreError as exc:
            raise SendError(f"SES call failed: {exc}", kind=TRANSIENT) from exc
        quota = account.get("SendQuota", {})
        return AccountLimits(
            sending_enabled=bool(account.get("SendingEnabled", True)),
            max_24_hour_send=float(quota.get("Max24HourSend", -1)),
            sent_last_24_hours=float(quota.get("SentLast24Hours", 0)),
            max_send_rate=float(quota.get("MaxSendRate", 0)),
        )


class OutboxTransport:
    """Writes each email as an .eml file instead of sending it (local use):
    a transport.Transport, with no bulk call and no account limits."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, email: OutgoingEmail) -> str:
        message_id = f"outbox-{uuid.uuid4()}"
        path = self.directory / f"{message_id}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(email.raw)
        tmp.rename(path)
        return message_id


def make_transport(settings) -> Transport:
    if settings.use_outbox:
        directory = Path(settings.outbox_dir).resolve()
        log.warning(
            "NO AWS CREDENTIALS: nothing is sent; every email is written as an .eml file to %s", directory
        )
        return OutboxTransport(directory)
    return SesTransport.from_settings(settings)
