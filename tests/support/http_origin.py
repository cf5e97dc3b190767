"""A web server on 127.0.0.1 that answers what a test tells it to, for code that downloads from URLs.

Each path answers a `Reply`: its status, headers and body, and how the body
is framed (a Content-Length, which may lie; chunked; or none, the end of
the body being the end of the connection). Paths not listed answer 404.
Every request is recorded. The server runs in a thread of its own until
the `with` block ends.
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class HttpOrigin:
    """`with HttpOrigin({"/a.png": Reply(...)}) as origin: origin.url("/a.png")`."""

    def __init__(self, routes: dict[str, Reply] | None = None):
        self.routes = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HttpOrigin:
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="http-origin", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def get_request(self):
        sock, address = super().get_request()
        # Without it, a small answer on a kept-alive connection waits for the
        # client's delayed ACK (Nagle's algorithm).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def handle_error(self, request, client_address):
        # A client that stops reading (a download refused past its cap) is
        # what the tests do on purpose.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(origin: HttpOrigin):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

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

        def log_message(self, format, *args):
            pass

    return Handler
