"""A Notion page's status on every path that sends or stops its mailout: the watcher's automatic resume (in this process, and as gunicorn's worker starts it), `mailout send` and `mailout resume`, and a person's pause (command line and POST). The Notion stand-in, a real Postgres."""

from __future__ import annotations

import time

import pytest

from amazonsender import create_app, sender
from amazonsender.notion.runs import PageReports
from amazonsender.sender.stop import StopReason
from amazonsender.sender.watch import Watcher
from amazonsender.transport import ErrorKind, SendError
from amazonsender.web import notion_press, start_auto_resume
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, mailout_row
from tests.support.notion_content import paragraph
from tests.support.notion_flow import fast_pages, newsletter_page, patches, status_of
from tests.support.notion_standin import NotionStandIn
from tests.support.sending import stopped
from tests.support.settings import SHARED_SECRET, with_settings


@pytest.fixture(autouse=True)
def fresh_stop_signal():
    sender.process_stop.clear()
    yield
    sender.process_stop.clear()


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


def notion_app(settings, pool, notion, transport, **overrides):
    return create_app(
        with_settings(settings, notion_token=notion.token, notion_base_url=notion.url, **overrides),
        pool=pool,
        transport=transport,
        notion_pages=fast_pages(notion),
    )


def linked(conn, notion, mailout_id) -> str:
    """A newsletter page on the stand-in, linked to the mailout."""
    page_id = newsletter_page(notion, [paragraph("News.")])
    conn.execute("UPDATE mailouts SET notion_page_id = %s WHERE id = %s", (page_id, mailout_id))
    return page_id


def states(notion, page_id) -> list[str]:
    return [p["Status"]["status"]["name"] for p in patches(notion, page_id) if "Status" in p]


def text_of(notion, page_id, name) -> str:
    return "".join(part["plain_text"] for part in notion.page_properties(page_id)[name]["rich_text"])


def settle(app):
    app.extensions[notion_press.STATUS].wait_idle()


# --- the watcher ----------------------------------------------------------------------------


def test_an_automatic_resume_writes_sending_then_sent(pool, conn, settings, notion):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    page_id = linked(conn, notion, mailout_id)
    transport = FakeTransport()
    app = notion_app(settings, pool, notion, transport)
    hooks = notion_press.page_reports(app)
    for run in Watcher(pool, transport, settings, hooks=hooks).check_once():
        run.join(timeout=30)
    settle(app)
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert states(notion, page_id) == ["Sending", "Sent"]
    properties = notion.page_properties(page_id)
    assert properties["Sent"]["number"] == 6 and properties["Sent at"]["date"]["start"]
    assert text_of(notion, page_id, "mailout_id") == str(mailout_id)


def test_a_resume_that_ses_refuses_leaves_the_page_paused_with_the_reason(pool, conn, settings, notion):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    page_id = linked(conn, notion, mailout_id)
    transport = FakeTransport(account_error=SendError("SendingPausedException", kind=ErrorKind.ACCOUNT))
    app = notion_app(settings, pool, notion, transport)
    assert Watcher(pool, transport, settings, hooks=notion_press.page_reports(app)).check_once() == []
    settle(app)
    assert states(notion, page_id) == ["Paused"]
    assert "SES refuses this account" in text_of(notion, page_id, "Send error")


def test_a_failing_hook_changes_nothing_sent(pool, conn, settings):
    class Broken:
        def started(self, mailout_id):
            raise RuntimeError("boom")

        ended = started

    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    for run in Watcher(pool, FakeTransport(), settings, hooks=Broken()).check_once():
        run.join(timeout=30)
    assert mailout_row(conn, mailout_id)["status"] == "sent"


def test_the_service_hands_its_watcher_the_page_reports(pool, conn, settings, notion):
    mailout_id = stopped(pool, conn, StopReason.SHUTDOWN)
    page_id = linked(conn, notion, mailout_id)
    app = notion_app(settings, pool, notion, FakeTransport(), auto_resume=True)
    watcher = start_auto_resume(app)
    try:
        assert isinstance(watcher.hooks, PageReports)
        # The watcher looks at once on start; wait for its run, however long the machine takes.
        for _ in range(600):
            runs = list(watcher.runs)
            if runs and not any(r.is_alive() for r in runs):
                break
            time.sleep(0.1)
        assert runs and not any(r.is_alive() for r in runs)
    finally:
        sender.process_stop.set()
        watcher.thread.join(timeout=30)
    settle(app)
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert states(notion, page_id) == ["Sending", "Sent"]


def test_without_a_token_the_service_watches_without_hooks(pool, settings):
    app = create_app(with_settings(settings, auto_resume=True), pool=pool, transport=FakeTransport())
    watcher = start_auto_resume(app)
    try:
        assert watcher.hooks is None
    finally:
        sender.process_stop.set()
        watcher.thread.join(timeout=30)


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_notion(invoke, notion):
    invoke.env.update(NOTION_TOKEN=notion.token, NOTION_BASE_URL=notion.url)
    return notion


def test_mailout_send_writes_sending_then_sent(invoke, cli_notion, conn):
    add_subscribers(conn, ["a@list.example", "b@list.example"])
    mailout_id = add_mailout(conn)
    page_id = linked(conn, cli_notion, mailout_id)
    result = invoke("mailout", "send", mailout_id)
    assert result.exit_code == 0, result.output
    assert states(cli_notion, page_id) == ["Sending", "Sent"]
    assert cli_notion.page_properties(page_id)["Sent"]["number"] == 2


def test_mailout_resume_writes_sending_then_sent(invoke, cli_notion, pool, conn):
    mailout_id = stopped(pool, conn, StopReason.THROTTLED)
    page_id = linked(conn, cli_notion, mailout_id)
    result = invoke("mailout", "resume", mailout_id)
    assert result.exit_code == 0, result.output
    assert states(cli_notion, page_id) == ["Sending", "Sent"]
    assert text_of(cli_notion, page_id, "Send error") == ""


def test_a_send_without_a_page_or_without_a_token_asks_notion_nothing(invoke, notion, conn):
    add_subscribers(conn, ["a@list.example"])
    mailout_id = add_mailout(conn)
    linked(conn, notion, mailout_id)
    # No NOTION_TOKEN: the page is linked, but nothing is written.
    assert invoke("mailout", "send", mailout_id).exit_code == 0
    invoke.env.update(NOTION_TOKEN=notion.token, NOTION_BASE_URL=notion.url)
    assert invoke("mailout", "send", add_mailout(conn)).exit_code == 0  # no page
    assert notion.api_requests == []


def test_notion_refusing_never_fails_the_command(invoke, notion, conn):
    invoke.env.update(NOTION_TOKEN="ntn_wrong_token_0000", NOTION_BASE_URL=notion.url)
    add_subscribers(conn, ["a@list.example"])
    mailout_id = add_mailout(conn)
    page_id = linked(conn, notion, mailout_id)
    result = invoke("mailout", "send", mailout_id)
    assert result.exit_code == 0, result.output
    assert mailout_row(conn, mailout_id)["status"] == "sent"
    assert patches(notion, page_id) == [] and {r.status for r in notion.api_requests} == {401}
    assert "ntn_wrong_token" not in result.output


# --- a person's pause -------------------------------------------------------------------------


def test_mailout_pause_writes_paused_with_the_reason(invoke, cli_notion, pool, conn):
    mailout_id = stopped(pool, conn, StopReason.THROTTLED)
    page_id = linked(conn, cli_notion, mailout_id)
    result = invoke("mailout", "pause", mailout_id)
    assert result.exit_code == 0, result.output
    assert status_of(cli_notion, page_id) == "Paused"
    assert "paused by an operator" in text_of(cli_notion, page_id, "Send error")


def test_post_pause_writes_paused(pool, conn, settings, notion):
    mailout_id = stopped(pool, conn, StopReason.THROTTLED)
    page_id = linked(conn, notion, mailout_id)
    app = notion_app(settings, pool, notion, FakeTransport())
    answer = app.test_client().post(
        f"/mailouts/{mailout_id}/pause", headers={"Authorization": f"Bearer {SHARED_SECRET}"}
    )
    assert answer.status_code == 200, answer.get_json()
    settle(app)
    assert states(notion, page_id) == ["Paused"]
    assert "paused by an operator" in text_of(notion, page_id, "Send error")
