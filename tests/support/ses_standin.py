"""A local stand-in for the Amazon SES v2 API, for tests that run the service
in another process (gunicorn, the command line), where moto's in-process
mock cannot reach, and for tests of SendBulkEmail, which moto lacks.

    with SesStandIn() as ses:
        env["AWS_ENDPOINT_URL_SESV2"] = ses.url
        ...
        ses.fail_next(1, "TooManyRequestsException", 429, "Maximum sending rate exceeded.")
        ...
        assert [r.to_addresses for r in ses.sent] == [...]

It answers SendEmail (POST /v2/email/outbound-emails), SendBulkEmail
(POST /v2/email/outbound-bulk-emails) and GetAccount (GET /v2/email/account),
records every request, and can answer errors the way SES does, so that
botocore's rest-json parser turns them into a ClientError with the right code.

What tests read:
- `requests`: every request, in the order received (`Recorded`);
- `sent`: every email accepted, one record per email whichever API carried
  it: the `Recorded` SendEmail requests answered 200, and a `BulkDelivery`
  for each SendBulkEmail entry answered SUCCESS (also when the answer left
  its result out, see `bulk_short_answer`). Both have `to_addresses`,
  `header_to` (the bare addresses the email's To header names: a test can
  check that it names exactly the recipient), `message_id`, `received_at`,
  `accepted_at`, `tags`, `raw` and `message`;
- `send_requests`: every SendEmail *and* SendBulkEmail request, whatever it
  was answered (one record per HTTP request; a bulk one carries many
  emails); `send_email_requests` and `bulk_requests` are each API alone;
- `throttled`: the send requests (either API) answered 429 as a whole; an
  entry answered ACCOUNT_THROTTLED inside a 200 is in `bulk_entry_failures`;
- `rendering_failures`: bulk entries SES accepted but could not render (a
  template variable with no value): answered SUCCESS, never delivered, and
  so not in `sent`; SES reports each later as a Rendering Failure event,
  which `rendering_failure_events()` writes (the SNS Message text, as SES
  publishes it through a configuration set), as `bounce_event(email)` and
  `complaint_event(email)` write a Bounce or a Complaint for an email of
  `sent`, for a test to sign (tests/support/sns_signing.py) and POST to the
  service (the events are written in tests/support/ses_events.py).

As strict as SES, or stricter (tests/support/ses_standin_checks.py has every rule
and the page of AWS's documentation it comes from): a send request is
answered 400 BadRequestException, as a whole, when its JSON body departs
from botocore's sesv2 model of the operation's input (an unknown member, a
missing required one, a wrong type, a length, an enum or a pattern; blobs
decoded from base64 first), when FromEmailAddress, ReplyToAddresses or a
Destination address is not 7-bit ASCII (SES has no SMTPUTF8: a display name
must be RFC 2047 encoded words, a domain punycode, a local part ASCII) or not
exactly one mailbox, when a message tag is not letters, digits, "_" and "-",
or a header is not printable ASCII. SendEmail takes Content.Raw only, with
FromEmailAddress and Destination.ToAddresses, and refuses a raw message
without a blank line after its header section, whose header section is not
7-bit ASCII or holds a line that is not a field, with a line (anywhere)
over 998 characters without its CR LF, without a From header, with a field
SES allows once given twice, or with a From, Sender, Reply-To, To, Cc or
Bcc header whose addresses do not parse (email.policy.default).

A SendBulkEmail request is a template (DefaultContent.Template.TemplateContent
with Subject, Html and/or Text, TemplateData, Headers) and 1 to 50
BulkEmailEntries, each with a Destination, ReplacementTemplateData,
ReplacementTags and ReplacementHeaders. Each accepted entry's email is
rendered (tests/support/ses_render.py) as SES would send it: From, To (the destination as given),
Subject, Reply-To, Date, Message-ID, the template's Headers with the entry's
ReplacementHeaders replacing those of the same name, and a text/plain and a
text/html alternative. With an inline template "Amazon SES supports only
simple substitutions" (the SES v2 reference, Template.TemplateContent), so
the templates get only that: `{{name}}` (spaces allowed inside) is the
value from ReplacementTemplateData merged over TemplateData, HTML-escaped
in the Html part as Handlebars escapes it (the docs do not say; the
stand-in keeps the escaping) and as it is in Subject and Text. `{{{name}}}`
is no raw insert: it renders as "{", the value, "}" (a link written with
triple braces keeps them, as it may with SES). A name with no value, or any
other "{{" (a block, a comment, a dotted name), is a rendering failure; a
"}}" of the text's own stays as it is. A bulk request is also refused as a
whole for no FromEmailAddress, no inline TemplateContent (there are no stored
templates here) or no Subject, a template over 500 KB, 0 or more than 50
entries, an entry without Destination.ToAddresses, a header value with a
line break, TemplateData or ReplacementTemplateData that is not a JSON object.

Faults, as SES answers them. "An email" is a SendEmail request or one bulk
entry, so the counts mean the same for both APIs:
- `fail_next(n, ...)`: the next `n` send requests (either API) are answered
  with this error as a whole;
- `fail_address(address, ..., times=None)`: a SendEmail to `address` gets the
  error; a bulk entry to it gets the entry Status the code maps to
  (MessageRejected: MESSAGE_REJECTED; TooManyRequestsException or 429:
  ACCOUNT_THROTTLED; any 5xx: TRANSIENT_FAILURE; SendingPausedException,
  AccountSendingPausedException: ACCOUNT_SENDING_PAUSED;
  MailFromDomainNotVerifiedException: MAIL_FROM_DOMAIN_NOT_VERIFIED; a bulk
  status itself, "FAILED" say, as it is; anything else: INVALID_PARAMETER)
  with the message as its Error; `times` limits it to that many answers;
- `throttle_above_per_second = N`: a send request whose emails would put
  more than N accepted emails within the last second is answered 429
  TooManyRequestsException "Maximum sending rate exceeded." as a whole, so
  no one-second window ever holds more than N accepted emails;
- `pause_sending(from_send=k)`: the k-th email and every one after it are
  refused with SendingPausedException until `resume_sending()`: a request
  whose first email is at or after k is answered 400 as a whole; a bulk
  request that reaches k part way gets ACCOUNT_SENDING_PAUSED for the
  entries from k on, and its earlier entries are sent;
- `bulk_short_answer = True` (or a number k): every SendBulkEmail answer
  leaves out the results of its entries (all, or all but the first k),
  although SES accepted and sent them: the client cannot know they went;
  `short_answer_next(n, keep=k)` does it to the next n answers only;
- `set_account(...)`: what GetAccount answers (the service paces at the lower
  of its RATE_LIMIT_PER_SEC and MaxSendRate);
- `latency`: seconds to wait before each answer (a request's `received_at`
  and `answered_at` bound its time at SES, so a test can count the calls
  in flight at once).
"""

from __future__ import annotations

import collections
import email
import email.policy
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from functools import cached_property
from http.server import BaseHTTPRequestHandler

from tests.support.http_server import LoopbackServer, QuietHandler
from tests.support.ses_events import bounce_event, complaint_event, rendering_failure_event, send_event
from tests.support.ses_render import _RenderingFailure, render_email, render_template
from tests.support.ses_standin_checks import (
    MAX_BULK_ENTRIES,
    MAX_TEMPLATE_BYTES,
    BadRequest,
    Template,
    check_bulk_request,
    check_headers,
    check_send_email,
    json_object,
)

__all__ = [  # what tests and bench/standin.py import, some from the checks module
    "ACCOUNT_PATH", "BULK_EMAIL_PATH", "DEFAULT_ACCOUNT", "ERROR_TYPE_SUFFIX", "MAX_BULK_ENTRIES",
    "MAX_TEMPLATE_BYTES", "SEND_EMAIL_PATH", "BadRequest", "BulkDelivery", "Recorded", "SesStandIn",
    "bulk_status_for", "render_template",
]  # fmt: skip

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
BULK_EMAIL_PATH = "/v2/email/outbound-bulk-emails"
SEND_PATHS = (SEND_EMAIL_PATH, BULK_EMAIL_PATH)
ACCOUNT_PATH = "/v2/email/account"
# botocore's RestJSONParser reads the error code from this header and keeps
# what comes before ':' (AWS services append a namespace URL there).
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazonaws.sesv2/"

DEFAULT_ACCOUNT = {
    "SendingEnabled": True,
    "ProductionAccessEnabled": True,
    "EnforcementStatus": "HEALTHY",
    "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
}

BULK_STATUSES = (
    "SUCCESS", "MESSAGE_REJECTED", "MAIL_FROM_DOMAIN_NOT_VERIFIED", "CONFIGURATION_SET_NOT_FOUND",
    "TEMPLATE_NOT_FOUND", "ACCOUNT_SUSPENDED", "ACCOUNT_THROTTLED", "ACCOUNT_DAILY_QUOTA_EXCEEDED",
    "INVALID_SENDING_POOL_NAME", "ACCOUNT_SENDING_PAUSED", "CONFIGURATION_SET_SENDING_PAUSED",
    "INVALID_PARAMETER", "TRANSIENT_FAILURE", "FAILED",
)  # fmt: skip


@dataclass
class Recorded:
    """One request as the stand-in saw it, and how it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None  # the parsed JSON body, if any
    received_at: float  # time.monotonic() when the request was read
    status: int = 0  # the HTTP status answered
    message_id: str | None = None  # for a SendEmail answered 200
    raw: bytes | None = None  # SendEmail: the decoded Content.Raw.Data
    # SendEmail: the bare addresses the raw message's To header names, so a
    # test can check that the header names exactly the recipient.
    header_to: list[str] = field(default_factory=list)
    received_time: float = 0.0  # time.time() when the request was read (for event timestamps)
    error_code: str | None = None
    accepted_at: float | None = None  # answered 200: time.monotonic() of the decision
    answered_at: float | None = None  # time.monotonic() once `latency` is over and the answer goes back
    answer: dict | None = None  # the JSON body answered
    # SendBulkEmail: every entry's result as SES decided it (also those the
    # answer left out), and the emails it accepted.
    entry_results: list[dict] = field(default_factory=list)
    deliveries: list[BulkDelivery] = field(default_factory=list, repr=False)
    rendering_failures: list[BulkDelivery] = field(default_factory=list, repr=False)

    @property
    def route(self) -> str:
        return self.path.split("?")[0]

    @property
    def is_send(self) -> bool:
        """A SendEmail or a SendBulkEmail request."""
        return self.method == "POST" and self.route in SEND_PATHS

    @property
    def is_send_email(self) -> bool:
        return self.method == "POST" and self.route == SEND_EMAIL_PATH

    @property
    def is_bulk(self) -> bool:
        return self.method == "POST" and self.route == BULK_EMAIL_PATH

    @property
    def to_addresses(self) -> list[str]:
        """SendEmail: Destination.ToAddresses as given. SendBulkEmail: the
        bare address of each entry's destinations, in order."""
        if self.is_bulk:
            return [address for entry in _entries(self.body) for address in _bare_addresses(entry)]
        return list(((self.body or {}).get("Destination") or {}).get("ToAddresses") or [])

    @property
    def message(self) -> EmailMessage | None:
        if self.raw is None:
            return None
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def tags(self) -> dict[str, str]:
        """SendEmail: EmailTags. SendBulkEmail: DefaultEmailTags."""
        key = "DefaultEmailTags" if self.is_bulk else "EmailTags"
        return _tags((self.body or {}).get(key))


@dataclass
class BulkDelivery:
    """One SendBulkEmail entry SES accepted: the email it sends, rendered."""

    request: Recorded = field(repr=False)
    index: int  # the entry's place in the request
    destination: str  # Destination.ToAddresses[0] as given
    to_addresses: list[str]  # the bare addresses of the entry's ToAddresses
    message_id: str
    received_at: float
    accepted_at: float
    tags: dict[str, str]  # DefaultEmailTags, with the entry's ReplacementTags over them
    subject: str
    html: str | None
    text: str | None
    email_headers: list[tuple[str, str]]  # the Headers / ReplacementHeaders it carries
    rendering_error: str | None = None
    date: str = ""
    status: int = 200
    error_code: str | None = None

    method = "POST"
    path = BULK_EMAIL_PATH
    is_send = True
    is_send_email = False
    is_bulk = True

    @property
    def body(self) -> dict | None:
        """The whole SendBulkEmail request."""
        return self.request.body

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers of the request (as Recorded.headers)."""
        return self.request.headers

    @property
    def entry(self) -> dict:
        return _entries(self.request.body)[self.index]

    @property
    def header_to(self) -> list[str]:
        """The bare addresses the To header names: the entry's ToAddresses,
        as the stand-in renders them (Recorded.header_to's twin)."""
        return self.to_addresses

    @property
    def received_time(self) -> float:
        return self.request.received_time

    @cached_property
    def raw(self) -> bytes:
        return render_email(self, _destinations(self.entry))

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass(eq=False)  # compared by identity: two alike are two failures
class _Failure:
    code: str
    status: int
    message: str
    remaining: int | None = None  # None: for every matching request
    address: str | None = None  # None: whatever the recipient


THROTTLE_CODE = "TooManyRequestsException"
THROTTLE_MESSAGE = "Maximum sending rate exceeded."
PAUSED_CODE = "SendingPausedException"
PAUSED_MESSAGE = "Email sending is disabled for your entire Amazon SES account."


def bulk_status_for(code: str, status: int) -> str:
    """The SendBulkEmail entry Status for an error SendEmail would answer."""
    if code in BULK_STATUSES:
        return code
    if code == "MessageRejected":
        return "MESSAGE_REJECTED"
    if code in ("TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException") or (
        status == 429
    ):
        return "ACCOUNT_THROTTLED"
    if status >= 500:
        return "TRANSIENT_FAILURE"
    if code in ("SendingPausedException", "AccountSendingPausedException"):
        return "ACCOUNT_SENDING_PAUSED"
    if code == "MailFromDomainNotVerifiedException":
        return "MAIL_FROM_DOMAIN_NOT_VERIFIED"
    return "INVALID_PARAMETER"


@dataclass
class SesStandIn(LoopbackServer):
    thread_name = "ses-standin"
    latency: float = 0.0  # seconds to wait before each answer
    account: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_ACCOUNT)))
    # Answer 429 to a send request whose emails would put more than this
    # many accepted in the last second.
    throttle_above_per_second: int | None = None
    # Leave the entries' results out of every SendBulkEmail answer: True for
    # all of them, a number k for all but the first k.
    bulk_short_answer: bool | int = False

    def __post_init__(self):
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._failures: list[_Failure] = []
        self._numbers = itertools.count(1)
        self._emails = 0  # emails of well-formed send requests so far
        self._paused_from: int | None = None
        self._paused_answer: tuple[str, str] = (PAUSED_CODE, PAUSED_MESSAGE)
        self._accepted_at: collections.deque[float] = collections.deque()
        self._short_answers: list[list[int]] = []  # [[answers left, results kept]]

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def client_env(self) -> dict[str, str]:
        """Environment variables that point a boto3 process at this stand-in
        with fake credentials (and no way to find real ones)."""
        return {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "standin-access-key",
            "AWS_SECRET_ACCESS_KEY": "standin-secret-key",
            "AWS_ENDPOINT_URL_SESV2": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- what tests ask for -------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, in the order received (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[Recorded | BulkDelivery]:
        """Every email accepted, one record per email, in the order received:
        the SendEmail requests answered with a message id, and the accepted
        (and rendered) entries of the SendBulkEmail requests."""
        emails: list[Recorded | BulkDelivery] = []
        for record in self.requests:
            if record.is_send_email and record.status == 200:
                emails.append(record)
            elif record.is_bulk:
                emails.extend(record.deliveries)
        return emails

    @property
    def send_requests(self) -> list[Recorded]:
        """Every SendEmail and SendBulkEmail request, whatever it was answered."""
        return [r for r in self.requests if r.is_send]

    @property
    def send_email_requests(self) -> list[Recorded]:
        """Every SendEmail request, whatever it was answered."""
        return [r for r in self.requests if r.is_send_email]

    @property
    def bulk_requests(self) -> list[Recorded]:
        """Every SendBulkEmail request, whatever it was answered."""
        return [r for r in self.requests if r.is_bulk]

    @property
    def throttled(self) -> list[Recorded]:
        """The send requests (either API) answered 429 as a whole."""
        return [r for r in self.send_requests if r.status == 429]

    @property
    def bulk_entry_failures(self) -> list[tuple[Recorded, int, dict]]:
        """(request, entry index, result) of every bulk entry answered
        something other than SUCCESS inside a 200."""
        return [
            (record, index, result)
            for record in self.bulk_requests
            if record.status == 200
            for index, result in enumerate(record.entry_results)
            if result["Status"] != "SUCCESS"
        ]

    @property
    def rendering_failures(self) -> list[BulkDelivery]:
        return [failure for record in self.bulk_requests for failure in record.rendering_failures]

    # -- the events SES publishes -------------------------------------------

    def rendering_failure_events(self) -> list[str]:
        """For each of `rendering_failures`, the event SES publishes about it
        through a configuration set's SNS destination: the JSON text of the
        SNS Message (what SnsSigner.envelope takes)."""
        return [json.dumps(rendering_failure_event(failure)) for failure in self.rendering_failures]

    def send_event(self, email: Recorded | BulkDelivery) -> str:
        """The Send event SES publishes for an email of `sent` once it has
        accepted it, as SNS Message text."""
        return json.dumps(send_event(email))

    def bounce_event(
        self, email: Recorded | BulkDelivery, *, address: str | None = None, bounce_type: str = "Permanent",
        bounce_sub_type: str = "General",
    ) -> str:
        """The Bounce event SES would publish for an email of `sent` (to
        `address`, or to all its recipients), as SNS Message text."""
        return json.dumps(bounce_event(email, address, bounce_type, bounce_sub_type))

    def complaint_event(
        self, email: Recorded | BulkDelivery, *, address: str | None = None, feedback_type: str = "abuse"
    ) -> str:
        """The Complaint event SES would publish for an email of `sent`, as SNS Message text."""
        return json.dumps(complaint_event(email, address, feedback_type))

    def fail_next(
        self, n: int = 1, code: str = "TooManyRequestsException", status: int = 429,
        message: str = "Maximum sending rate exceeded.",
    ) -> None:
        """Answer the next `n` send requests (SendEmail or SendBulkEmail) with
        this error."""
        with self._lock:
            self._failures.append(_Failure(code, status, message, remaining=n))

    def fail_address(
        self, address: str, code: str = "MessageRejected", status: int = 400,
        message: str = "Email address is not verified.", *, times: int | None = None,
    ) -> None:
        """Answer every SendEmail to `address` with this error, and give every
        bulk entry to it the Status the code maps to (see the module's
        docstring); only the next `times` of them when given."""
        with self._lock:
            self._failures.append(_Failure(code, status, message, remaining=times, address=address.lower()))

    def clear_failures(self) -> None:
        """Forget `fail_next` and `fail_address`, and resume sending."""
        with self._lock:
            self._failures.clear()
            self._paused_from = None

    def pause_sending(self, from_send: int = 1, code: str = PAUSED_CODE, message: str = PAUSED_MESSAGE) -> None:
        """Refuse the `from_send`-th email (counting every email of every
        well-formed send request from the stand-in's start, 1 is the first)
        and every later one with this account-wide error, until
        `resume_sending()`: HTTP 400 for a request whose first email is at
        or after it, ACCOUNT_SENDING_PAUSED for the entries of a bulk request
        from it on."""
        with self._lock:
            self._paused_from = from_send
            self._paused_answer = (code, message)

    def resume_sending(self) -> None:
        with self._lock:
            self._paused_from = None

    def short_answer_next(self, n: int = 1, keep: int = 0) -> None:
        """The next `n` SendBulkEmail answers give only the results of their
        first `keep` entries; every entry is processed (and sent) as usual."""
        with self._lock:
            self._short_answers.append([n, keep])

    def set_account(
        self,
        *,
        max_send_rate: float | None = None,
        max_24_hour_send: float | None = None,
        sent_last_24_hours: float | None = None,
        sending_enabled: bool | None = None,
    ) -> None:
        """Change what GetAccount answers; what is not given stays."""
        with self._lock:
            quota = self.account.setdefault("SendQuota", {})
            if max_send_rate is not None:
                quota["MaxSendRate"] = float(max_send_rate)
            if max_24_hour_send is not None:
                quota["Max24HourSend"] = float(max_24_hour_send)
            if sent_last_24_hours is not None:
                quota["SentLast24Hours"] = float(sent_last_24_hours)
            if sending_enabled is not None:
                self.account["SendingEnabled"] = bool(sending_enabled)

    # -- the server side ----------------------------------------------------

    def _take_failure(self, record: Recorded) -> _Failure | None:
        addresses = {a.lower() for a in record.to_addresses}
        with self._lock:
            for failure in self._failures:
                if failure.address is not None and failure.address not in addresses:
                    continue
                self._use(failure)
                return failure
        return None

    def _take_call_failure(self) -> _Failure | None:
        """The first fail_next still pending (a bulk request's whole-call error)."""
        with self._lock:
            for failure in self._failures:
                if failure.address is None:
                    self._use(failure)
                    return failure
        return None

    def _address_failure(self, addresses: list[str], used: list[_Failure]) -> _Failure | None:
        """The fail_address for one of these addresses, counting the uses
        `used` already takes from it (not yet used up). Lock held."""
        wanted = {a.lower() for a in addresses}
        for failure in self._failures:
            if failure.address is None or failure.address not in wanted:
                continue
            if failure.remaining is not None and sum(1 for u in used if u is failure) >= failure.remaining:
                continue
            return failure
        return None

    def _use(self, failure: _Failure) -> None:
        # Called with the lock held.
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0 and failure in self._failures:
                self._failures.remove(failure)

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self._requests.append(record)

    def _answer(self, record: Recorded) -> tuple[int, dict, dict]:
        """(status, extra headers, JSON body) for one request."""
        path = record.route
        if record.method == "GET" and path == ACCOUNT_PATH:
            with self._lock:
                return 200, {}, json.loads(json.dumps(self.account))
        if record.method == "POST" and path == BULK_EMAIL_PATH:
            return self._answer_bulk(record)
        if record.method != "POST" or path != SEND_EMAIL_PATH:
            return _error(404, "NotFoundException", f"no route for {record.method} {path} in the SES stand-in")
        try:
            record.raw, record.header_to = check_send_email(record.body)
        except BadRequest as exc:
            return _error(400, "BadRequestException", str(exc))
        with self._lock:
            self._emails += 1
            number = self._emails
        failure = self._take_failure(record)
        if failure is not None:
            return _error(failure.status, failure.code, failure.message)
        with self._lock:
            if self._paused_from is not None and number >= self._paused_from:
                return _error(400, *self._paused_answer)
            if self.throttle_above_per_second is not None:
                # A sliding window: the accepted emails of the last second.
                now = time.monotonic()
                self._forget_before(now - 1.0)
                if len(self._accepted_at) >= self.throttle_above_per_second:
                    return _error(429, THROTTLE_CODE, THROTTLE_MESSAGE)
                self._accepted_at.append(now)
            record.accepted_at = time.monotonic()
            record.message_id = self._new_message_id()
        return 200, {}, {"MessageId": record.message_id}

    def _forget_before(self, moment: float) -> None:
        while self._accepted_at and self._accepted_at[0] <= moment:
            self._accepted_at.popleft()

    def _new_message_id(self) -> str:
        # Shaped like a real SES message id; unique per stand-in. Lock held.
        return f"0100{next(self._numbers):012x}-{uuid.uuid4()}-000000"

    def _answer_bulk(self, record: Recorded) -> tuple[int, dict, dict]:
        try:
            template, entries = check_bulk_request(record.body)
        except BadRequest as exc:
            return _error(400, "BadRequestException", str(exc))
        body = record.body
        with self._lock:
            first = self._emails + 1
            self._emails += len(entries)
        failure = self._take_call_failure()
        if failure is not None:
            return _error(failure.status, failure.code, failure.message)
        with self._lock:
            paused_from, paused_answer = self._paused_from, self._paused_answer
        if paused_from is not None and first >= paused_from:
            return _error(400, *paused_answer)

        # Each entry's fate, then the rate, in one step: an entry refused on
        # its own is not accepted and does not count against the rate, and
        # a call refused for the rate uses up no fail_address(times=...).
        default_tags = _tags(body.get("DefaultEmailTags"))
        date = formatdate(usegmt=True)
        with self._lock:
            results: list[dict | None] = []
            used: list[_Failure] = []
            for number, entry in enumerate(entries, start=first):
                if paused_from is not None and number >= paused_from:
                    results.append({"Status": "ACCOUNT_SENDING_PAUSED", "Error": paused_answer[1]})
                    continue
                failure = self._address_failure(_bare_addresses(entry), used)
                if failure is not None:
                    used.append(failure)
                    results.append({"Status": bulk_status_for(failure.code, failure.status), "Error": failure.message})
                    continue
                results.append(None)  # accepted, if the rate allows
            accepting = sum(1 for result in results if result is None)
            now = time.monotonic()
            if self.throttle_above_per_second is not None and accepting:
                self._forget_before(now - 1.0)
                if len(self._accepted_at) + accepting > self.throttle_above_per_second:
                    return _error(429, THROTTLE_CODE, THROTTLE_MESSAGE)
                self._accepted_at.extend([now] * accepting)
            for failure in used:
                self._use(failure)
            record.accepted_at = now
            message_ids = {index: self._new_message_id() for index, r in enumerate(results) if r is None}
            keep = self._short_answer_keep()
        for index, entry in enumerate(entries):
            if results[index] is not None:
                continue
            delivery = _delivery(record, index, entry, template, default_tags, message_ids[index], now, date)
            (record.rendering_failures if delivery.rendering_error else record.deliveries).append(delivery)
            results[index] = {"Status": "SUCCESS", "MessageId": message_ids[index]}
        record.entry_results = results
        answered = results if keep is None else results[:keep]
        return 200, {}, {"BulkEmailEntryResults": answered}

    def _short_answer_keep(self) -> int | None:
        """How many results this answer gives (None: all). Lock held."""
        if self._short_answers:
            pending = self._short_answers[0]
            pending[0] -= 1
            if pending[0] <= 0:
                self._short_answers.pop(0)
            return pending[1]
        short = self.bulk_short_answer
        if short is True:
            return 0
        if short is False or short is None:
            return None
        return int(short)


# -- SES events: the documents SES publishes to SNS through a configuration set --
#
# Field for field as "Contents of event data that Amazon SES publishes to
# Amazon SNS" (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html)
# describes them and "Examples of event data that Amazon SES publishes to
# Amazon SNS" (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html)
# shows them: "Rendering Failure record", "Bounce record", "Complaint record".

def _error(status: int, code: str, message: str) -> tuple[int, dict, dict]:
    return status, {"x-amzn-ErrorType": code + ERROR_TYPE_SUFFIX}, {"message": message}


# -- SendBulkEmail: the request, the template, the email ------------------------


def _entries(body) -> list[dict]:
    entries = (body or {}).get("BulkEmailEntries") if isinstance(body, dict) else None
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def _destinations(entry: dict) -> list[str]:
    return list(((entry.get("Destination") or {}).get("ToAddresses")) or [])


def _bare_addresses(entry: dict) -> list[str]:
    return [address for _, address in getaddresses(_destinations(entry))]


def _tags(tags) -> dict[str, str]:
    return {tag["Name"]: tag["Value"] for tag in tags or [] if isinstance(tag, dict) and "Name" in tag}


def _delivery(
    record: Recorded, index: int, entry: dict, template: Template, default_tags: dict, message_id: str,
    accepted_at: float, date: str,
) -> BulkDelivery:
    replacement = ((entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate")) or {}
    data = {**template.data, **json_object(replacement.get("ReplacementTemplateData"), "ReplacementTemplateData")}
    # An entry's header replaces the template's header of the same name.
    replacement_headers = check_headers(entry.get("ReplacementHeaders"), "ReplacementHeaders")
    replaced = {name.lower() for name, _ in replacement_headers}
    headers = [(n, v) for n, v in template.headers if n.lower() not in replaced] + replacement_headers
    subject = html_part = text_part = ""
    error = None
    try:
        subject = render_template(template.subject, data, escape_html=False)
        html_part = render_template(template.html, data, escape_html=True) if template.html else None
        text_part = render_template(template.text, data, escape_html=False) if template.text else None
    except _RenderingFailure as exc:
        error = str(exc)
    return BulkDelivery(
        request=record,
        index=index,
        destination=_destinations(entry)[0],
        to_addresses=_bare_addresses(entry),
        message_id=message_id,
        received_at=record.received_at,
        accepted_at=accepted_at,
        tags={**default_tags, **_tags(entry.get("ReplacementTags"))},
        subject=subject,
        html=html_part,
        text=text_part,
        email_headers=headers,
        rendering_error=error,
        date=date,
    )


def _handler_for(standin: SesStandIn):
    class Handler(QuietHandler):
        def do_GET(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def _handle(self):
            data = self.read_body()
            try:
                body = json.loads(data) if data else None
            except ValueError:
                body = None
            record = Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                received_at=time.monotonic(),
                received_time=time.time(),
            )
            status, headers, answer = standin._answer(record)
            record.status = status
            record.answer = answer
            record.error_code = headers.get("x-amzn-ErrorType", "").split(":")[0] or None
            standin._record(record)
            if standin.latency:
                time.sleep(standin.latency)
            record.answered_at = time.monotonic()
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
