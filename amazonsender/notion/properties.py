"""Notion page property values: their text, and the values written back (status, select, number, date, rich text).

A property value is `{"id", "type", <type>: ...}` (developers.notion.com,
"Page properties"). Reading takes any shape without raising: a page's
properties are the editor's (or a webhook caller's) data.
"""

from __future__ import annotations

# Notion: a rich text object's content holds at most 2,000 characters.
MAX_RICH_TEXT_CHARS = 2000


def property_text(prop) -> str | None:
    """The text of a property of a kind that holds text: rich_text, title,
    a formula giving a string, url, email, phone_number, or a plain string;
    None for any other kind or shape."""
    if isinstance(prop, str):
        return prop
    if not isinstance(prop, dict):
        return None
    kind = prop.get("type")
    if kind in ("rich_text", "title") and isinstance(prop.get(kind), list):
        return "".join(rich_text_piece(piece) for piece in prop[kind])
    if kind == "formula" and isinstance(prop.get("formula"), dict):
        formula = prop["formula"]
        if formula.get("type") == "string" and isinstance(formula.get("string"), str):
            return formula["string"]
        return None
    if kind in ("url", "email", "phone_number") and isinstance(prop.get(kind), str):
        return prop[kind]
    return None


def rich_text_piece(piece) -> str:
    if not isinstance(piece, dict):
        return ""
    if isinstance(piece.get("plain_text"), str):
        return piece["plain_text"]
    text = piece.get("text")
    if isinstance(text, dict) and isinstance(text.get("content"), str):
        return text["content"]
    return ""


def title_name(properties: dict) -> str | None:
    """The name of the page's title property (every database page has one)."""
    for name, prop in properties.items():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return name
    return None


def property_types(properties) -> dict[str, str]:
    """{name: type} of a page's properties, whatever else they hold."""
    if not isinstance(properties, dict):
        return {}
    return {
        name: prop["type"]
        for name, prop in properties.items()
        if isinstance(name, str) and isinstance(prop, dict) and isinstance(prop.get("type"), str)
    }


def rich_text_value(text: str) -> dict:
    """A rich_text (or title) property's new value: `text`, cut to what
    one rich text object may hold."""
    return [{"type": "text", "text": {"content": text[:MAX_RICH_TEXT_CHARS]}}]
