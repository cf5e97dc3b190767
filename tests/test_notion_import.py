"""The importer (notion/importer.py) and its SQL (store/notion.py) against the Notion stand-in: subject, body, skipped blocks, the images seam."""

from __future__ import annotations

import pytest

from amazonsender.content import ContentProblem
from amazonsender.notion import importer
from amazonsender.notion.api import NotionNotFound
from amazonsender.notion.images import NOT_WIRED
from amazonsender.store import notion as notion_store
from tests.support.notion_content import paragraph
from tests.support.notion_flow import fast_pages, newsletter_page
from tests.support.notion_pages import PageBuilder, sample_page, walk
from tests.support.notion_standin import NotionStandIn
from tests.support.notion_standin_checks import formula_property, number_property, rich_text_property, title_property


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


def import_page(notion, page_id, subject_property=None):
    with fast_pages(notion)() as pages:
        return importer.import_page(pages, page_id, subject_property=subject_property)


def test_the_sample_page_imports_with_its_title_as_subject_and_every_block_fetched(notion):
    page_id = newsletter_page(notion, sample_page(), title="The June issue")
    imported = import_page(notion, page_id)

    assert imported.subject == "The June issue"
    assert imported.page.id == page_id and imported.body.startswith("<")
    # Text from the top level, from nested children and from the second page of 100 children.
    blocks = list(walk(sample_page()))
    assert len(blocks) > 100
    for block in blocks:
        if block["type"] == "paragraph" and block["paragraph"]["rich_text"]:
            words = block["paragraph"]["rich_text"][0]["plain_text"].split()[:3]
            assert " ".join(words).split("<")[0].strip() in imported.text or not words
    hosted = [b["id"] for b in blocks if b["type"] == "image" and b["image"]["type"] == "file"]
    assert hosted and {s.block_id for s in imported.skipped if s.reason == NOT_WIRED} == set(hosted)
    external = [b["image"]["external"]["url"] for b in blocks if b["type"] == "image" and b["image"]["type"] == "external"]
    assert external and all(url in imported.body for url in external)


def test_another_property_can_hold_the_subject(notion):
    page_id = newsletter_page(notion, [paragraph("Hi")], properties={"Email subject": rich_text_property("Hello, June")})
    assert import_page(notion, page_id, subject_property="Email subject").subject == "Hello, June"
    page_id = newsletter_page(notion, [paragraph("Hi")], properties={"Formula": formula_property("From a formula")})
    assert import_page(notion, page_id, subject_property="Formula").subject == "From a formula"


@pytest.mark.parametrize(
    ("properties", "subject_property", "says"),
    [
        ({"Name": title_property("")}, None, "is empty"),
        ({"Name": title_property("   ")}, None, "is empty"),
        ({"Name": title_property("Line one\nline two")}, None, "more than one line"),
        ({"Name": title_property("Tab\there")}, None, "a tab"),
        ({"Name": title_property("x" * 401)}, None, "at most 400"),
        ({"Name": title_property("Fine")}, "Subject", "'Subject') is missing"),
        ({"Name": title_property("Fine"), "Count": number_property(3)}, "Count", "must be a title, text"),
    ],
)
def test_a_subject_that_cannot_go_out_is_refused_naming_the_property(notion, properties, subject_property, says):
    page_id = notion.add_page(properties=properties, blocks=[paragraph("Body")])
    with pytest.raises(ContentProblem, match="subject") as refused:
        import_page(notion, page_id, subject_property)
    assert says in str(refused.value)


def test_a_page_with_nothing_to_show_is_refused(notion):
    b = PageBuilder()
    page_id = newsletter_page(notion, [b.block("embed", {"url": "javascript:alert(1)", "caption": []})])
    with pytest.raises(ContentProblem, match="nothing an email can show"):
        import_page(notion, page_id)


def test_a_page_not_shared_with_the_integration_is_notion_not_found(notion):
    with pytest.raises(NotionNotFound, match="not shared with the integration"):
        import_page(notion, "0123456789abcdef0123456789abcdef")


# -- the SQL ---------------------------------------------------------------------


PAGE = "6c1d0b6e-2f4a-4f7e-9a51-3b0c2d9e8f10"


def test_a_press_takes_a_page_once_until_its_import_ends(conn):
    first = notion_store.start_press(conn, PAGE, "May", "event-1")
    assert first is not None
    assert notion_store.start_press(conn, PAGE, "May", "event-2") is None  # being imported
    known = notion_store.mailout_for_page(conn, PAGE)
    assert known["id"] == first and known["importing"] and known["claim_event_id"] == "event-1"

    notion_store.fail_import(conn, first, "Notion was away")
    assert notion_store.start_press(conn, PAGE, "May", "event-3") == first  # pressed again: the same draft

    assert notion_store.finish_import(conn, first, "May", "<p>Hi</p>", "ready")
    conn.execute("UPDATE mailouts SET status = 'sent' WHERE id = %s", (first,))
    assert notion_store.start_press(conn, PAGE, "May", "event-4") is None
    assert notion_store.save_imported(conn, PAGE, "May", "<p>Again</p>") is None


def test_a_stale_import_is_taken_over(conn):
    first = notion_store.start_press(conn, PAGE, "May", "event-1")
    conn.execute("UPDATE mailouts SET notion_import_started_at = now() - interval '1 hour' WHERE id = %s", (first,))
    assert not notion_store.mailout_for_page(conn, PAGE)["importing"]
    assert notion_store.start_press(conn, PAGE, "May", "event-2") == first


def test_saving_an_import_again_replaces_the_draft(conn):
    mailout_id, created = notion_store.save_imported(conn, PAGE, "May", "<p>One</p>")
    assert created
    assert notion_store.save_imported(conn, PAGE, "May (fixed)", "<p>Two</p>") == (mailout_id, False)
    row = conn.execute("SELECT subject, body, status FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()
    assert row == {"subject": "May (fixed)", "body": "<p>Two</p>", "status": "draft"}
    assert notion_store.notion_page_of(conn, mailout_id) == PAGE
