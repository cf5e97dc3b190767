"""A Notion page as a mailout's content: its subject from a property, its body rendered from its blocks, and what was left out.

Two steps, so that a webhook can answer after the first: `read_page` (one
request: the page and its subject; a wrong token, a page not shared with
the integration or a bad subject show here) and `read_content` (every
block, page by page and level by level at Notion's pace, then rendered).
`import_page` does both. Nothing here writes to the database: the callers
store the result (store/notion.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..content import ContentProblem, check_content, subject_problem
from .api import NotionPages
from .images import ImageUrls
from .properties import property_text, title_name
from .render import Skipped, render_page

# How much of a property name a message repeats (it is the page's text).
MAX_NAME_CHARS = 40


@dataclass(frozen=True)
class Page:
    """A page read for import: its id, its subject and its properties (the
    types the status write-back needs)."""

    id: str
    subject: str
    properties: dict


@dataclass(frozen=True)
class Imported:
    """A page's content as a mailout: subject, body (HTML), its plain text,
    and the blocks left out or shown only as a link, with why."""

    page: Page
    subject: str
    body: str
    text: str
    skipped: list[Skipped] = field(default_factory=list)


def read_page(notion: NotionPages, page: str, *, subject_property: str | None) -> Page:
    """The page and its subject. Raises the NotionError of a refused
    request, or ContentProblem for a subject that cannot go out."""
    found = notion.page(page)
    properties = found.get("properties") if isinstance(found.get("properties"), dict) else {}
    return Page(str(found.get("id") or page), subject_of(properties, subject_property), properties)


def read_content(notion: NotionPages, page: Page, *, images=None) -> Imported:
    """Every block of the page, rendered. Raises the NotionError of a
    refused request, or ContentProblem when the body cannot go out (a page
    with nothing an email can show, say)."""
    images = images if images is not None else ImageUrls()
    rendered = render_page(notion.blocks(page.id), image_url=images)
    skipped = [
        Skipped(s.block_id, s.type, images.reasons.get(s.block_id, s.reason)) for s in rendered.skipped
    ]
    if not rendered.html:
        raise ContentProblem("the Notion page has nothing an email can show: write its content in the page")
    check_content(page.subject, rendered.html)
    return Imported(page, page.subject, rendered.html, rendered.text, skipped)


def import_page(notion: NotionPages, page: str, *, subject_property: str | None, images=None) -> Imported:
    return read_content(notion, read_page(notion, page, subject_property=subject_property), images=images)


def subject_of(properties: dict, subject_property: str | None) -> str:
    """The subject: the named property's text (the title when None), one
    line, not empty. ContentProblem otherwise, naming the property."""
    name = subject_property or title_name(properties)
    if name is None:
        raise ContentProblem("the Notion page has no title property to take the subject from")
    shown = name[:MAX_NAME_CHARS]
    what = f"the subject (Notion property '{shown}')"
    if name not in properties:
        raise ContentProblem(f"{what} is missing from the page: set NOTION_SUBJECT_PROPERTY to a property it has")
    text = property_text(properties[name])
    if text is None:
        raise ContentProblem(f"{what} must be a title, text or a formula that gives text")
    subject = text.strip()
    if not subject:
        raise ContentProblem(f"{what} is empty: give the page a title")
    if any(ch in subject for ch in "\r\n\u2028\u2029"):
        raise ContentProblem(f"{what} is more than one line: a subject is one line of text")
    problem = subject_problem(subject)
    if problem:
        raise ContentProblem(f"{what}: {problem}")
    return subject
