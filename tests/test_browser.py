"""The unsubscribe flow as a reader lives it, in a real browser.

A real `gunicorn wsgi:app` in local mode sends a mailout to its .eml outbox;
the test takes the unsubscribe link out of the HTML part of a sent message and
opens it in headless Chromium (Debian's `chromium`, driven by Playwright
without Playwright's own browser download): the page shows a button and
changes nothing, pressing the button shows the confirmation, and the database
then says 'unsubscribed'. It also checks the page on a phone-sized screen.

Nothing leaves the machine: the service listens on 127.0.0.1 only, the
browser is pointed only at it, its background services are switched off, and
every host name except 127.0.0.1 resolves to nothing, and every other request
goes to a "proxy" on a local port where nothing listens.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import socket
import struct
import subprocess
import sys
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.support.db import add_mailout, add_subscribers
from tests.support.settings import ROOT, SHARED_SECRET, UNSUBSCRIBE_SECRET
from tests.support.processes import FROM_ADDRESS, Server, clean_env, free_port, stop_process_group, wait_until_serving

# Debian's package: /usr/bin/chromium. CHROMIUM_PATH may name another build.
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = None if CHROMIUM else "needs Debian's chromium package (apt-get install chromium)"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None
    MISSING = MISSING or "needs the playwright package from requirements-dev.txt"

# Chromium as root in a container, and quiet: no sandbox (root), no GPU, and
# none of the background traffic (component updates, sync, field trials,
# safe browsing, first-run pings) that would try to reach outside hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    # No --disable-features here: Chromium keeps only the last one given, and
    # Playwright's own list (which stops the network time query among others)
    # comes first and would be lost.
    #
    # The flags above do not silence everything: Chromium 156 still asks
    # accounts.google.com for signed-in accounts and update.googleapis.com for
    # a component. So no host name but 127.0.0.1 resolves, and every request
    # that is not for loopback (which Chromium never proxies) goes to a proxy
    # on a local port where nothing listens (see `browser`), and fails there.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15 sized screen, in CSS pixels
TIMEOUT_MS = 15_000


@contextmanager
def local_service(tmp_path: Path, database_url: str, outbox: Path):
    """`gunicorn wsgi:app` in local mode: no AWS keys, so every email is
    written to `outbox`; APP_BASE_URL is its own http://127.0.0.1:<port>,
    which local mode accepts (production insists on https)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = clean_env(
        tmp_path,
        APP_ENV="local",
        PORT=str(port),
        DATABASE_URL=database_url,
        EXECUTOR_SHARED_SECRET=SHARED_SECRET,
        UNSUBSCRIBE_SECRET=UNSUBSCRIBE_SECRET,
        APP_BASE_URL=base_url,
        SES_FROM_EMAIL=FROM_ADDRESS,
        OUTBOX_DIR=str(outbox),
        RATE_LIMIT_PER_SEC="1000",
        WEB_CONCURRENCY="2",
    )
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        # The command line's --bind wins over gunicorn.conf.py's 0.0.0.0.
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, base_url, log_path)
    try:
        wait_until_serving(server, "/healthz", 200)
        yield server
    finally:
        stop_process_group(proc)


@pytest.fixture
def browser(tmp_path):
    """Debian's Chromium, driven by Playwright over its pipe. Playwright gives
    it a fresh --user-data-dir of its own and removes it on close."""
    if MISSING:
        # .ci/run installs both, so CI must really run this test: there a
        # missing browser is a failure, elsewhere a skip that says what to install.
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}; .ci/run should have installed it", pytrace=False)
        pytest.skip(MISSING)
    # A port of ours that never listens: every connection to it is refused.
    # (Not Playwright's `proxy` option: that would proxy loopback too.)
    with socket.socket() as dead_end, sync_playwright() as playwright:
        dead_end.bind(("127.0.0.1", 0))
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            chromium_sandbox=False,
            args=[*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{dead_end.getsockname()[1]}"],
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()


class _Links(HTMLParser):
    """Every <a href> of an HTML document with its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append((dict(attrs).get("href") or "", []))

    def handle_data(self, data):
        for _, text in self._open:
            text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, " ".join("".join(text).split())))


def sent_message(outbox: Path, to_address: str) -> email.message.EmailMessage:
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in outbox.glob("*.eml")
    ]
    mine = [message for message in messages if to_address in message["To"]]
    assert len(mine) == 1, [message["To"] for message in messages]
    return mine[0]


def footer_unsubscribe_link(message: email.message.EmailMessage) -> str:
    """The href of the footer's "Unsubscribe" link, from the HTML part, as a
    mail client would show it."""
    html = message.get_body(preferencelist=("html",)).get_content()
    parser = _Links()
    parser.feed(html)
    hrefs = [href for href, text in parser.links if text == "Unsubscribe"]
    assert len(hrefs) == 1, parser.links
    return hrefs[0]


def subscriber(conn, address: str) -> dict:
    return conn.execute("SELECT status, status_updated_at FROM subscribers WHERE email = %s", (address,)).fetchone()


def assert_png(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    # The full-page screenshot is at least the viewport, in device pixels.
    png_width, png_height = struct.unpack(">II", data[16:24])
    assert png_width >= width and png_height >= height, (png_width, png_height)
    assert len(data) > 2_000  # a page with text on it, not a blank image


def layout(page) -> dict:
    return page.evaluate(
        """() => {
            const box = document.querySelector('button').getBoundingClientRect();
            return {
                scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth,
                innerHeight: window.innerHeight,
                left: box.left, right: box.right, top: box.top, bottom: box.bottom,
                width: box.width, height: box.height,
            };
        }"""
    )


def test_a_reader_unsubscribes_from_the_link_in_a_sent_email(browser, conn, database_url, tmp_path):
    reader, other = "reader@example.org", "other@example.org"
    add_subscribers(conn, [reader, other], names={reader: "Ann Reader"})
    mailout_id = add_mailout(conn, subject="Our spring news")
    outbox = tmp_path / "outbox"

    with local_service(tmp_path, database_url, outbox) as service:
        # Send the mailout as a webhook would; ?wait=1 answers when it is done.
        response = requests.post(
            f"{service.url}/send-mailout?wait=1",
            json={"mailout_id": str(mailout_id)},
            headers={"Authorization": f"Bearer {SHARED_SECRET}"},
            timeout=60,
        )
        assert response.status_code == 200, (response.text, service.log())
        assert (response.json()["status"], response.json()["sent"]) == ("sent", 2)

        message = sent_message(outbox, reader)
        link = footer_unsubscribe_link(message)
        assert link.startswith(f"{service.url}/unsubscribe?token="), link
        assert message["List-Unsubscribe"] == f"<{link}>"  # the same link for a mail client's button

        requested, console = [], []
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        # Chromium reports what the Content-Security-Policy blocks here.
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

        # Opening the link shows a button and changes nothing: mail scanners
        # open every link, and must not unsubscribe anybody.
        opened = page.goto(link, wait_until="load")
        assert opened.status == 200
        assert page.title() == "Unsubscribe from our newsletter"
        button = page.get_by_role("button", name="Unsubscribe")
        assert button.is_visible() and button.is_enabled()
        assert page.get_by_text("You are unsubscribed").count() == 0
        # The page's policy allows its own style sheet (by hash) and nothing else.
        assert "style-src 'sha256-" in opened.headers["content-security-policy"]
        assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(24, 24, 27)"
        assert subscriber(conn, reader) == {"status": "active", "status_updated_at": None}
        page.screenshot(path=tmp_path / "unsubscribe-desktop.png", full_page=True)
        assert_png(tmp_path / "unsubscribe-desktop.png", 1280, 800)

        # The same page on a phone: the whole button is on the screen and
        # nothing scrolls sideways.
        phone = browser.new_context(viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True)
        phone.set_default_timeout(TIMEOUT_MS)
        phone.on("request", lambda request: requested.append(request.url))
        phone_page = phone.new_page()
        assert phone_page.goto(link, wait_until="load").status == 200
        box = layout(phone_page)
        assert box["innerWidth"] == PHONE["width"], box  # the viewport meta tag is honoured
        assert box["scrollWidth"] <= box["innerWidth"], box
        assert 0 <= box["left"] and box["right"] <= box["innerWidth"], box
        assert 0 <= box["top"] and box["bottom"] <= box["innerHeight"], box
        assert box["height"] >= 44, box  # big enough to tap
        phone_page.screenshot(path=tmp_path / "unsubscribe-phone.png", full_page=True)
        assert_png(tmp_path / "unsubscribe-phone.png", PHONE["width"] * 3, PHONE["height"] * 3)
        phone.close()
        assert subscriber(conn, reader) == {"status": "active", "status_updated_at": None}

        # Pressing the button posts the form and shows the confirmation: the
        # policy's form-action 'self' lets it post to the page's own URL.
        before = conn.execute("SELECT now() AS now").fetchone()["now"]
        with page.expect_navigation(wait_until="load") as navigation:
            button.click()
        assert navigation.value.status == 200
        assert navigation.value.request.method == "POST"
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        assert page.get_by_text("You will not receive our newsletter any more").is_visible()
        page.screenshot(path=tmp_path / "unsubscribed.png", full_page=True)
        assert_png(tmp_path / "unsubscribed.png", 1280, 800)

        row = subscriber(conn, reader)
        assert row["status"] == "unsubscribed"
        assert row["status_updated_at"] is not None and row["status_updated_at"] >= before
        assert subscriber(conn, other) == {"status": "active", "status_updated_at": None}

        # Back and press again (a double click, an impatient reader): the
        # same confirmation, and the first unsubscribe time stays.
        page.go_back(wait_until="load")
        with page.expect_navigation(wait_until="load"):
            page.get_by_role("button", name="Unsubscribe").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        assert subscriber(conn, reader) == row
        context.close()
    blocked = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert blocked == [], console

    # The pages load nothing from anywhere else: no fonts, scripts or images.
    assert requested and all(url.startswith(f"{service.url}/") for url in requested), requested
