"""What the Notion stand-in accepts in a request, and the page properties it keeps, from Notion's API reference.

Sources (developers.notion.com/reference): "Status codes" (error codes and
example messages: "body failed validation: body.properties should be
defined, instead was `undefined`."), "Versioning" (Notion-Version is
required; missing: 400 missing_version), "Request limits" (rich text
content at most 2,000 characters, arrays at most 100 elements, page_size at
most 100), "Update page properties" and "Page properties" (the property
value shapes), "Pagination" (start_cursor is opaque; page_size default and
maximum 100).

Stricter than Notion where the reference does not say: an unknown key in a
property value, a rich text item other than "text", a property type not
modelled here, and any request parameter not listed are refused.

Properties are kept as `Prop`s, built with `title_property`,
`rich_text_property`, `status_property`, `select_property`,
`number_property`, `date_property` and `formula_property` (read-only).
"""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote

MAX_PAGE_SIZE = 100
MAX_RICH_TEXT_CHARS = 2000
MAX_ARRAY_ITEMS = 100
MAX_OPTION_NAME_CHARS = 100
# The versions whose page and block formats the stand-in answers in.
SUPPORTED_VERSIONS = ("2022-06-28", "2025-09-03")
UPDATABLE_TYPES = ("title", "rich_text", "status", "select", "number", "date")
PAGE_BODY_KEYS = ("properties", "archived", "in_trash", "icon", "cover", "is_locked", "erase_content", "template")


class BadRequest(Exception):
    """A request Notion answers 400 (or `status`) with this code and message."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def invalid(where: str, should: str, value: object) -> BadRequest:
    shown = "undefined" if value is _MISSING else repr(value)[:80]
    return BadRequest("validation_error", f"body failed validation: {where} should be {should}, instead was `{shown}`.")


_MISSING = object()


# -- properties ---------------------------------------------------------------


@dataclass
class Prop:
    type: str
    value: object  # the value under the type's key, as Notion answers it
    options: list[dict] = field(default_factory=list)  # status and select
    id: str = field(default_factory=lambda: quote(secrets.token_urlsafe(3)[:4], safe=""))

    def answer(self) -> dict:
        return {"id": self.id, "type": self.type, self.type: self.value}

    def option(self, *, name: str | None = None, option_id: str | None = None) -> dict | None:
        for option in self.options:
            if (name is not None and option["name"] == name) or (option_id is not None and option["id"] == option_id):
                return option
        return None


def rich_text(text: str, *, link: str | None = None, **annotations) -> dict:
    """One rich text object as Notion answers it."""
    marks = {"bold": False, "italic": False, "strikethrough": False, "underline": False, "code": False}
    marks.update(annotations)
    marks.setdefault("color", "default")
    return {
        "type": "text",
        "text": {"content": text, "link": {"url": link} if link else None},
        "annotations": marks,
        "plain_text": text,
        "href": link,
    }


def _options(names, color="default") -> list[dict]:
    return [{"id": str(uuid.uuid4()), "name": name, "color": color} for name in names]


def title_property(text: str) -> Prop:
    return Prop("title", [rich_text(text)], id="title")


def rich_text_property(text: str = "") -> Prop:
    return Prop("rich_text", [rich_text(text)] if text else [])


def status_property(current: str | None, options=("Not started", "In progress", "Done")) -> Prop:
    prop = Prop("status", None, _options(options))
    prop.value = prop.option(name=current) if current is not None else None
    if current is not None and prop.value is None:
        raise ValueError(f"{current!r} is not one of the options {options}")
    return prop


def select_property(current: str | None = None, options=()) -> Prop:
    names = list(options) + ([current] if current is not None and current not in options else [])
    prop = Prop("select", None, _options(names))
    prop.value = prop.option(name=current) if current is not None else None
    return prop


def number_property(number: float | None = None) -> Prop:
    return Prop("number", number)


def date_property(start: str | None = None) -> Prop:
    return Prop("date", {"start": start, "end": None, "time_zone": None} if start else None)


def formula_property(text: str) -> Prop:
    return Prop("formula", {"type": "string", "string": text})


def find_property(properties: dict[str, Prop], key: str) -> tuple[str, Prop] | None:
    """A property by its name, or by its id (Notion takes either)."""
    if key in properties:
        return key, properties[key]
    for name, prop in properties.items():
        if prop.id == key:
            return name, prop
    return None


def check_page_update(properties: dict[str, Prop], body: object) -> dict[str, tuple[Prop, object]]:
    """The new values a PATCH /v1/pages body sets, all checked before any is applied."""
    if not isinstance(body, dict):
        raise invalid("body", "an object", body)
    for key in body:
        if key not in PAGE_BODY_KEYS:
            raise invalid(f"body.{key}", "not present", body[key])
        if key != "properties":
            raise BadRequest("invalid_request", f"The Notion stand-in does not implement updating {key}.")
    updates = body.get("properties", _MISSING)
    if updates is _MISSING:
        raise invalid("body.properties", "defined", _MISSING)
    if not isinstance(updates, dict):
        raise invalid("body.properties", "an object", updates)
    changes: dict[str, tuple[Prop, object]] = {}
    for key, value in updates.items():
        found = find_property(properties, key)
        if found is None:
            raise BadRequest("validation_error", f"{key} is not a property that exists.")
        name, prop = found
        changes[name] = (prop, _check_value(prop, value, f"body.properties.{key}"))
    return changes


def _check_value(prop: Prop, value: object, where: str) -> object:
    if prop.type not in UPDATABLE_TYPES:
        raise BadRequest("validation_error", f"body failed validation: {where} is a {prop.type} property, which cannot be updated.")
    if not isinstance(value, dict):
        raise invalid(where, "an object", value)
    for key in value:
        if key not in (prop.type, "type"):
            raise invalid(f"{where}.{key}", "not present", value[key])
    if "type" in value and value["type"] != prop.type:
        raise invalid(f"{where}.type", f'"{prop.type}"', value["type"])
    if prop.type not in value:
        raise invalid(f"{where}.{prop.type}", "defined", _MISSING)
    inner = value[prop.type]
    where = f"{where}.{prop.type}"
    if prop.type in ("title", "rich_text"):
        return _check_rich_text(inner, where)
    if prop.type == "number":
        if inner is not None and (isinstance(inner, bool) or not isinstance(inner, (int, float)) or not math.isfinite(inner)):
            raise invalid(where, "a number or `null`", inner)
        return inner
    if prop.type == "date":
        return _check_date(inner, where)
    return _check_option(prop, inner, where)


def _check_rich_text(items: object, where: str) -> list[dict]:
    if not isinstance(items, list):
        raise invalid(where, "an array", items)
    if len(items) > MAX_ARRAY_ITEMS:
        raise invalid(f"{where}.length", f"≤ `{MAX_ARRAY_ITEMS}`", len(items))
    kept = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise invalid(here, "an object", item)
        for key in item:
            if key not in ("type", "text", "annotations"):
                raise invalid(f"{here}.{key}", "not present", item[key])
        if item.get("type", "text") != "text":
            raise invalid(f"{here}.type", '"text" (the stand-in models no other)', item.get("type"))
        text = item.get("text", _MISSING)
        if not isinstance(text, dict):
            raise invalid(f"{here}.text", "an object", text)
        content = text.get("content", _MISSING)
        if not isinstance(content, str):
            raise invalid(f"{here}.text.content", "a string", content)
        if len(content) > MAX_RICH_TEXT_CHARS:
            raise invalid(f"{here}.text.content.length", f"≤ `{MAX_RICH_TEXT_CHARS}`", len(content))
        link = text.get("link")
        if link is not None and not (isinstance(link, dict) and isinstance(link.get("url"), str)):
            raise invalid(f"{here}.text.link", "an object with a url, or `null`", link)
        annotations = item.get("annotations", {})
        if not isinstance(annotations, dict):
            raise invalid(f"{here}.annotations", "an object", annotations)
        kept.append(rich_text(content, link=link["url"] if link else None, **annotations))
    return kept


def _check_date(inner: object, where: str) -> dict | None:
    if inner is None:
        return None
    if not isinstance(inner, dict):
        raise invalid(where, "an object or `null`", inner)
    for key in inner:
        if key not in ("start", "end", "time_zone"):
            raise invalid(f"{where}.{key}", "not present", inner[key])
    start = inner.get("start", _MISSING)
    if not _is_iso_date(start):
        raise invalid(f"{where}.start", "a valid ISO 8601 date string", start)
    end = inner.get("end")
    if end is not None and not _is_iso_date(end):
        raise invalid(f"{where}.end", "a valid ISO 8601 date string or `null`", end)
    time_zone = inner.get("time_zone")
    if time_zone is not None and not isinstance(time_zone, str):
        raise invalid(f"{where}.time_zone", "a string or `null`", time_zone)
    return {"start": start, "end": end, "time_zone": time_zone}


def _is_iso_date(value: object) -> bool:
    if not isinstance(value, str) or not value[:4].isdigit():
        return False
    try:
        (date if len(value) == 10 else datetime).fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_option(prop: Prop, inner: object, where: str) -> dict | None:
    """status: an existing option only; select: a new name adds an option."""
    if inner is None:
        return None
    if not isinstance(inner, dict) or not inner:
        raise invalid(where, "an object with a name or an id, or `null`", inner)
    for key in inner:
        if key not in ("name", "id", "color"):
            raise invalid(f"{where}.{key}", "not present", inner[key])
    name, option_id = inner.get("name"), inner.get("id")
    if name is not None and not isinstance(name, str):
        raise invalid(f"{where}.name", "a string", name)
    if option_id is not None and not isinstance(option_id, str):
        raise invalid(f"{where}.id", "a string", option_id)
    if name is None and option_id is None:
        raise invalid(where, "an object with a name or an id", inner)
    option = prop.option(name=name, option_id=option_id)
    if option is not None:
        return option
    if prop.type == "status" or name is None:
        kind = "Status" if prop.type == "status" else "Select"
        raise BadRequest("validation_error", f'Invalid {prop.type} option. {kind} option "{name or option_id}" does not exist.')
    if not name.strip() or "," in name or len(name) > MAX_OPTION_NAME_CHARS:
        raise invalid(f"{where}.name", f"a name without commas, 1 to {MAX_OPTION_NAME_CHARS} characters", name)
    return {"id": str(uuid.uuid4()), "name": name, "color": "default", "_new": True}


def apply_page_update(changes: dict[str, tuple[Prop, object]]) -> None:
    for prop, value in changes.values():
        if isinstance(value, dict) and value.pop("_new", False):
            prop.options.append(value)
        prop.value = value


# -- the other request parameters --------------------------------------------


def check_version(headers: dict[str, str]) -> None:
    version = headers.get("notion-version", "").strip()
    if not version:
        raise BadRequest(
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
        )
    if version not in SUPPORTED_VERSIONS:
        raise BadRequest(
            "validation_error",
            f"Notion-Version header failed validation: Notion-Version header should be one of "
            f"{', '.join(SUPPORTED_VERSIONS)} (the versions the stand-in models), instead was `{version[:40]}`.",
        )


def check_uuid(value: str, where: str) -> str:
    """A path id with or without dashes, as Notion takes it: the dashed UUID."""
    try:
        if len(value) not in (32, 36):
            raise ValueError
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(
            "validation_error", f"path failed validation: {where} should be a valid uuid, instead was `{value[:60]!r}`."
        ) from None


def check_list_query(query: dict[str, list[str]]) -> tuple[int, str | None]:
    """page_size and start_cursor of a GET list request."""
    for key, values in query.items():
        if key not in ("page_size", "start_cursor"):
            raise BadRequest("validation_error", f"query failed validation: query.{key[:40]} should be not present.")
        if len(values) != 1:
            raise BadRequest("validation_error", f"query failed validation: query.{key} should be given once.")
    page_size = MAX_PAGE_SIZE
    if "page_size" in query:
        raw = query["page_size"][0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise BadRequest(
                "validation_error",
                f"query failed validation: query.page_size should be a number between 1 and {MAX_PAGE_SIZE}, "
                f"instead was `{raw[:20]!r}`.",
            )
        page_size = int(raw)
    cursor = query["start_cursor"][0] if "start_cursor" in query else None
    return page_size, cursor
