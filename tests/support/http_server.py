"""The threaded HTTP server on 127.0.0.1 that the tests' stand-ins and origins run in a thread of their own.

    class MyStandIn(LoopbackServer):
        thread_name = "my-standin"

        def handler_class(self) -> type[BaseHTTPRequestHandler]:
            class Handler(QuietHandler):
                def do_GET(self): ...
            return Handler

    with MyStandIn() as standin:
        requests.get(standin.url + "/path")

`LoopbackServer` gives start()/stop(), the `with` block and `url`
(http://127.0.0.1:port); `QuietHandler` is a keep-alive request handler
that reads a request's body and writes no log lines.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads wait for their client's next request; do not
    # wait for them when the server stops.
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of new connections
    # (a sender opening one per call in flight) overflows it, and the kernel
    # drops the SYNs it cannot queue, which the client repeats a second
    # later. The providers stood in for do not stall a connection so; a
    # backlog as deep as the kernel allows keeps the answer time what the
    # stand-in's own delays say.
    request_queue_size = 1024

    def get_request(self):
        sock, address = super().get_request()
        # Without this, a small answer on a kept-alive connection waits for the
        # client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def handle_error(self, request, client_address):
        # A client that gave up waiting (its read timeout under a stand-in's
        # delay) or stopped reading (a download refused past its cap) is part
        # of what tests do.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's and requests' pools expect
    timeout = 30  # an idle kept-alive connection is closed after this

    def read_body(self) -> bytes:
        """The request's body, as long as its Content-Length says."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


class LoopbackServer:
    """A server on 127.0.0.1 (a free port) answering with `handler_class()`, in a daemon thread."""

    thread_name = "http-server"
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), self.handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
