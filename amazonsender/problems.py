"""What each domain error means to whoever asked: its HTTP answer (status and JSON message) and its command-line message and exit code.

One table, so that the webhook and the command line say the same thing about
the same problem. No Flask, no click: web/errors.py turns an answer into a
response, the command line into a message on stderr and an exit code.

Messages are written with the context the caller has (`mailout_id`, and
`where` for a JSON document nested too deeply); a caller that has none gets
the placeholders in DEFAULT_CONTEXT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import PoolTimeout

from .addresses import AddressError
from .config import ConfigError
from .content import ContentProblem
from .erasure import SuppressionKeyError
from .jsontext import TooDeep
from .notion.api import (
    NotionAccessError,
    NotionAuthError,
    NotionError,
    NotionNotFound,
    NotionPageTooLarge,
    NotionRequestError,
    NotionUnavailable,
)
from .sender.errors import (
    AccountCannotSend,
    DatabaseUnavailable,
    MailoutInvalid,
    MailoutNotFound,
    MailoutNotPausable,
    MailoutNotReady,
    MailoutNotResumable,
    NoSendEvents,
    NothingToResend,
    RunnerAlive,
    SesUnavailable,
)
from .sns import CertificateUnavailable, InvalidMessage, TopicNotAllowed
from .subscribers import ImportFileError
from .links import BadToken

# A message is a str.format template, given the exception as `exc` and the
# caller's context, or a function of both for the rare one that needs more.
Message = str | Callable[[Exception, Mapping[str, str]], str]

DEFAULT_CONTEXT = {"mailout_id": "ID", "where": "the request body"}
DATABASE_UNAVAILABLE = "the database is unavailable; try again in a minute"
BAD_LINK = (
    "This unsubscribe link is damaged or incomplete. Open the link from the email again, "
    "or reply to the email and we will remove you by hand."
)
# The command that makes a draft ready, as a newcomer types it.
MAKE_READY = "python -m amazonsender mailout ready {mailout_id}"


@dataclass(frozen=True)
class Answer:
    """`status` and `message` are the HTTP answer (`{"error": message}`);
    `cli` (else `message`) and `exit_code` the command line's. `fields`
    gives the JSON body's other members."""

    status: int
    message: Message
    cli: Message | None = None
    exit_code: int = 1
    fields: Callable[[Exception], dict] = field(default=lambda exc: {})


def not_ready(exc: MailoutNotReady, context: Mapping[str, str]) -> str:
    text = f"mailout {context['mailout_id']} is '{exc.status}', not 'ready'"
    if exc.status == "draft":
        # Someone new to the service wrote a mailout and called the webhook:
        # tell them the step they missed.
        text += "; make it ready first: " + MAKE_READY.format_map(context)
    return text


def not_ready_cli(exc: MailoutNotReady, context: Mapping[str, str]) -> str:
    text = f"mailout {context['mailout_id']}: {exc}"
    if exc.status == "draft":
        text += "; make it ready first: " + MAKE_READY.format_map(context)
    return text


ABOUT_THE_MAILOUT = "mailout {mailout_id}: {exc}"

ANSWERS: dict[type[Exception], Answer] = {
    # The sender's errors (sender/errors.py).
    MailoutNotFound: Answer(404, "no mailout with id {mailout_id}"),
    MailoutNotReady: Answer(409, not_ready, not_ready_cli, fields=lambda exc: {"status": exc.status}),
    MailoutInvalid: Answer(422, "{exc}", ABOUT_THE_MAILOUT),
    MailoutNotResumable: Answer(409, "{exc}", ABOUT_THE_MAILOUT, fields=lambda exc: {"status": exc.status}),
    RunnerAlive: Answer(409, "{exc}", ABOUT_THE_MAILOUT),
    # `mailout resume --resend-unconfirmed` (command line only).
    NoSendEvents: Answer(409, "{exc}", "mailout {mailout_id}: nothing resent: {exc}"),
    NothingToResend: Answer(409, "{exc}", ABOUT_THE_MAILOUT),
    MailoutNotPausable: Answer(409, "{exc}", ABOUT_THE_MAILOUT, fields=lambda exc: {"status": exc.status}),
    # The account check runs only for a 'ready' mailout, which stays so.
    AccountCannotSend: Answer(409, "{exc}", ABOUT_THE_MAILOUT, fields=lambda exc: {"status": "ready"}),
    SesUnavailable: Answer(503, "{exc}", ABOUT_THE_MAILOUT),
    DatabaseUnavailable: Answer(503, DATABASE_UNAVAILABLE, "the database is unavailable: {exc}"),
    psycopg.OperationalError: Answer(503, DATABASE_UNAVAILABLE, "the database is unavailable: {exc}"),
    PoolTimeout: Answer(503, DATABASE_UNAVAILABLE, "the database is unavailable: {exc}"),
    # What a mailout, an address or a document may hold.
    ContentProblem: Answer(422, "{exc}"),
    AddressError: Answer(400, "{exc}", exit_code=2),
    TooDeep: Answer(400, "{where} {exc}"),
    # /ses-events: Amazon SNS messages (sns.py).
    InvalidMessage: Answer(400, "invalid SNS message: {exc}"),
    TopicNotAllowed: Answer(403, "this topic is not allowed"),
    CertificateUnavailable: Answer(503, "the signing certificate cannot be fetched now; try again"),
    # The unsubscribe link (a page, not JSON: web/errors.py decides).
    BadToken: Answer(400, BAD_LINK),
    # Notion, reading a page to import or test (notion/api.py). Its message
    # says what to do and never holds the token. The token and the
    # integration's capabilities are the service's set-up, not the caller's
    # request: 502, as a gateway whose upstream refuses it.
    NotionAuthError: Answer(502, "{exc}"),
    NotionAccessError: Answer(502, "{exc}"),
    NotionNotFound: Answer(404, "{exc}"),
    NotionPageTooLarge: Answer(422, "{exc}"),
    NotionRequestError: Answer(502, "{exc}"),
    NotionUnavailable: Answer(503, "{exc}"),
    NotionError: Answer(502, "{exc}"),
    # Only the command line meets these; over HTTP they would be our fault.
    ConfigError: Answer(500, "the service is not configured: {exc}", "{exc}"),
    SuppressionKeyError: Answer(500, "{exc}", "{exc}"),
    ImportFileError: Answer(400, "{exc}"),
}


def answer_for(exc: Exception) -> Answer | None:
    """The table's answer for this exception or its nearest base class."""
    for kind in type(exc).__mro__:
        found = ANSWERS.get(kind)
        if found is not None:
            return found
    return None


def render(message: Message, exc: Exception, context: Mapping[str, str]) -> str:
    context = {**DEFAULT_CONTEXT, **{key: str(value) for key, value in context.items()}}
    if callable(message):
        return message(exc, context)
    return message.format(exc=exc, **context)


def http_answer(exc: Exception, **context) -> tuple[int, str, dict]:
    """(HTTP status, the JSON `error` message, the JSON body's other members);
    500 and a generic message for an exception the table does not know."""
    answer = answer_for(exc)
    if answer is None:
        return 500, "internal error; the service log has the details", {}
    return answer.status, render(answer.message, exc, context), answer.fields(exc)


def cli_message(exc: Exception, **context) -> tuple[str, int]:
    """(the message for stderr, the exit code) for the command line; the
    exception's own text and 1 for one the table does not know."""
    answer = answer_for(exc)
    if answer is None:
        return str(exc) or type(exc).__name__, 1
    return render(answer.cli or answer.message, exc, context), answer.exit_code
