"""Security headers on every answer, and the 64 KiB body limit on every
endpoint, also for a body sent without a Content-Length (chunked): checked in
the app and through a real gunicorn (issue 12, item 9)."""

from __future__ import annotations

import base64
import io
import hashlib
import re
import socket
from html.parser import HTMLParser

import pytest
import requests
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.support.db import add_mailout, add_subscribers
from tests.support.settings import SHARED_SECRET, UNSUBSCRIBE_SECRET
from tests.support.processes import run_gunicorn, service_env
from tests.support.ses_standin import SesStandIn
from amazonsender.links import UnsubscribeTokens

LIMIT = 64 * 1024
AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


class Styles(HTMLParser):
    """The text of every <style> element, and whether anything else could
    carry style or script: a style attribute, a <script>, an on* handler."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=False)
        self.styles: list[str] = []
        self.other: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        if tag in ("script", "link", "img", "iframe", "base"):
            self.other.append(tag)
        self.other += [name for name, _ in attrs if name == "style" or name.startswith("on")]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def directives(csp: str) -> dict[str, list[str]]:
    parts = [part.split() for part in csp.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


def assert_page_headers(response) -> None:
    """An HTML page: its one inline style allowed by hash, nothing else
    loaded, no framing, the form posting to this origin only, no Referer."""
    assert response.headers["Content-Type"].startswith("text/html"), response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = directives(response.headers["Content-Security-Policy"])
    page = Styles(response.content.decode() if hasattr(response, "content") else response.get_data(as_text=True))
    assert len(page.styles) == 1 and page.other == []
    digest = base64.b64encode(hashlib.sha256(page.styles[0].encode()).digest()).decode()
    assert policy == {
        "default-src": ["'none'"],
        "style-src": [f"'sha256-{digest}'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
    }


def assert_data_headers(response) -> None:
    assert not response.headers["Content-Type"].startswith("text/html"), response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "style-src" not in policy and "form-action" not in policy


def token_for(subscriber_id) -> str:
    return UnsubscribeTokens(UNSUBSCRIBE_SECRET).make(subscriber_id)


@pytest.fixture
def ann(conn):
    (ann_id,) = add_subscribers(conn, ["ann@example.org"])
    return ann_id


def status_of(conn, subscriber_id) -> str:
    return conn.execute("SELECT status FROM subscribers WHERE id = %s", (subscriber_id,)).fetchone()["status"]


# --- in the app -----------------------------------------------------------------------------------


def test_every_unsubscribe_page_sends_the_page_policy(client, conn, ann):
    url = f"/unsubscribe?token={token_for(ann)}"
    pages = [
        (client.get(url), 200),
        (client.head(url), 200),
        (client.get("/unsubscribe?token=bad"), 400),
        (client.post("/unsubscribe?token=bad"), 400),
        (client.get("/unsubscribe/nothing-here"), 404),
        (client.put(url), 405),
        (client.post(url, data=b"x" * (LIMIT + 1)), 413),
        (client.post(url), 200),
    ]
    for response, status in pages:
        assert response.status_code == status, response.get_data(as_text=True)
        if response.request.method == "HEAD":
            continue  # no body to hash; same headers as the GET
        assert_page_headers(response)
    assert status_of(conn, ann) == "unsubscribed"


def test_json_answers_send_nosniff_and_a_policy_that_allows_nothing(client):
    for response in (
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.post("/send-mailout", json={}),
        client.get("/mailouts/not-a-uuid", headers=AUTH),
        client.get("/nothing-here"),
        client.post("/ses-events", data=b"{}"),
    ):
        assert_data_headers(response)
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_chunked_body_in_the_app(app, conn, ann):
    """A body without a Content-Length from a server that ends the stream
    (what gunicorn says with wsgi.input_terminated)."""
    url = f"/unsubscribe?token={token_for(ann)}"

    def chunked(size: int):
        body = b"List-Unsubscribe=One-Click&pad=" + b"x" * (size - 31)
        environ = EnvironBuilder(
            url,
            method="POST",
            input_stream=io.BytesIO(body),
            headers={"Transfer-Encoding": "chunked"},
            content_type="application/x-www-form-urlencoded",
            environ_overrides={"wsgi.input_terminated": True},
        ).get_environ()
        del environ["CONTENT_LENGTH"]  # the builder counts the stream; a chunked body has none
        # Straight to the WSGI app: the test client would count the stream again.
        _, status, _ = run_wsgi_app(app, environ, buffered=True)
        return int(status.split()[0])

    assert chunked(LIMIT + 1) == 413
    assert status_of(conn, ann) == "active"
    assert chunked(LIMIT) == 200
    assert status_of(conn, ann) == "unsubscribed"


# --- through gunicorn ----------------------------------------------------------------------------


@pytest.fixture
def service(database_url, tmp_path):
    with SesStandIn() as ses, run_gunicorn(service_env(tmp_path, database_url, ses), tmp_path) as server:
        yield server


def chunks(body: bytes, size: int = 5000):
    # A generator: requests sends it with Transfer-Encoding: chunked.
    return (body[i : i + size] for i in range(0, len(body), size))


def test_a_chunked_body_over_the_limit_is_413_on_every_endpoint(service, conn, ann):
    mailout_id = add_mailout(conn)
    unsubscribe = f"/unsubscribe?token={token_for(ann)}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    over = b"List-Unsubscribe=One-Click&pad=" + b"x" * 100_000
    cases = [
        ("POST", unsubscribe, form, "text/html"),
        ("GET", unsubscribe, form, "text/html"),
        ("POST", "/send-mailout", AUTH, "application/json"),
        ("POST", "/ses-events", {}, "application/json"),
        ("GET", f"/mailouts/{mailout_id}", AUTH, "application/json"),
        ("GET", "/healthz", {}, "application/json"),
        ("GET", "/metrics", {}, "application/json"),
        ("GET", "/openapi.json", {}, "application/json"),
        ("POST", "/nothing-here", {}, "application/json"),
    ]
    with requests.Session() as session:
        for method, path, headers, mimetype in cases:
            response = session.request(method, service.url + path, data=chunks(over), headers=headers, timeout=10)
            assert (path, response.status_code) == (path, 413), (response.text, service.log())
            assert response.headers["Content-Type"].startswith(mimetype)
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "64 KiB" in response.text
        # The connection is still good for the next request.
        assert session.get(service.url + "/healthz", timeout=10).status_code == 200
    assert status_of(conn, ann) == "active"
    assert conn.execute("SELECT status FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()["status"] == "ready"
    assert "Traceback" not in service.log(tail=None)


def test_a_chunked_form_is_read_whole_up_to_the_limit(service, conn, ann):
    """The werkzeug default would cut a longer body at 64 KiB and read the
    form from what is left: here one byte over is refused, and exactly the
    limit is read, as with a Content-Length."""
    url = f"{service.url}/unsubscribe?token={token_for(ann)}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"List-Unsubscribe=One-Click&pad=" + b"x" * (LIMIT - 31)
    assert len(body) == LIMIT
    assert requests.post(url, data=chunks(body + b"x"), headers=form, timeout=10).status_code == 413
    assert status_of(conn, ann) == "active"
    response = requests.post(url, data=chunks(body), headers=form, timeout=10)
    assert response.status_code == 200, response.text
    assert status_of(conn, ann) == "unsubscribed"
    # A JSON endpoint reads all of it too: the body is not JSON, so 400.
    response = requests.post(
        service.url + "/send-mailout", data=chunks(b" " * (LIMIT - 1) + b"x"), headers=AUTH, timeout=10
    )
    assert response.status_code == 400 and "JSON" in response.text, response.text


def test_a_large_chunked_body_gets_its_413(service):
    """Megabytes more than the limit: the client still reads the answer."""
    body = b"x" * (4 * 1024 * 1024)
    response = requests.post(service.url + "/send-mailout", data=chunks(body, 64 * 1024), headers=AUTH, timeout=30)
    assert response.status_code == 413


def test_a_content_length_over_the_limit_is_413_even_where_nothing_reads_the_body(service):
    """Sent by hand: a Content-Length of 100,000 with no body behind it is
    answered at once, whatever the endpoint."""
    host, port = service.url.removeprefix("http://").split(":")
    for path in ("/healthz", "/unsubscribe?token=x"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode())
            head = sock.recv(4096).decode("latin-1")
        assert re.match(r"HTTP/1\.1 413 ", head), head
        assert "X-Content-Type-Options: nosniff" in head


def test_the_pages_send_their_policy_through_gunicorn(service, conn, ann):
    url = f"{service.url}/unsubscribe?token={token_for(ann)}"
    for response in (requests.get(url, timeout=10), requests.get(url + "x", timeout=10), requests.post(url, timeout=10)):
        assert_page_headers(response)
    assert_data_headers(requests.get(service.url + "/healthz", timeout=10))
