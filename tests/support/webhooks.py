"""Helpers for tests that call the webhook: the secret's header, Notion's "Send webhook" body, many requests at once, and waiting for the background sends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.settings import SHARED_SECRET

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


def wait_for_background_sends(app):
    for thread in app.extensions.get("background_sends", []):
        thread.join(timeout=30)
        assert not thread.is_alive()


def notion_body(properties: dict, page_id="59833787-2cf9-4fdf-8782-e53db20768a5") -> dict:
    """The shape of Notion's "Send webhook" automation action."""
    return {
        "source": {
            "type": "automation",
            "automation_id": "1b2c3d4e-0000-4000-8000-000000000001",
            "action_id": "1b2c3d4e-0000-4000-8000-000000000002",
            "event_id": "1b2c3d4e-0000-4000-8000-000000000003",
            "attempt": 1,
        },
        "data": {
            "object": "page",
            "id": page_id,
            "created_time": "2026-11-20T10:00:00.000Z",
            "parent": {"type": "database_id", "database_id": "d9824bdc-8445-4327-be8b-5b47500af6ce"},
            "properties": {
                "Name": {"id": "title", "type": "title", "title": [{"type": "text", "plain_text": "November"}]},
                **properties,
            },
            "url": "https://www.notion.so/November-59833787",
        },
    }


def rich_text(value: str) -> dict:
    return {
        "id": "%3AUPp",
        "type": "rich_text",
        "rich_text": [
            {
                "type": "text",
                "text": {"content": value, "link": None},
                "annotations": {"bold": False, "code": False, "color": "default"},
                "plain_text": value,
                "href": None,
            }
        ],
    }


def at_once(n: int, call):
    """`call()` from `n` threads released together; their results."""
    barrier = threading.Barrier(n)

    def run(_):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(n) as threads:
        return list(threads.map(run, range(n)))
