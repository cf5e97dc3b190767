"""Notion pages rendered as a mailout body: hostile pages (control characters, markup, deep nesting, malformed and random blocks) and the sample page, sent as a real email through MessageBuilder."""

from __future__ import annotations

import email
import email.policy
import random
import re

import pytest

from amazonsender.content import check_content
from amazonsender.message import Footer, MessageBuilder
from amazonsender.notion.render import MAX_DEPTH, Skipped, render_page
from amazonsender.notion.styles import LAYOUT_CLOSE, LAYOUT_OPEN
from tests.support.notion_pages import (
    PAGE_ID,
    PageBuilder,
    children_by_parent,
    nested_from_flat,
    sample_page,
    text,
    walk,
)
from tests.support.rendered_html import assert_email_safe, external_url, render

# Hostile pages


def test_control_characters_nul_and_lone_surrogates_are_dropped():
    b = PageBuilder()
    nasty = "a\x00b\x01c\x1bd\x7fe\x85f\ud800g\r\nh\ri\tj"
    rendered = render(b.rich("paragraph", nasty), b.rich("heading_1", "\x00<h1>", is_toggleable=False))
    assert "abcdefg<br>h<br>i\tj" in rendered.html
    assert rendered.text == "abcdefg\nh\ni\tj\n\n<h1>"
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", rendered.html + rendered.text)
    check_content("Subject", rendered.html)
    assert_email_safe(rendered.html)


def test_script_and_markup_in_text_are_escaped():
    b = PageBuilder()
    rendered = render(
        b.rich("paragraph", "<script>alert(1)</script><style>p{}</style>"),
        b.block("code", {"rich_text": [text("</pre><script>x</script>")], "language": "html", "caption": []}),
        b.rich("callout", "x", icon={"type": "emoji", "emoji": "<b>"}),
        b.table([["<td>", "</table>"]]),
        b.image("https://example.com/x.png\" onerror=\"alert(1)", "\"><script>"),
    )
    parsed = assert_email_safe(rendered.html)
    assert "<script>alert(1)</script>" in "".join(parsed.text)
    assert parsed.all("img") == []  # a URL with spaces in it is no URL
    assert [s.type for s in rendered.skipped] == ["image"]


def deep_chain(levels: int, kind: str = "bulleted_list_item") -> list[dict]:
    """A block nested `levels` deep, built without recursion."""
    innermost: list[dict] = []
    for level in range(levels, 0, -1):
        block = {"object": "block", "id": f"level-{level}", "type": kind, "has_children": bool(innermost),
                 kind: {"rich_text": [text(f"L{level}")]}}
        if innermost:
            block["children"] = innermost
        innermost = [block]
    return innermost


@pytest.mark.parametrize("kind", ["bulleted_list_item", "toggle", "quote", "paragraph", "column", "callout"])
@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1, 5000])
def test_deep_nesting_stops_at_the_depth_cap_without_recursion_errors(kind, levels):
    rendered = render_page(deep_chain(levels, kind), image_url=external_url)
    shown = min(levels, MAX_DEPTH)
    if kind != "column":
        assert f"L{shown}" in rendered.text and f"L{shown + 1}" not in rendered.text
    if rendered.html:  # columns alone hold no text
        assert_email_safe(rendered.html)
    if levels > MAX_DEPTH:
        assert rendered.skipped == [Skipped(f"level-{MAX_DEPTH + 1}", kind, f"nested more than {MAX_DEPTH} levels deep")]
    else:
        assert rendered.skipped == []


@pytest.mark.parametrize(
    "block",
    [
        {},
        {"type": None},
        {"type": "paragraph"},
        {"type": "paragraph", "paragraph": None},
        {"type": "paragraph", "paragraph": {"rich_text": "not a list"}},
        {"type": "paragraph", "paragraph": {"rich_text": [None, 3, "x", {"type": "text"}, {"plain_text": 5}]}},
        {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "text": {"content": "ok"}, "annotations": 7}]}},
        {"type": "heading_2", "heading_2": {"rich_text": [{"type": "mention", "plain_text": "m", "href": {"x": 1}}]}},
        {"type": "bulleted_list_item"},
        {"type": "to_do", "to_do": {"checked": "yes"}},
        {"type": "table", "table": {}, "has_children": True},
        {"type": "table", "table": {}, "children": [None, {"type": "paragraph"}, {"type": "table_row", "table_row": {"cells": 3}}]},
        {"type": "table", "table": {"has_column_header": True}, "children": [{"type": "table_row", "table_row": {"cells": [None, [text("a")]]}}]},
        {"type": "image", "image": {"type": "external", "external": None}},
        {"type": "image"},
        {"type": "callout", "callout": {"icon": {"type": "emoji", "emoji": None}}},
        {"type": "code", "code": {"rich_text": None}},
        {"type": "equation", "equation": {"expression": ["x"]}},
        {"type": "bookmark", "bookmark": {"url": None}},
        {"type": "video", "video": {"type": "external", "external": "https://x.test"}},
        {"type": "toggle", "toggle": {}, "has_children": True, "children": "nope"},
        {"type": "column_list", "column_list": {}, "children": [1, 2, 3]},
        {"type": ["paragraph"], "id": ["x"]},
        {"type": "paragraph", "id": "x" * 1000, "in_trash": True},
    ],
)
def test_malformed_blocks_render_what_is_valid_and_never_raise(block):
    rendered = render(block, PageBuilder().rich("paragraph", "still here"))
    assert rendered.text.endswith("still here")
    assert_email_safe(rendered.html)
    assert all(len(s.block_id) <= 100 and len(s.type) <= 100 for s in rendered.skipped)


def test_entries_that_are_not_blocks_are_counted_as_skipped():
    rendered = render_page([None, "paragraph", 3, PageBuilder().rich("paragraph", "ok")], image_url=external_url)
    assert rendered.text == "ok"
    assert rendered.skipped == [Skipped("", "", "3 entries that are not blocks")]


def test_children_announced_but_not_fetched_are_listed():
    b = PageBuilder()
    toggle = b.rich("toggle", "Open me")
    toggle["has_children"] = True
    rendered = render(toggle)
    assert rendered.text == "Open me"
    assert rendered.skipped == [Skipped(toggle["id"], "toggle", "its children were not fetched, so they are left out")]


def random_value(rng: random.Random, depth: int = 0):
    choices = [None, True, 0, -1, "", "x\x00", "javascript:x", "https://ok.test", [], {}]
    if depth < 4:
        choices += ["list", "dict", "dict"]
    choice = rng.choice(choices)
    if choice == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == "dict":
        keys = ["type", "rich_text", "text", "content", "link", "url", "annotations", "bold", "color", "children",
                "has_children", "cells", "icon", "emoji", "caption", "external", "plain_text", "href", "mention"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return choice


def test_random_garbage_in_every_block_type_never_raises():
    rng = random.Random(16)
    kinds = [block["type"] for block in walk(sample_page())] + ["heading_1", "nonsense"]
    for _ in range(400):
        kind = rng.choice(kinds)
        block = {"type": kind, kind: random_value(rng), "has_children": rng.choice([True, False, None])}
        if rng.random() < 0.5:
            block["children"] = random_value(rng)
        rendered = render(block, image_url=lambda block: random_value(rng))
        assert_email_safe(rendered.html or LAYOUT_OPEN + LAYOUT_CLOSE)


# The sample page


def test_the_sample_page_has_over_a_hundred_blocks_of_every_type():
    blocks = list(walk(sample_page()))
    assert len(blocks) >= 100
    assert {block["type"] for block in blocks} >= {
        "paragraph", "heading_1", "heading_2", "heading_3", "bulleted_list_item", "numbered_list_item", "to_do",
        "quote", "callout", "toggle", "code", "divider", "image", "bookmark", "link_preview", "table", "table_row",
        "column_list", "column", "child_page", "child_database", "equation", "embed", "video", "audio", "file", "pdf",
        "synced_block", "breadcrumb", "table_of_contents", "link_to_page", "unsupported", "template",
    }  # fmt: skip
    for block in blocks:
        assert block["object"] == "block" and block["type"] in block
        assert block["has_children"] == bool(block.get("children"))
    assert len({block["id"] for block in blocks}) == len(blocks)
    assert sample_page() == sample_page()


def test_the_flat_form_is_what_block_children_returns_per_parent():
    page = sample_page()
    flat = children_by_parent(page)
    assert [block["id"] for block in flat[PAGE_ID]] == [block["id"] for block in page]
    assert all("children" not in block for children in flat.values() for block in children)
    for block in walk(page):
        if block["has_children"]:
            assert [child["parent"] for child in flat[block["id"]]] == [{"type": "block_id", "block_id": block["id"]}] * len(
                block["children"]
            )
    assert nested_from_flat(flat) == page


def test_the_sample_page_renders_every_block_it_can_and_lists_the_rest():
    rendered = render_page(sample_page(), image_url=external_url)
    parsed = assert_email_safe(rendered.html)
    assert len(parsed.all("h1")) == 1 and len(parsed.all("h2")) == 7 and len(parsed.all("h3")) == 5
    assert len(parsed.all("img")) == 3  # the Notion-hosted one has no URL from external_url
    assert len(parsed.all("pre")) == 2 and len(parsed.all("hr")) == 2 and len(parsed.all("blockquote")) == 1
    assert [s.type for s in rendered.skipped] == [
        "image", "embed", "video", "video", "audio", "file", "pdf", "child_page", "child_database",
        "link_to_page", "breadcrumb", "table_of_contents", "unsupported", "template",
    ]  # fmt: skip
    for line in (
        "The Monthly Bulletin — June",
        "Read the release notes (https://example.com/releases/4.2)",
        "- Faster sends — the pacer now keeps to SES's rate without bursts",
        "   - then to everyone\n     1. at the account's rate",
        "☑ Proofread",
        "Month | Sent | Opened\nApril | 12,400 | 48%",
        "[image: The team at the June meetup] https://images.example.com/team.jpg",
        "The talk (https://www.youtube.com/watch?v=dQw4w9WgXcQ)",
        "Write to news@example.com.",
    ):
        assert line in rendered.text
    assert "Drafts" not in rendered.text and "slides.pdf" not in rendered.text


def test_the_rendered_sample_goes_out_as_a_real_email():
    rendered = render_page(sample_page(), image_url=external_url)
    subject = "The Monthly Bulletin — June"
    check_content(subject, rendered.html)
    builder = MessageBuilder(
        mailout_id="4f1c2a9e-0000-4000-8000-000000000016",
        subject=subject,
        body_html=rendered.html,
        from_address="Newsletter <news@example.test>",
        footer=Footer("The Bulletin", "1 Main St, Springfield"),
    )
    unsubscribe = "https://news.example.test/unsubscribe?token=abc"
    outgoing = builder.build(to_email="reader@example.com", to_name="Reader", unsubscribe_url=unsubscribe)
    message = email.message_from_bytes(outgoing.raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    html = html_part.get_content().replace("\r\n", "\n")  # the wire's line ends
    assert html.startswith(rendered.html)
    assert unsubscribe in html[len(rendered.html) :]
    assert_email_safe(html)
    plain = text_part.get_content().replace("\r\n", "\n")
    for line in (
        "The Monthly Bulletin — June",
        "release notes (https://example.com/releases/4.2)",
        "- Faster sends",
        "Unsubscribe: " + unsubscribe,
    ):
        assert line in plain
    assert all(len(line) <= 78 for line in outgoing.raw.split(b"\r\n"))
