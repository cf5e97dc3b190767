"""A lean SES v2 stand-in for the benchmark, run in a process of its own.

tests/support/ses_standin.py is a ThreadingHTTPServer that keeps every request it
sees (headers, body, decoded message) so that tests can look at them. That is
too heavy for 100,000 emails, and in the benchmark's own process it would
share a GIL with the bare boto3 loop it is compared with. This one speaks the
same wire format (the paths, the GetAccount answer and the error header come
from tests/support/ses_standin.py) on asyncio, keeps only what the benchmark needs
(the receive time of every email and whether its recipient was seen before),
and answers after a configurable latency without a thread per connection.

    python -m bench.standin --latency-ms 40      # prints "PORT <n>", then serves

Every accepted socket gets TCP_NODELAY (a small answer on a kept-alive
connection would otherwise wait for the client's delayed ACK) and
connections are kept alive (HTTP/1.1) until the client closes them.

Besides SendEmail (POST /v2/email/outbound-emails) and GetAccount
(GET /v2/email/account) it answers SendBulkEmail
(POST /v2/email/outbound-bulk-emails), one receive time per destination,
and these control requests from the benchmark:

- GET  /_bench/stats            {"emails", "requests", "first", "last", "duplicates", "bad"}
- GET  /_bench/stats?times=1    the same, with "times": every email's receive time
- GET  /_bench/stats?destinations=1  the same, with "destinations": {address: emails received}
- POST /_bench/reset            forget every email (not the latency, not the account)
- POST /_bench/latency?ms=N     answer N milliseconds after each request
- POST /_bench/account?max_rate=N  GetAccount's SendQuota.MaxSendRate from now on
  (the service paces at the lower of it and RATE_LIMIT_PER_SEC)

Receive times are time.monotonic() in this process, read after the whole
request has arrived; CLOCK_MONOTONIC is one clock for every process of the
machine, so the benchmark compares them with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import sys
import time
from email.utils import parseaddr
from urllib.parse import parse_qs, urlsplit

from tests.support.ses_standin import ACCOUNT_PATH, DEFAULT_ACCOUNT, ERROR_TYPE_SUFFIX, SEND_EMAIL_PATH

BULK_EMAIL_PATH = "/v2/email/outbound-bulk-emails"
# No quota and no rate that would make the service pace below its own
# RATE_LIMIT_PER_SEC (it paces at the lower of the two).
BENCH_ACCOUNT = {
    **DEFAULT_ACCOUNT,
    "SendQuota": {"Max24HourSend": 1.0e9, "MaxSendRate": 1.0e6, "SentLast24Hours": 0.0},
}
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class Recorder:
    def __init__(self, latency: float):
        self.latency = latency
        self.account = json.loads(json.dumps(BENCH_ACCOUNT))
        self.reset()

    def reset(self) -> None:
        self.times: list[float] = []
        # Every destination address (lower case) and how many emails it got.
        self.seen: dict[str, int] = {}
        self.duplicates = 0
        self.requests = 0
        self.calls = {"SendEmail": 0, "SendBulkEmail": 0}
        self.bad = 0
        self.numbers = itertools.count(1)

    def email(self, when: float, address: str | None) -> str:
        self.times.append(when)
        if address is not None:
            key = parseaddr(address)[1].lower() or address.lower()
            count = self.seen.get(key, 0)
            if count:
                self.duplicates += 1
            self.seen[key] = count + 1
        # Shaped like an SES message id, unique within this stand-in.
        return f"0100{next(self.numbers):012x}-00000000-0000-0000-0000-000000000000-000000"

    def stats(self, with_times: bool, with_destinations: bool = False) -> dict:
        answer = {
            "emails": len(self.times),
            "requests": self.requests,
            "calls": dict(self.calls),
            "first": self.times[0] if self.times else None,
            "last": self.times[-1] if self.times else None,
            "duplicates": self.duplicates,
            "bad": self.bad,
            "latency_ms": self.latency * 1000,
        }
        if with_times:
            answer["times"] = self.times
        if with_destinations:
            answer["destinations"] = self.seen
        return answer


def error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return status, {"x-amzn-ErrorType": code + ERROR_TYPE_SUFFIX}, json.dumps({"message": message}).encode()


def answer(recorder: Recorder, method: str, target: str, body: bytes, received: float) -> tuple[int, dict, bytes, bool]:
    """(status, headers, body, delayed?) for one request."""
    parts = urlsplit(target)
    path = parts.path
    if path.startswith("/_bench/"):
        query = parse_qs(parts.query)
        if path == "/_bench/stats":
            stats = recorder.stats(bool(query.get("times")), bool(query.get("destinations")))
            return 200, {}, json.dumps(stats).encode(), False
        if path == "/_bench/reset" and method == "POST":
            recorder.reset()
            return 200, {}, b"{}", False
        if path == "/_bench/latency" and method == "POST":
            recorder.latency = float(query["ms"][0]) / 1000
            return 200, {}, b"{}", False
        if path == "/_bench/account" and method == "POST":
            recorder.account["SendQuota"]["MaxSendRate"] = float(query["max_rate"][0])
            return 200, {}, json.dumps(recorder.account).encode(), False
        return (*error(404, "NotFoundException", f"no bench route {path}"), False)
    recorder.requests += 1
    if method == "GET" and path == ACCOUNT_PATH:
        return 200, {}, json.dumps(recorder.account).encode(), True
    if method != "POST" or path not in (SEND_EMAIL_PATH, BULK_EMAIL_PATH):
        return (*error(404, "NotFoundException", f"no route for {method} {path} in the SES stand-in"), True)
    try:
        request = json.loads(body)
        if path == SEND_EMAIL_PATH:
            to = request["Destination"]["ToAddresses"]
            if not request.get("FromEmailAddress") or not to or "Raw" not in request["Content"]:
                raise KeyError("FromEmailAddress")
        else:
            entries = request["BulkEmailEntries"]
            if not request.get("FromEmailAddress") or not entries:
                raise KeyError("BulkEmailEntries")
    except (ValueError, KeyError, TypeError, IndexError):
        recorder.bad += 1
        return (*error(400, "BadRequestException", "not a SendEmail request the stand-in understands"), True)
    if path == SEND_EMAIL_PATH:
        recorder.calls["SendEmail"] += 1
        message_id = recorder.email(received, to[0])
        return 200, {}, json.dumps({"MessageId": message_id}).encode(), True
    recorder.calls["SendBulkEmail"] += 1
    results = []
    for entry in entries:
        addresses = ((entry.get("Destination") or {}).get("ToAddresses")) or [None]
        results.append({"Status": "SUCCESS", "MessageId": recorder.email(received, addresses[0])})
    return 200, {}, json.dumps({"BulkEmailEntryResults": results}).encode(), True


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}


async def serve_connection(recorder: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, _version = lines[0].split(" ", 2)
            except ValueError:
                return
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                return
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body = await reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            received = time.monotonic()
            status, extra, payload, delayed = answer(recorder, method, target, body, received)
            if delayed and recorder.latency > 0:
                await asyncio.sleep(recorder.latency)
            out = [
                f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
                "Content-Type: application/json",
                f"Content-Length: {len(payload)}",
                f"x-amzn-RequestId: bench-{int(received * 1e6)}",
            ]
            out.extend(f"{name}: {value}" for name, value in extra.items())
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        return
    finally:
        writer.close()


async def main_async(latency: float, host: str, port: int) -> None:
    recorder = Recorder(latency)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(recorder, r, w), host, port, limit=MAX_HEADER_BYTES, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("the stand-in only listens on loopback")
    try:
        asyncio.run(main_async(args.latency_ms / 1000, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
