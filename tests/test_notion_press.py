"""POST /send-mailout from a Notion button on a page with no mailout id: the page imported, sent once, its status written back. Flask's test client, a real Postgres, the Notion stand-in, a recording transport."""

from __future__ import annotations

import pytest

from amazonsender import create_app
from amazonsender.notion.status import StatusWriter
from tests.support.db import add_subscribers, ledger, mailout_row
from tests.support.notion_content import paragraph
from tests.support.notion_flow import (
    fast_pages,
    newsletter_page,
    patches,
    press_body,
    status_of,
    write_back_properties,
)
from tests.support.notion_pages import PageBuilder
from tests.support.notion_standin import NotionStandIn
from tests.support.notion_standin_checks import select_property
from tests.support.settings import with_settings
from tests.support.webhooks import AUTH, wait_for_background_sends

LIST = ["a@list.example", "b@list.example", "c@list.example"]


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


@pytest.fixture
def notion_app(settings, pool, recording_transport, notion, conn):
    add_subscribers(conn, LIST)
    app = create_app(
        with_settings(settings, notion_token=notion.token, notion_base_url=notion.url, test_emails=("t@example.test",)),
        pool=pool,
        transport=recording_transport,
        notion_pages=fast_pages(notion),
    )
    yield app
    settle(app)


def settle(app):
    """Every background import and send done, and every status written."""
    wait_for_background_sends(app)
    writer: StatusWriter = app.extensions["notion_status"]
    writer.wait_idle()


def post(app, body):
    return app.test_client().post("/send-mailout", json=body, headers=AUTH)


def page_with_news(notion, **kwargs):
    b = PageBuilder()
    return newsletter_page(
        notion,
        [b.rich("heading_1", "June"), b.rich("paragraph", "News from the garden."),
         b.rich("bulleted_list_item", "Tomatoes", children=[b.rich("bulleted_list_item", "Cherry")])],
        **kwargs,
    )  # fmt: skip


def only_mailout(conn):
    rows = conn.execute("SELECT * FROM mailouts").fetchall()
    assert len(rows) == 1
    return rows[0]


def test_a_press_imports_the_page_sends_it_once_and_writes_the_status_back(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    answer = post(notion_app, press_body(page_id))
    assert answer.status_code == 202, answer.json
    assert answer.json["status"] == "importing" and answer.json["notion_page_id"] == page_id
    settle(notion_app)

    mailout = only_mailout(conn)
    assert str(mailout["id"]) == answer.json["mailout_id"] and str(mailout["notion_page_id"]) == page_id
    assert mailout["status"] == "sent" and mailout["subject"] == "May news"
    assert "News from the garden." in mailout["body"] and "Cherry" in mailout["body"]
    assert set(ledger(conn, mailout["id"]).values()) == {"sent"} and len(ledger(conn, mailout["id"])) == 3
    assert sorted(recording_transport.sent) == LIST

    written = patches(notion, page_id)
    assert [p["Status"]["status"]["name"] for p in written] == ["Sending", "Sent"]
    final = notion.page_properties(page_id)
    assert status_of(notion, page_id) == "Sent"
    assert final["Sent"]["number"] == 3 and final["Sent at"]["date"]["start"]
    assert final["mailout_id"]["rich_text"][0]["plain_text"] == str(mailout["id"])
    assert final["Send error"]["rich_text"] == []


def test_the_same_page_pressed_again_is_409_and_nothing_is_sent_twice(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    assert post(notion_app, press_body(page_id)).status_code == 202
    during = post(notion_app, press_body(page_id, event_id="another-press-1"))
    settle(notion_app)
    after = post(notion_app, press_body(page_id, event_id="another-press-2"))

    assert during.status_code == 409 and after.status_code == 409
    assert "a page is sent once" in after.json["error"] and after.json["status"] == "sent"
    assert len(recording_transport.sent) == 3
    assert only_mailout(conn)["status"] == "sent"


def test_a_retry_of_the_same_event_is_answered_as_the_first(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    first = post(notion_app, press_body(page_id))
    again = post(notion_app, press_body(page_id))
    settle(notion_app)
    later = post(notion_app, press_body(page_id))

    assert first.status_code == again.status_code == later.status_code == 202
    assert first.json["mailout_id"] == again.json["mailout_id"] == later.json["mailout_id"]
    assert len(recording_transport.sent) == 3
    assert len([r for r in notion.api_requests if r.method == "GET" and r.path == f"/v1/pages/{page_id}"]) == 1


def test_a_test_press_sends_the_page_to_the_test_addresses_and_changes_nothing(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    body = press_body(page_id)
    body["test"] = True
    answer = post(notion_app, body)

    assert answer.status_code == 200, answer.json
    assert answer.json["subject"] == "May news" and [r["status"] for r in answer.json["results"]] == ["sent"]
    assert recording_transport.sent == ["t@example.test"]
    assert "[TEST] May news" in recording_transport.emails[0].raw.decode()
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 0
    assert not [r for r in notion.api_requests if r.method == "PATCH"]
    assert status_of(notion, page_id) == "Draft"


def test_without_a_token_a_body_with_no_mailout_id_is_the_400_of_before(settings, pool, recording_transport, notion, conn):
    app = create_app(settings, pool=pool, transport=recording_transport)
    answer = post(app, press_body(page_with_news(notion)))
    assert answer.status_code == 400 and "mailout_id" in answer.json["error"] and "is empty" in answer.json["error"]
    assert notion.api_requests == []


@pytest.mark.parametrize(
    ("fault", "code", "says"),
    [
        ("missing page", 404, "not shared with the integration"),
        ("bad token", 502, "check NOTION_TOKEN"),
        ("rate limited", 503, "did not answer after 5 tries"),
    ],
)
def test_notion_refusing_is_answered_clearly_and_nothing_is_created(notion_app, notion, conn, fault, code, says):
    page_id = page_with_news(notion)
    if fault == "missing page":
        page_id = "0123456789abcdef0123456789abcdef"
    elif fault == "bad token":
        notion_app.extensions["notion_pages"] = fast_pages(notion, token="ntn_wrong_token_0000")
    else:
        notion.fail_next(5, 429, "rate_limited", retry_after=1)
    answer = post(notion_app, press_body(page_id))
    assert answer.status_code == code and says in answer.json["error"]
    assert "ntn_" not in answer.json["error"]
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 0


def test_a_subject_that_cannot_go_out_is_a_422_and_nothing_is_created(notion_app, notion, conn):
    page_id = newsletter_page(notion, [paragraph("Hi")], title="Two\nlines")
    answer = post(notion_app, press_body(page_id))
    assert answer.status_code == 422 and "more than one line" in answer.json["error"]
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 0


def test_missing_properties_are_skipped_and_a_select_status_is_set(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion, properties={"Status": select_property(None, options=("Idea",))})
    assert post(notion_app, press_body(page_id)).status_code == 202
    settle(notion_app)
    assert only_mailout(conn)["status"] == "sent"
    assert [set(p) for p in patches(notion, page_id)] == [{"Status"}, {"Status"}]
    assert notion.page_properties(page_id)["Status"]["select"]["name"] == "Sent"


def test_a_page_without_any_of_the_properties_is_sent_and_never_patched(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion, properties={})
    assert post(notion_app, press_body(page_id)).status_code == 202
    settle(notion_app)
    assert only_mailout(conn)["status"] == "sent" and len(recording_transport.sent) == 3
    assert not [r for r in notion.api_requests if r.method == "PATCH"]


def test_notion_refusing_the_write_back_does_not_touch_the_send(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    sent_blocks = []

    def refuse_patches(record):
        # Every PATCH answered 429 from the first on: the writer retries, then drops.
        if record.method == "PATCH" and not sent_blocks:
            sent_blocks.append(record)
            notion.fail_next(10, 429, "rate_limited", retry_after=1)

    notion.on_request = refuse_patches
    assert post(notion_app, press_body(page_id)).status_code == 202
    settle(notion_app)
    assert only_mailout(conn)["status"] == "sent" and len(recording_transport.sent) == 3
    assert patches(notion, page_id) == []
    assert [r.status for r in notion.api_requests if r.method == "PATCH"].count(429) >= 5


def test_an_import_that_fails_after_the_answer_leaves_a_draft_and_says_so_on_the_page(notion_app, notion, conn, recording_transport):
    b = PageBuilder()
    properties = write_back_properties()
    page_id = newsletter_page(notion, [b.block("embed", {"url": "javascript:x", "caption": []})], properties=properties)
    assert post(notion_app, press_body(page_id)).status_code == 202
    settle(notion_app)
    mailout = only_mailout(conn)
    assert mailout["status"] == "draft" and "nothing an email can show" in mailout["error"]
    assert recording_transport.sent == []
    assert status_of(notion, page_id) == "Failed"
    assert "nothing an email can show" in notion.page_properties(page_id)["Send error"]["rich_text"][0]["plain_text"]

    # Fixed in Notion and pressed again: the same draft, imported again, sent.
    notion.add_page(page_id=page_id, title="May news", blocks=[paragraph("Now with news.")], properties=properties)
    assert post(notion_app, press_body(page_id, event_id="press-2")).status_code == 202
    settle(notion_app)
    assert mailout_row(conn, mailout["id"])["status"] == "sent" and len(recording_transport.sent) == 3


def test_a_mailout_from_a_page_sent_by_its_id_writes_the_status_too(notion_app, notion, conn, recording_transport):
    page_id = page_with_news(notion)
    mailout_id = conn.execute(
        "INSERT INTO mailouts (subject, body, status, notion_page_id) VALUES ('S', '<p>B</p>', 'ready', %s) RETURNING id",
        (page_id,),
    ).fetchone()["id"]
    assert post(notion_app, {"mailout_id": str(mailout_id)}).status_code == 202
    settle(notion_app)
    assert status_of(notion, page_id) == "Sent"
