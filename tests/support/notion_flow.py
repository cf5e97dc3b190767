"""Helpers for tests of Notion as the editor: a newsletter page with the write-back properties on the Notion stand-in, a fast NotionPages, and the button's webhook body for a page."""

from __future__ import annotations

from amazonsender.notion.api import NotionPages
from amazonsender.sender.pacer import Pacer
from tests.support.notion_standin_checks import (
    date_property,
    number_property,
    rich_text_property,
    status_property,
)
from tests.support.webhooks import notion_body

STATES = ("Draft", "Sending", "Sent", "Paused", "Failed")


def write_back_properties() -> dict:
    """What docs/notion.md asks the database to have."""
    return {
        "Status": status_property("Draft", options=STATES),
        "Send error": rich_text_property(),
        "Sent": number_property(),
        "Sent at": date_property(),
        "mailout_id": rich_text_property(),
    }


def newsletter_page(notion, blocks, *, title="May news", properties=None) -> str:
    return notion.add_page(
        title=title, properties=write_back_properties() if properties is None else properties, blocks=blocks
    )


def fast_pages(notion, token: str | None = None):
    """A () -> NotionPages factory on the stand-in that neither paces at
    Notion's rate nor sleeps on a Retry-After: tests need no real waits."""

    def make() -> NotionPages:
        return NotionPages(
            token or notion.token, base_url=notion.url, pacer=Pacer(10_000), sleep=lambda seconds: None
        )

    return make


def press_body(page_id: str, *, event_id="1b2c3d4e-0000-4000-8000-000000000003", mailout_id: str = "") -> dict:
    """The button's body for the page, its mailout_id property empty (or `mailout_id`)."""
    body = notion_body(
        {"mailout_id": {"id": "%3AUPp", "type": "rich_text", "rich_text": (
            [{"type": "text", "text": {"content": mailout_id}, "plain_text": mailout_id}] if mailout_id else []
        )}},
        page_id=page_id,
    )  # fmt: skip
    body["source"]["event_id"] = event_id
    return body


def patches(notion, page_id: str) -> list[dict]:
    """The properties of every PATCH the page received, in order."""
    return [
        r.body["properties"]
        for r in notion.api_requests
        if r.method == "PATCH" and r.path == f"/v1/pages/{page_id}" and r.status == 200
    ]


def status_of(notion, page_id: str) -> str | None:
    value = notion.page_properties(page_id)["Status"]["status"]
    return value["name"] if value else None
