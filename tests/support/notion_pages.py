"""Notion pages as the Notion API returns them: block and rich text objects built to its reference, and a sample newsletter page.

The shapes follow developers.notion.com/reference/block and
/reference/rich-text: each block has `object: "block"`, `id`, `parent`,
`created_time`, `last_edited_time`, `created_by`, `last_edited_by`,
`has_children`, `archived`, `in_trash`, `type`, and its type's object under
the type's name. Two forms of a page:

- nested (`sample_page()`): each block with children carries them under
  "children", the convention of amazonsender.notion.render;
- flat (`children_by_parent(blocks)`): what GET /v1/blocks/{id}/children
  answers for each parent id (the page's id for the top level), blocks
  without the "children" key, for an API stand-in.
"""

from __future__ import annotations

import copy
import itertools
import uuid

PAGE_ID = "6c1d0b6e-2f4a-4f7e-9a51-3b0c2d9e8f10"
USER_ID = "ee5f0f84-409a-440f-983a-a5315961c6e4"
CREATED = "2025-06-02T09:14:00.000Z"
EDITED = "2025-06-03T17:41:00.000Z"
_IDS = uuid.UUID("0b9f6c52-7d1e-4f63-8a0e-5a4c3d2b1e00")
# A Notion-hosted file's URL: signed, expiring within the hour.
NOTION_FILE_URL = (
    "https://prod-files-secure.s3.us-west-2.amazonaws.com/5e1f/{name}"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=9f3c"
)


def text(content: str, *, link: str | None = None, color: str = "default", **flags: bool) -> dict:
    """A rich text item of type "text"; flags are the annotations (bold=True...)."""
    return {
        "type": "text",
        "text": {"content": content, "link": {"url": link} if link else None},
        "annotations": _annotations(color, flags),
        "plain_text": content,
        "href": link,
    }


def equation(expression: str) -> dict:
    return {
        "type": "equation",
        "equation": {"expression": expression},
        "annotations": _annotations("default", {}),
        "plain_text": expression,
        "href": None,
    }


def mention(kind: str, value: dict, plain_text: str, href: str | None = None) -> dict:
    """A mention: kind "user", "page", "database", "date" or "link_preview"."""
    return {
        "type": "mention",
        "mention": {"type": kind, kind: value},
        "annotations": _annotations("default", {}),
        "plain_text": plain_text,
        "href": href,
    }


def _annotations(color: str, flags: dict) -> dict:
    unknown = set(flags) - {"bold", "italic", "strikethrough", "underline", "code"}
    assert not unknown, f"not annotations: {unknown}"
    return {
        "bold": flags.get("bold", False),
        "italic": flags.get("italic", False),
        "strikethrough": flags.get("strikethrough", False),
        "underline": flags.get("underline", False),
        "code": flags.get("code", False),
        "color": color,
    }


def notion_url(page_id: str) -> str:
    return "https://www.notion.so/" + page_id.replace("-", "")


class PageBuilder:
    """Blocks with deterministic ids (the same page each time it is built)."""

    def __init__(self, seed: str = "sample"):
        self._seed = seed
        self._numbers = itertools.count(1)

    def block(self, kind: str, content: dict | None = None, children: list[dict] | None = None) -> dict:
        block = {
            "object": "block",
            "id": str(uuid.uuid5(_IDS, f"{self._seed}/{next(self._numbers)}")),
            "parent": {"type": "page_id", "page_id": PAGE_ID},
            "created_time": CREATED,
            "last_edited_time": EDITED,
            "created_by": {"object": "user", "id": USER_ID},
            "last_edited_by": {"object": "user", "id": USER_ID},
            "has_children": bool(children),
            "archived": False,
            "in_trash": False,
            "type": kind,
            kind: content if content is not None else {},
        }
        if children:
            for child in children:
                child["parent"] = {"type": "block_id", "block_id": block["id"]}
            block["children"] = children
        return block

    def rich(self, kind: str, *items: dict | str, color: str = "default", children=None, **extra) -> dict:
        """A block whose content is rich text (paragraph, headings, list items,
        to_do, quote, toggle, callout...); strings become plain text items."""
        rich_text = [text(item) if isinstance(item, str) else item for item in items]
        return self.block(kind, {"rich_text": rich_text, "color": color, **extra}, children)

    def table(self, rows: list[list[str]], *, column_header: bool = True, row_header: bool = False) -> dict:
        cells = [self.block("table_row", {"cells": [[text(cell)] if cell else [] for cell in row]}) for row in rows]
        content = {"table_width": len(rows[0]), "has_column_header": column_header, "has_row_header": row_header}
        return self.block("table", content, cells)

    def image(self, url: str, caption: str = "", *, hosted: bool = False) -> dict:
        source = {"type": "file", "file": {"url": url, "expiry_time": "2025-06-03T18:41:00.000Z"}} if hosted else {
            "type": "external",
            "external": {"url": url},
        }
        return self.block("image", {"caption": [text(caption)] if caption else [], **source})


def sample_page() -> list[dict]:
    """A realistic newsletter page of every block type (nested form)."""
    b = PageBuilder()
    return [
        *_introduction(b),
        *_highlights(b),
        *_lists_and_tasks(b),
        *_media_and_tables(b),
        *_layout_and_unsupported(b),
        *_closing(b),
    ]


def _introduction(b: PageBuilder) -> list[dict]:
    return [
        b.rich("heading_1", "The Monthly Bulletin — June", is_toggleable=False),
        b.rich(
            "paragraph",
            "Welcome back, ",
            mention("user", {"object": "user", "id": USER_ID}, "@Ada Lovelace"),
            "! This month: ",
            text("a new release", bold=True),
            ", ",
            text("two talks", italic=True),
            " and a ",
            text("small", strikethrough=True),
            " ",
            text("big", underline=True),
            " change to how we ship.",
        ),
        b.rich(
            "paragraph",
            "Read the ",
            text("release notes", link="https://example.com/releases/4.2"),
            " or the page ",
            mention("page", {"id": PAGE_ID}, "Launch notes", notion_url(PAGE_ID)),
            ", planned for ",
            mention("date", {"start": "2025-06-21", "end": None, "time_zone": None}, "2025-06-21"),
            ".",
        ),
        b.rich("paragraph"),
        b.rich(
            "paragraph",
            text("Red words", color="red"),
            " and ",
            text("highlighted words", color="yellow_background"),
            " and ",
            text("pip install amazonsender", code=True),
            ".",
        ),
        b.rich("paragraph", "A whole paragraph in blue.", color="blue"),
        b.rich("paragraph", "Euler's identity, inline: ", equation("e^{i\\pi} + 1 = 0"), "."),
        b.rich("paragraph", "Our tracker: ", mention("database", {"id": USER_ID}, "Roadmap", notion_url(USER_ID))),
        b.rich(
            "paragraph",
            "As seen on ",
            mention("link_preview", {"url": "https://github.com/example/repo"}, "https://github.com/example/repo",
                    "https://github.com/example/repo"),
        ),
        b.rich("callout", "Tickets for the meetup are free this year.", icon={"type": "emoji", "emoji": "🎟️"},
               color="yellow_background"),
        b.rich("callout", "Maintenance window: Sunday 02:00–04:00 UTC.",
               icon={"type": "external", "external": {"url": "https://example.com/icons/wrench.png"}},
               children=[b.rich("paragraph", "Nothing is lost; sends pause and resume by themselves.")]),
        b.block("divider"),
    ]


def _highlights(b: PageBuilder) -> list[dict]:
    return [
        b.rich("heading_2", "Highlights", is_toggleable=False),
        b.rich("paragraph", "Three things worth your time:"),
        *[b.rich("bulleted_list_item", text(title, bold=True), f" — {detail}") for title, detail in (
            ("Faster sends", "the pacer now keeps to SES's rate without bursts"),
            ("Safer resumes", "a crash mid-send never sends twice"),
            ("Notion import", "write the newsletter where you already write"),
        )],
        b.rich("quote", "The best newsletter is the one people actually read.",
               children=[b.rich("paragraph", "— a reader, last month")]),
        b.rich("heading_3", "From the blog", is_toggleable=False),
        b.block("bookmark", {"caption": [text("How we stopped double sends")],
                             "url": "https://example.com/blog/exactly-once"}),
        b.block("bookmark", {"caption": [], "url": "https://example.com/blog/pacing"}),
        b.block("link_preview", {"url": "https://github.com/example/repo/pull/42"}),
        b.rich("heading_2", "Questions we got", is_toggleable=True, children=[
            b.rich("paragraph", "Can I unsubscribe from one list only? Not yet."),
            b.rich("paragraph", "Is my address shared? Never."),
        ]),
        b.rich("toggle", "What changed in the API?", children=[
            b.rich("paragraph", "Two endpoints gained a ", text("dry_run", code=True), " flag."),
            b.rich("bulleted_list_item", "POST /mailouts"),
            b.rich("bulleted_list_item", "POST /mailouts/{id}/send"),
        ]),
    ]


def _lists_and_tasks(b: PageBuilder) -> list[dict]:
    steps = [b.rich("numbered_list_item", f"Step {n}: {what}") for n, what in enumerate((
        "write the page in Notion",
        "press the Send button",
        "watch the numbers",
    ), start=1)]
    steps[1] = b.rich("numbered_list_item", "Step 2: press the Send button", children=[
        b.rich("bulleted_list_item", "a test send goes to you first"),
        b.rich("bulleted_list_item", "then to everyone", children=[
            b.rich("numbered_list_item", "at the account's rate"),
            b.rich("numbered_list_item", "exactly once"),
        ]),
    ])
    return [
        b.rich("heading_2", "How to send", is_toggleable=False),
        *steps,
        b.rich("paragraph", "And a second list, numbered afresh:"),
        *[b.rich("numbered_list_item", f"Item {n}") for n in range(1, 6)],
        b.rich("heading_3", "Our checklist", is_toggleable=False),
        b.rich("to_do", "Proofread", checked=True),
        b.rich("to_do", "Check the links", checked=True),
        b.rich("to_do", "Send a test", checked=False, children=[
            b.rich("paragraph", "to the whole team this time"),
        ]),
        b.rich("to_do", "Schedule", checked=False),
        *[b.rich("bulleted_list_item", f"Contributor {name}") for name in (
            "Grace", "Linus", "Margaret", "Ken", "Barbara", "Edsger", "Frances", "Dennis",
        )],
    ]


def _media_and_tables(b: PageBuilder) -> list[dict]:
    return [
        b.rich("heading_2", "In pictures", is_toggleable=False),
        b.image("https://images.example.com/team.jpg", "The team at the June meetup"),
        b.image(NOTION_FILE_URL.format(name="chart.png"), "Sends per day", hosted=True),
        b.image("https://images.example.com/no-caption.png"),
        b.rich("heading_2", "Numbers", is_toggleable=False),
        b.table([["Month", "Sent", "Opened"], ["April", "12,400", "48%"], ["May", "13,950", "51%"],
                 ["June", "15,020", ""]]),
        b.table([["Plan", "Free", "Pro"], ["Sends", "1,000", "Unlimited"], ["Support", "Forum", "Email"]],
                column_header=True, row_header=True),
        b.rich("heading_3", "The formula", is_toggleable=False),
        b.block("equation", {"expression": "rate = \\frac{sent}{seconds}"}),
        b.block("code", {"caption": [text("Sending from the command line")],
                         "rich_text": [text('amazonsender mailout send --id 42\nif [ $? -ne 0 ]; then echo "<failed>"; fi')],
                         "language": "shell"}),
        b.block("code", {"caption": [], "rich_text": [text("def hello():\n    return 'world'  # <b>not bold</b>")],
                         "language": "python"}),
    ]


def _layout_and_unsupported(b: PageBuilder) -> list[dict]:
    return [
        b.rich("heading_2", "Two columns", is_toggleable=False),
        b.block("column_list", {}, [
            b.block("column", {}, [
                b.rich("heading_3", "Left", is_toggleable=False),
                b.rich("paragraph", "The left column's words."),
                b.rich("bulleted_list_item", "left one"),
                b.rich("bulleted_list_item", "left two"),
            ]),
            b.block("column", {}, [
                b.rich("heading_3", "Right", is_toggleable=False),
                b.rich("paragraph", "The right column's words."),
                b.image("https://images.example.com/right.png", "Right-hand picture"),
            ]),
        ]),
        b.block("synced_block", {"synced_from": None}, [
            b.rich("paragraph", "This paragraph is synced across our pages."),
        ]),
        b.block("embed", {"caption": [], "url": "https://twitter.com/example/status/1"}),
        b.block("video", {"caption": [text("The talk")], "type": "external",
                          "external": {"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"}}),
        b.block("video", {"caption": [], "type": "file",
                          "file": {"url": NOTION_FILE_URL.format(name="clip.mp4"), "expiry_time": EDITED}}),
        b.block("audio", {"caption": [], "type": "external", "external": {"url": "https://example.com/podcast.mp3"}}),
        b.block("file", {"caption": [], "type": "file", "name": "slides.pdf",
                         "file": {"url": NOTION_FILE_URL.format(name="slides.pdf"), "expiry_time": EDITED}}),
        b.block("pdf", {"caption": [], "type": "external", "external": {"url": "https://example.com/report.pdf"}}),
        b.block("child_page", {"title": "Drafts"}),
        b.block("child_database", {"title": "Subscribers (internal)"}),
        b.block("link_to_page", {"type": "page_id", "page_id": PAGE_ID}),
        b.block("breadcrumb", {}),
        b.block("table_of_contents", {"color": "default"}),
        b.block("unsupported", {}),
        b.block("template", {"rich_text": [text("Add a new section")]}),
    ]


def _closing(b: PageBuilder) -> list[dict]:
    return [
        b.block("divider"),
        b.rich("heading_2", "Until next month", is_toggleable=False),
        *[b.rich("paragraph", line) for line in (
            "Thank you for reading.",
            "Reply to this email to reach the editors; every message is read.",
            "Forward it to someone who would like it.",
        )],
        b.rich("paragraph", "Write to ", text("news@example.com", link="mailto:news@example.com"), "."),
        b.rich("paragraph", text("— The editors", italic=True), color="gray"),
    ]


def walk(blocks: list[dict]):
    """Every block of the nested form, parents before their children."""
    for block in blocks:
        yield block
        yield from walk(block.get("children", []))


def children_by_parent(blocks: list[dict], parent_id: str = PAGE_ID) -> dict[str, list[dict]]:
    """The flat form: for each parent id, its children as GET
    /v1/blocks/{id}/children returns them (no "children" key)."""
    flat: dict[str, list[dict]] = {}

    def add(parent: str, children: list[dict]) -> None:
        flat[parent] = []
        for block in children:
            bare = copy.deepcopy({key: value for key, value in block.items() if key != "children"})
            flat[parent].append(bare)
            if block.get("children"):
                add(block["id"], block["children"])

    add(parent_id, blocks)
    return flat


def nested_from_flat(flat: dict[str, list[dict]], parent_id: str = PAGE_ID) -> list[dict]:
    """The nested form again from the flat one (what an importer builds)."""
    blocks = copy.deepcopy(flat.get(parent_id, []))
    for block in blocks:
        if block.get("has_children"):
            block["children"] = nested_from_flat(flat, block["id"])
    return blocks
