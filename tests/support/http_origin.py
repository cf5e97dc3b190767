"""A web server on 127.0.0.1 that answers what a test tells it to, for code that downloads from URLs.

Each path answers a `Reply`: its status, headers and body, and how the body
is framed (a Content-Length, which may lie; chunked; or none, the end of
the body being the end of the connection). Paths not listed answer 404.
Every request is recorded. The server runs in a thread of its own until
the `with` block ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.http_server import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # The body is sent this many times over: a large answer without holding it.
    repeat: int = 1
    # "length": a Content-Length header (`content_length`, else the body's true
    # length); "chunked": Transfer-Encoding: chunked; "close": neither, the
    # connection's end ends the body.
    framing: str = "length"
    content_length: int | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


class HttpOrigin(LoopbackServer):
    """`with HttpOrigin({"/a.png": Reply(...)}) as origin: origin.url + "/a.png"`."""

    thread_name = "http-origin"

    def __init__(self, routes: dict[str, Reply] | None = None):
        self.routes = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(origin: HttpOrigin):
    class Handler(QuietHandler):
        def do_GET(self):
            self._answer(send_body=True)

        def do_HEAD(self):
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            origin.record(Request(self.command, self.path, dict(self.headers.items())))
            reply = origin.routes.get(self.path.split("?", 1)[0]) or Reply(404, {"Content-Type": "text/plain"}, b"no")
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.framing == "length":
                length = reply.content_length
                self.send_header("Content-Length", str(len(reply.body) * reply.repeat if length is None else length))
            elif reply.framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if send_body:
                self._write_body(reply)

        def _write_body(self, reply: Reply) -> None:
            for _ in range(reply.repeat):
                if reply.framing == "chunked":
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(reply.body), reply.body))
                else:
                    self.wfile.write(reply.body)
            if reply.framing == "chunked":
                self.wfile.write(b"0\r\n\r\n")
            if reply.framing == "length" and reply.content_length not in (None, len(reply.body) * reply.repeat):
                # A lying length: the connection cannot be reused.
                self.close_connection = True

    return Handler
