"""A local stand-in for the Amazon SES v2 API, for tests that run the service
in another process (gunicorn, the command line), where moto's in-process
mock cannot reach.

    with SesStandIn() as ses:
        env["AWS_ENDPOINT_URL_SESV2"] = ses.url
        ...
        ses.fail_next(1, "TooManyRequestsException", 429, "Maximum sending rate exceeded.")
        ...
        assert [r.to_addresses for r in ses.sent] == [...]

Faults, as SES answers them:
- `fail_next(n, ...)`, `fail_address(address, ...)`: any error code and status;
- `throttle_above_per_second = N`: a SendEmail beyond N accepted in the last
  second is answered 429 TooManyRequestsException "Maximum sending rate
  exceeded.", so no one-second window ever holds more than N accepted sends;
- `pause_sending(from_send=k)`: the k-th SendEmail request and every one after
  it are answered 400 SendingPausedException until `resume_sending()`;
- `set_account(...)`: what GetAccount answers (the service paces at the lower
  of its RATE_LIMIT_PER_SEC and MaxSendRate);
- `latency`: seconds to wait before each answer.

It answers SendEmail (POST /v2/email/outbound-emails) and GetAccount
(GET /v2/email/account), records every request, and can answer errors the way
SES does, so that botocore's rest-json parser turns them into a ClientError
with the right code.
"""

from __future__ import annotations

import base64
import binascii
import collections
import email
import email.policy
import itertools
import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
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
    error_code: str | None = None
    accepted_at: float | None = None  # SendEmail answered 200: time.monotonic() of the decision

    @property
    def is_send(self) -> bool:
        return self.method == "POST" and self.path.split("?")[0] == SEND_EMAIL_PATH

    @property
    def to_addresses(self) -> list[str]:
        return list(((self.body or {}).get("Destination") or {}).get("ToAddresses") or [])

    @property
    def message(self) -> EmailMessage | None:
        if self.raw is None:
            return None
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def tags(self) -> dict[str, str]:
        return {tag["Name"]: tag["Value"] for tag in (self.body or {}).get("EmailTags") or []}


@dataclass
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


@dataclass
class SesStandIn:
    latency: float = 0.0  # seconds to wait before each answer
    account: dict = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_ACCOUNT)))
    # Answer 429 to a SendEmail beyond this many accepted in the last second.
    throttle_above_per_second: int | None = None

    def __post_init__(self):
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._failures: list[_Failure] = []
        self._numbers = itertools.count(1)
        self._send_requests = 0  # well-formed SendEmail requests so far
        self._paused_from: int | None = None
        self._paused_answer: tuple[str, str] = (PAUSED_CODE, PAUSED_MESSAGE)
        self._accepted_at: collections.deque[float] = collections.deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------

    def start(self) -> SesStandIn:
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="ses-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> SesStandIn:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
    def sent(self) -> list[Recorded]:
        """The SendEmail requests answered with a message id."""
        return [r for r in self.requests if r.is_send and r.status == 200]

    def fail_next(
        self, n: int = 1, code: str = "TooManyRequestsException", status: int = 429,
        message: str = "Maximum sending rate exceeded.",
    ) -> None:
        """Answer the next `n` SendEmail requests with this error."""
        with self._lock:
            self._failures.append(_Failure(code, status, message, remaining=n))

    def fail_address(
        self, address: str, code: str = "MessageRejected", status: int = 400,
        message: str = "Email address is not verified.",
    ) -> None:
        """Answer every SendEmail to `address` with this error."""
        with self._lock:
            self._failures.append(_Failure(code, status, message, address=address.lower()))

    def clear_failures(self) -> None:
        """Forget `fail_next` and `fail_address`, and resume sending."""
        with self._lock:
            self._failures.clear()
            self._paused_from = None

    def pause_sending(self, from_send: int = 1, code: str = PAUSED_CODE, message: str = PAUSED_MESSAGE) -> None:
        """Answer the `from_send`-th SendEmail request (counting from the
        stand-in's start, 1 is the first) and every later one with HTTP 400
        and this account-wide error, until `resume_sending()`."""
        with self._lock:
            self._paused_from = from_send
            self._paused_answer = (code, message)

    def resume_sending(self) -> None:
        with self._lock:
            self._paused_from = None

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

    @property
    def send_requests(self) -> list[Recorded]:
        """Every SendEmail request, whatever it was answered."""
        return [r for r in self.requests if r.is_send]

    @property
    def throttled(self) -> list[Recorded]:
        """The SendEmail requests answered 429."""
        return [r for r in self.send_requests if r.status == 429]

    # -- the server side ----------------------------------------------------

    def _take_failure(self, record: Recorded) -> _Failure | None:
        addresses = {a.lower() for a in record.to_addresses}
        with self._lock:
            for failure in self._failures:
                if failure.address is not None and failure.address not in addresses:
                    continue
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                return failure
        return None

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self._requests.append(record)

    def _answer(self, record: Recorded) -> tuple[int, dict, dict]:
        """(status, extra headers, JSON body) for one request."""
        path = record.path.split("?")[0]
        if record.method == "GET" and path == ACCOUNT_PATH:
            with self._lock:
                return 200, {}, json.loads(json.dumps(self.account))
        if record.method != "POST" or path != SEND_EMAIL_PATH:
            return _error(404, "NotFoundException", f"no route for {record.method} {path} in the SES stand-in")
        body = record.body
        if not isinstance(body, dict):
            return _error(400, "BadRequestException", "the request body is not a JSON object")
        try:
            record.raw = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            return _error(400, "BadRequestException", "Content.Raw.Data is missing or not base64")
        if not body.get("FromEmailAddress") or not record.to_addresses:
            return _error(400, "BadRequestException", "FromEmailAddress and Destination.ToAddresses are required")
        with self._lock:
            self._send_requests += 1
            number = self._send_requests
        failure = self._take_failure(record)
        if failure is not None:
            return _error(failure.status, failure.code, failure.message)
        with self._lock:
            if self._paused_from is not None and number >= self._paused_from:
                return _error(400, *self._paused_answer)
            if self.throttle_above_per_second is not None:
                # A sliding window: the accepted sends of the last second.
                now = time.monotonic()
                while self._accepted_at and self._accepted_at[0] <= now - 1.0:
                    self._accepted_at.popleft()
                if len(self._accepted_at) >= self.throttle_above_per_second:
                    return _error(429, THROTTLE_CODE, THROTTLE_MESSAGE)
                self._accepted_at.append(now)
            record.accepted_at = time.monotonic()
            # Shaped like a real SES message id; unique per stand-in.
            record.message_id = f"0100{next(self._numbers):012x}-{uuid.uuid4()}-000000"
        return 200, {}, {"MessageId": record.message_id}


def _error(status: int, code: str, message: str) -> tuple[int, dict, dict]:
    return status, {"x-amzn-ErrorType": code + ERROR_TYPE_SUFFIX}, {"message": message}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads wait for their client's next request; do not
    # wait for them when the stand-in stops.
    block_on_close = False

    def get_request(self):
        sock, address = super().get_request()
        # Without this, a small answer on a kept-alive connection waits for the
        # client's delayed ACK (Nagle), about 40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def handle_error(self, request, client_address):
        # A client that gave up waiting (a read timeout under `latency`) is
        # part of what tests do; its request is recorded all the same.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(standin: SesStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
        timeout = 30  # an idle kept-alive connection is closed after this

        def do_GET(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
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
            )
            status, headers, answer = standin._answer(record)
            record.status = status
            record.error_code = headers.get("x-amzn-ErrorType", "").split(":")[0] or None
            standin._record(record)
            if standin.latency:
                time.sleep(standin.latency)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
            pass

    return Handler
