"""A Notion button press on real gunicorn: a page of over a hundred blocks imported, sent through the SES stand-in, its status written back to the Notion stand-in, and sent once."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import requests

from tests.support.db import add_subscribers
from tests.support.images import PNG
from tests.support.notion_content import image
from tests.support.notion_flow import newsletter_page, press_body, status_of
from tests.support.notion_pages import PageBuilder, sample_page, walk
from tests.support.notion_standin import NotionStandIn
from tests.support.processes import run_gunicorn, service_env, wait_for_status
from tests.support.ses_standin import SesStandIn
from tests.support.webhooks import AUTH

READERS = [f"reader{i}@example.org" for i in range(5)]


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        yield standin


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


def long_page() -> list[dict]:
    """The sample page and 40 more paragraphs: over a hundred blocks at the
    top level (two pages of block children) and 150 in all."""
    b = PageBuilder("long")
    return sample_page() + [b.rich("paragraph", f"Note number {n} from the editor.") for n in range(40)]


def wait_for_page_status(notion, page_id, wanted, timeout=60.0):
    deadline = time.monotonic() + timeout
    while status_of(notion, page_id) != wanted:
        assert time.monotonic() < deadline, f"the page is still {status_of(notion, page_id)!r}"
        time.sleep(0.1)


def test_a_press_on_gunicorn_sends_a_long_page_once_and_writes_its_status(database_url, conn, ses, notion, tmp_path):
    add_subscribers(conn, READERS)
    # A Notion-hosted image: its signed URL expires, so the email must show our copy.
    blocks = long_page() + [image(notion.hosted_file(PNG), "The garden in June")]
    assert len(list(walk(blocks))) > 100 and len(blocks) > 100
    page_id = newsletter_page(notion, blocks, title="The June bulletin")
    env = service_env(
        tmp_path, database_url, ses, NOTION_TOKEN=notion.token, NOTION_BASE_URL=notion.url, SES_BULK_SEND="off"
    )
    with run_gunicorn(env, tmp_path) as server:
        pressed = requests.post(f"{server.url}/send-mailout", json=press_body(page_id), headers=AUTH, timeout=30)
        assert pressed.status_code == 202, (pressed.text, server.log())
        mailout_id = pressed.json()["mailout_id"]
        finished = wait_for_status(server, mailout_id, "sent", timeout=120)
        wait_for_page_status(notion, page_id, "Sent")

        again = requests.post(
            f"{server.url}/send-mailout", json=press_body(page_id, event_id="second-press"), headers=AUTH, timeout=30
        )
        assert again.status_code == 409, again.text
        shown = re.search(r'src="(https://[^"]+/media/([0-9a-f]{64})\.png)"', ses.sent[0].message.get_body(("html",)).get_content())
        assert shown and shown.group(2) == hashlib.sha256(PNG).hexdigest(), server.log()
        served = requests.get(f"{server.url}/media/{shown.group(2)}.png", timeout=10)
        log = server.log(tail=None)

    assert served.status_code == 200 and served.content == PNG
    assert served.headers["Content-Type"] == "image/png" and "immutable" in served.headers["Cache-Control"]

    assert finished["status"] == "sent"
    assert sorted(email.to_addresses[0] for email in ses.sent) == READERS, log
    message = ses.sent[0].message
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"] == "The June bulletin"
    for words in ("The Monthly Bulletin — June", "A whole paragraph in blue.", "Note number 39 from the editor."):
        assert words in html and words in text
    assert "Note number 0 from the editor." in text
    assert "<script" not in html.lower()

    properties = notion.page_properties(page_id)
    assert properties["Sent"]["number"] == len(READERS)
    assert properties["mailout_id"]["rich_text"][0]["plain_text"] == mailout_id
    assert properties["Sent at"]["date"]["start"]
    assert notion.token not in log
