"""Which mailout a webhook body names (`mailout_id`, or a Notion automation's page property), or which page it asks to import, and which Notion event sent it.

Notion's "Send webhook" action posts the page (`{"data": {"properties":
...}}`); the mailout id is kept in one of its properties, named by
NOTION_MAILOUT_PROPERTY. Its `source` names the automation event
(`source.event_id`) and which attempt at delivering it this is
(`source.attempt`): a retry carries the same event id (docs/notion.md).
"""

from __future__ import annotations

from uuid import UUID

from ..notion.ids import page_id
from ..notion.properties import property_text as notion_property_text
from .errors import ApiError

# How much of a page's property names a 400 lists (they are the caller's text).
MAX_LISTED_PROPERTIES = 10
MAX_NAME_CHARS = 40
# Notion's event ids are UUIDs; anything longer than this is not one of
# them, and is not kept (sql/012_event_ids.sql holds the same bound).
MAX_EVENT_ID_CHARS = 200


def is_notion_body(payload: dict) -> bool:
    return "mailout_id" not in payload and isinstance(payload.get("data"), dict)


def extract_mailout_id(payload: dict, notion_property: str) -> UUID:
    if not is_notion_body(payload):
        value = payload.get("mailout_id")
        if value is None:
            raise ApiError(400, "mailout_id is missing from the body")
        return parse_uuid(value, "mailout_id")

    what = f"Notion property '{notion_property}'"
    properties = payload["data"].get("properties")
    if not isinstance(properties, dict):
        raise ApiError(400, f"the Notion page has no properties, so {what} is missing")
    if notion_property not in properties:
        raise ApiError(400, f"{what} is missing from the page; {found_properties(properties)}")
    value = notion_property_text(properties[notion_property])
    if value is None:
        raise ApiError(400, f"{what} must be text, a title or a formula that gives text")
    return parse_uuid(value, what)


def page_to_import(payload: dict, notion_property: str) -> str | None:
    """The id of the page a Notion body asks to import and send: a body
    about a page (`data.object` "page") whose mailout-id property is
    absent or holds no text. None for any other body (which names its
    mailout as before). A page id that is not one is a 400."""
    if not is_notion_body(payload) or payload["data"].get("object") != "page":
        return None
    properties = payload["data"].get("properties")
    if isinstance(properties, dict) and notion_property in properties:
        value = notion_property_text(properties[notion_property])
        if value is None or value.strip():
            return None
    try:
        return page_id(payload["data"].get("id"))
    except ValueError as exc:
        raise ApiError(400, f"data.id: {exc}") from None


def extract_event_id(payload: dict) -> str | None:
    """The body's `source.event_id`, or None when there is none fit to keep.

    It is the caller's text, compared with the stored one byte for byte: a
    string of 1 to MAX_EVENT_ID_CHARS printable characters is kept as it is,
    anything else (another type, empty, too long, a control character, a
    lone surrogate) counts as no event id, which is how every request
    without one has always been treated."""
    source = payload.get("source")
    if not isinstance(source, dict):
        return None
    event_id = source.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        return None
    # Control, format and separator characters and lone surrogates are
    # not printable.
    if not event_id.isprintable():
        return None
    return event_id


def found_properties(properties: dict) -> str:
    """What the page has instead, for the person setting up the automation:
    the property names it found, so that a typo or a renamed column shows.
    The names come from whoever posts the body: the list is bounded, and
    each name is cut short with anything not printable replaced."""
    if not properties:
        return "the page has no properties at all"
    names = [f"'{shown_name(name)}'" for name in list(properties)[:MAX_LISTED_PROPERTIES]]
    more = len(properties) - len(names)
    listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    return f"it has {listed} (set NOTION_MAILOUT_PROPERTY to the one holding the mailout id)"


def shown_name(name: str) -> str:
    # Control, format (such as a right-to-left override) and separator
    # characters, and lone surrogates, are not printable.
    shown = "".join(ch if ch.isprintable() else "\ufffd" for ch in name[:MAX_NAME_CHARS])
    return shown + ("..." if len(name) > MAX_NAME_CHARS else "")


def parse_uuid(value, what: str) -> UUID:
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a string holding a UUID")
    if not value.strip():
        raise ApiError(400, f"{what} is empty")
    try:
        return UUID(value.strip())
    except ValueError:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ApiError(400, f"{what} is not a UUID: {shown!r}") from None
