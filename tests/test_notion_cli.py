"""`mailout create --notion` against the Notion stand-in, and `mailout preview`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.db import add_mailout, mailout_row
from tests.support.images import HTML, PNG
from tests.support.notion_content import image
from tests.support.notion_flow import newsletter_page
from tests.support.notion_pages import PageBuilder, notion_url
from tests.support.notion_standin import NotionStandIn


@pytest.fixture
def notion(invoke):
    with NotionStandIn() as standin:
        invoke.env.update(NOTION_TOKEN=standin.token, NOTION_BASE_URL=standin.url)
        yield standin


def a_page(notion, title="May news"):
    b = PageBuilder()
    return newsletter_page(
        notion,
        [b.rich("paragraph", "Hello, garden."), b.block("embed", {"url": "https://example.org/e", "caption": []}),
         b.image("https://cdn.example.org/x.png"), image(notion.hosted_file(PNG), "a photo"),
         image(notion.hosted_file(HTML, "image/png", "fake.png"))],
        title=title,
    )  # fmt: skip


def test_create_from_a_notion_url_makes_a_draft_and_lists_what_was_left_out(invoke, notion, conn):
    page_id = a_page(notion)
    result = invoke("mailout", "create", "--notion", notion_url(page_id))
    assert result.exit_code == 0, result.output
    mailout_id = result.stdout.strip().splitlines()[0]
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "draft" and row["subject"] == "May news" and str(row["notion_page_id"]) == page_id
    assert "Hello, garden." in row["body"] and "https://cdn.example.org/x.png" in row["body"]
    assert "skipped embed" in result.stderr
    # The Notion-hosted image is downloaded once and shown from /media/ (its
    # signed URL expires within the hour); one that is not an image is left out.
    digest = hashlib.sha256(PNG).hexdigest()
    assert f"/media/{digest}.png" in row["body"] and "X-Signature" not in row["body"]
    assert conn.execute("SELECT content_type FROM media WHERE sha256 = %s", (digest,)).fetchone() == {
        "content_type": "image/png"
    }
    assert "Notion-hosted image not downloaded" in result.stderr

    # Again for the same page: the same draft, updated.
    again = invoke("mailout", "create", "--notion", page_id)
    assert again.exit_code == 0 and again.stdout.strip().splitlines()[0] == mailout_id
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 1


def test_create_from_notion_refuses_clearly(invoke, notion, conn):
    missing = invoke("mailout", "create", "--notion", "0123456789abcdef0123456789abcdef")
    assert missing.exit_code == 1 and "not shared with the integration" in missing.output
    not_a_page = invoke("mailout", "create", "--notion", "https://example.org/nothing")
    assert not_a_page.exit_code == 2 and "names no Notion page" in not_a_page.output
    mixed = invoke("mailout", "create", "--notion", a_page(notion), "--subject", "x")
    assert mixed.exit_code == 2 and "give it alone" in mixed.output
    two_lines = invoke("mailout", "create", "--notion", a_page(notion, title="One\nTwo"))
    assert two_lines.exit_code == 1 and "more than one line" in two_lines.output
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 0


def test_create_from_notion_without_a_token_says_what_is_missing(invoke):
    result = invoke("mailout", "create", "--notion", "0123456789abcdef0123456789abcdef")
    assert result.exit_code == 2 and "NOTION_TOKEN" in result.output


def test_preview_writes_the_email_a_subscriber_gets_to_the_outbox(invoke, conn, settings, tmp_path):
    invoke.env["OUTBOX_DIR"] = str(tmp_path / "previews")
    mailout_id = add_mailout(conn, subject="June", body="<h1>June</h1><p>Tomatoes &amp; beans.</p>")
    result = invoke("mailout", "preview", mailout_id)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == tmp_path / "previews" / f"preview-{mailout_id}.html"
    html = path.read_text(encoding="utf-8")
    assert "<h1>June</h1><p>Tomatoes &amp; beans.</p>" in html
    assert "unsubscribe" in html.lower() and "Example Newsletter, 1 Main Street" in html
    assert mailout_row(conn, mailout_id)["status"] == "ready"


def test_preview_of_no_mailout_is_an_error(invoke):
    result = invoke("mailout", "preview", "8b6f7f6e-6a43-4c8e-9d0e-0c1a52c1d2a1")
    assert result.exit_code == 1 and "no mailout" in result.output
