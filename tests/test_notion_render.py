"""Notion blocks rendered as a mailout body, block type by block type: rich text and its annotations, links and mentions, and every kind of block."""

from __future__ import annotations

import re

import pytest

from amazonsender.content import body_problem
from amazonsender.notion.render import Skipped, render_page
from tests.support.notion_pages import (
    PAGE_ID,
    PageBuilder,
    equation,
    mention,
    notion_url,
    text,
)
from tests.support.rendered_html import Parsed, assert_email_safe, body, external_url, render, unstyled

# Rich text


def test_a_paragraph_is_escaped_text_in_a_styled_p():
    rendered = render(PageBuilder().rich("paragraph", "Fish & <chips> \"today\""))
    assert body(rendered) == '<p style="margin:0 0 16px;">Fish &amp; &lt;chips&gt; &quot;today&quot;</p>'
    assert rendered.text == 'Fish & <chips> "today"'
    assert rendered.skipped == []


@pytest.mark.parametrize(
    ("item", "html", "plain"),
    [
        (text("b", bold=True), "<strong>b</strong>", "b"),
        (text("i", italic=True), "<em>i</em>", "i"),
        (text("s", strikethrough=True), "<s>s</s>", "s"),
        (text("u", underline=True), "<u>u</u>", "u"),
        (text("x<y", code=True), "<code>x&lt;y</code>", "x<y"),
        (text("all", bold=True, italic=True, underline=True), "<u><em><strong>all</strong></em></u>", "all"),
        (text("red", color="red"), '<span style="color:#d44c47;">red</span>', "red"),
        (text("bg", color="blue_background"), '<span style="background-color:#e7f3f8;">bg</span>', "bg"),
        (text("odd", color="ultraviolet"), "odd", "odd"),
        (text("two\nlines"), "two<br>lines", "two\nlines"),
    ],
)
def test_annotations(item, html, plain):
    rendered = render(PageBuilder().rich("paragraph", item))
    inner = body(rendered).removeprefix('<p style="margin:0 0 16px;">').removesuffix("</p>")
    if "<span" not in html:
        inner = unstyled(inner)
    assert inner == html
    assert rendered.text == plain


def test_links_from_text_link_and_href_keep_safe_urls_only():
    b = PageBuilder()
    rendered = render(
        b.rich("paragraph", text("site", link="https://example.com/a?b=1&c=2"), " "),
        b.rich("paragraph", {**text("by href"), "href": "mailto:me@example.com"}),
        b.rich("paragraph", text("red link", link="http://example.com/", color="red", bold=True)),
    )
    parsed = assert_email_safe(rendered.html)
    assert [attrs["href"] for attrs in parsed.all("a")] == [
        "https://example.com/a?b=1&c=2",
        "mailto:me@example.com",
        "http://example.com/",
    ]
    assert "color:#d44c47;" in parsed.all("a")[2]["style"]
    assert 'href="https://example.com/a?b=1&amp;c=2"' in rendered.html
    assert rendered.text == (
        "site (https://example.com/a?b=1&c=2)\n\nby href (mailto:me@example.com)\n\nred link (http://example.com/)"
    )


def test_a_link_split_over_items_is_written_once_in_the_text():
    link = "https://example.com/x"
    rendered = render(PageBuilder().rich("paragraph", text("half ", link=link), text("bold", link=link, bold=True)))
    assert rendered.text == "half bold (https://example.com/x)"
    assert len(Parsed(rendered.html).all("a")) == 2


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox",
        "/relative/path",
        "//evil.example.com/x",
        "http://",
        "https:/nohost",
        "mailto:",
        "ftp://example.com/file",
        "https://exa mple.com/",
        "https://example.com/\x00",
        "https://example.com/\ud800",
        "&#106;avascript:alert(1)",
        "https://example.com/" + "a" * 5000,
        42,
        None,
    ],
)
def test_unsafe_link_urls_are_dropped_and_their_text_kept(url):
    item = {**text("click"), "text": {"content": "click", "link": {"url": url}}, "href": url}
    rendered = render(PageBuilder().rich("paragraph", item))
    assert "<a" not in rendered.html and "href" not in rendered.html
    assert "click" in rendered.html and rendered.text == "click"


def test_an_attribute_cannot_be_broken_out_of():
    url = 'https://example.com/"onmouseover="alert(1)'
    rendered = render(PageBuilder().rich("paragraph", text("x", link=url)))
    parsed = assert_email_safe(rendered.html)
    assert parsed.all("a")[0]["href"] == url
    assert "&quot;onmouseover=&quot;" in rendered.html


def test_mentions_are_their_text_linked_by_href():
    user = mention("user", {"object": "user", "id": "u1"}, "@Ada")
    page = mention("page", {"id": PAGE_ID}, "Plans", notion_url(PAGE_ID))
    date = mention("date", {"start": "2025-06-21", "end": None}, "June 21, 2025")
    preview = mention("link_preview", {"url": "https://github.com/x/y"}, "https://github.com/x/y", "https://github.com/x/y")
    database = mention("database", {"id": "d1"}, "Roadmap", "https://www.notion.so/d1")
    rendered = render(PageBuilder().rich("paragraph", user, " ", page, " ", date, " ", preview, " ", database))
    parsed = assert_email_safe(rendered.html)
    assert [a["href"] for a in parsed.all("a")] == [notion_url(PAGE_ID), "https://github.com/x/y", "https://www.notion.so/d1"]
    assert rendered.text == (
        f"@Ada Plans ({notion_url(PAGE_ID)}) June 21, 2025 https://github.com/x/y Roadmap (https://www.notion.so/d1)"
    )


def test_equations_inline_and_as_a_block_are_text():
    b = PageBuilder()
    rendered = render(
        b.rich("paragraph", "so ", equation("a<b & c")),
        b.block("equation", {"expression": "E = mc^2"}),
    )
    assert "so a&lt;b &amp; c" in rendered.html
    assert re.search(r"<p style=\"[^\"]*text-align:center[^\"]*\">E = mc\^2</p>", rendered.html)
    assert rendered.text == "so a<b & c\n\nE = mc^2"


# Blocks


def test_headings_one_to_three_and_a_toggleable_heading_shown_open():
    b = PageBuilder()
    rendered = render(
        b.rich("heading_1", "One", is_toggleable=False),
        b.rich("heading_2", "Two", color="red", is_toggleable=False),
        b.rich("heading_3", "Three", is_toggleable=True, children=[b.rich("paragraph", "inside")]),
    )
    assert unstyled(body(rendered)) == "<h1>One</h1>\n<h2>Two</h2>\n<h3>Three</h3>\n<p>inside</p>"
    assert "color:#d44c47;" in Parsed(rendered.html).all("h2")[0]["style"]
    assert rendered.text == "One\n\nTwo\n\nThree\n\ninside"


def test_consecutive_list_items_make_one_list_and_nest_by_children():
    b = PageBuilder()
    rendered = render(
        b.rich("bulleted_list_item", "a"),
        b.rich("bulleted_list_item", "b", children=[
            b.rich("numbered_list_item", "b1"),
            b.rich("numbered_list_item", "b2", children=[b.rich("paragraph", "b2 text")]),
        ]),
        b.rich("numbered_list_item", "n1"),
        b.rich("paragraph", "break"),
        b.rich("bulleted_list_item", "c"),
    )
    assert unstyled(body(rendered)) == (
        "<ul><li>a</li>\n<li>b<ol><li>b1</li>\n<li>b2<p>b2 text</p></li></ol></li></ul>\n"
        "<ol><li>n1</li></ol>\n<p>break</p>\n<ul><li>c</li></ul>"
    )
    assert rendered.text == "- a\n- b\n  1. b1\n  2. b2\n     b2 text\n\n1. n1\n\nbreak\n\n- c"
    nested = Parsed(rendered.html).all("ol")[0]["style"]
    assert nested.startswith("margin:4px 0 0")


def test_to_dos_show_their_box():
    b = PageBuilder()
    rendered = render(b.rich("to_do", "done", checked=True), b.rich("to_do", "open", checked=False))
    assert unstyled(body(rendered)) == "<p>\u2611 done</p>\n<p>\u2610 open</p>"
    assert rendered.text == "\u2611 done\n\n\u2610 open"


def test_a_quote_holds_its_text_and_children():
    b = PageBuilder()
    rendered = render(b.rich("quote", "wise\nwords", children=[b.rich("paragraph", "who")]))
    assert unstyled(body(rendered)) == "<blockquote>wise<br>words<p>who</p></blockquote>"
    assert "border-left:3px solid" in Parsed(rendered.html).all("blockquote")[0]["style"]
    assert rendered.text == "> wise\n> words\n>\n> who"


@pytest.mark.parametrize(
    ("icon", "shown"),
    [
        ({"type": "emoji", "emoji": "💡"}, "💡 "),
        ({"type": "external", "external": {"url": "https://example.com/i.png"}}, ""),
        ({"type": "file", "file": {"url": "https://s3.example.com/i.png", "expiry_time": "2025-01-01T00:00:00Z"}}, ""),
        ({"type": "custom_emoji", "custom_emoji": {"id": "1", "name": "party", "url": "https://x.test/p.png"}}, ""),
        (None, ""),
        ("💡", ""),
    ],
)
def test_a_callout_is_a_one_cell_table_with_its_icon_as_text(icon, shown):
    rendered = render(PageBuilder().rich("callout", "Note this", icon=icon, color="green_background"))
    parsed = assert_email_safe(rendered.html)
    assert len(parsed.all("table")) == 2 and len(parsed.all("img")) == 0
    assert "background-color:#edf3ec" in parsed.all("td")[1]["style"]
    assert f"<div style=\"margin:0\">{shown}Note this</div>" in rendered.html
    assert rendered.text == f"{shown}Note this"


def test_a_toggle_is_shown_open():
    b = PageBuilder()
    rendered = render(b.rich("toggle", "Summary", children=[b.rich("paragraph", "Details")]))
    assert unstyled(body(rendered)) == "<p>Summary</p>\n<div><p>Details</p></div>"
    assert rendered.text == "Summary\n  Details"


def test_code_is_escaped_monospace_with_its_caption():
    source = 'if a < b && c > "d":\n    print(\'<b>\')'
    rendered = render(PageBuilder().block("code", {"rich_text": [text(source, bold=True)], "language": "python",
                                                    "caption": [text("Example")]}))
    assert unstyled(body(rendered)) == (
        "<pre><code>if a &lt; b &amp;&amp; c &gt; &quot;d&quot;:\n    print(&#x27;&lt;b&gt;&#x27;)</code></pre>\n"
        "<p>Example</p>"
    )
    assert "monospace" in Parsed(rendered.html).all("pre")[0]["style"]
    assert rendered.text == "    if a < b && c > \"d\":\n        print('<b>')\nExample"


def test_a_divider():
    rendered = render(PageBuilder().block("divider"))
    assert unstyled(body(rendered)) == "<hr>"
    assert rendered.text == "-" * 20


def test_an_image_with_its_caption_from_the_importers_url():
    b = PageBuilder()
    image = b.image("https://prod-files.example.com/x.png", "A <cat>", hosted=True)
    rendered = render(image, image_url=lambda block: f"https://news.example.com/media/{block['id']}.png")
    parsed = assert_email_safe(rendered.html)
    assert parsed.all("img") == [{
        "src": f"https://news.example.com/media/{image['id']}.png",
        "alt": "A <cat>",
        "width": "568",
        "style": "display:block;width:100%;max-width:568px;height:auto;border:0;margin:0 0 16px",
    }]
    assert 'alt="A &lt;cat&gt;"' in rendered.html
    assert rendered.text == f"[image: A <cat>] https://news.example.com/media/{image['id']}.png"


@pytest.mark.parametrize("image_url", [lambda block: None, lambda block: "javascript:alert(1)", lambda block: 1 / 0])
def test_an_image_without_a_showable_url_is_left_out_and_listed(image_url):
    image = PageBuilder().image("https://example.com/x.png", "cap")
    rendered = render(image, PageBuilder().rich("paragraph", "after"), image_url=image_url)
    assert "<img" not in rendered.html and rendered.text == "after"
    assert rendered.skipped == [Skipped(image["id"], "image", "the image has no URL an email can show, so it is left out")]


def test_bookmarks_and_link_previews_are_links():
    b = PageBuilder()
    rendered = render(
        b.block("bookmark", {"caption": [text("Our blog")], "url": "https://example.com/blog"}),
        b.block("link_preview", {"url": "https://github.com/x/y/pull/1"}),
        b.block("bookmark", {"caption": [], "url": "javascript:alert(1)"}),
    )
    assert [a["href"] for a in assert_email_safe(rendered.html).all("a")] == [
        "https://example.com/blog",
        "https://github.com/x/y/pull/1",
    ]
    assert rendered.text == "Our blog (https://example.com/blog)\n\nhttps://github.com/x/y/pull/1"
    assert [(s.type, "not http" in s.reason) for s in rendered.skipped] == [("bookmark", True)]


@pytest.mark.parametrize(("column_header", "row_header"), [(False, False), (True, False), (False, True), (True, True)])
def test_a_table_with_its_headers(column_header, row_header):
    rows = [["", "Free", "Pro"], ["Sends", "1,000", "<all>"], ["Help", "Forum"]]
    table = PageBuilder().table(rows, column_header=column_header, row_header=row_header)
    assert len(table["children"][2]["table_row"]["cells"]) == 2  # a short row is padded
    rendered = render(table)
    parsed = assert_email_safe(rendered.html)
    kinds = [tag for tag, _ in parsed.elements if tag in ("td", "th")][1:]  # [0] is the layout's own cell
    expected = [
        "th" if (column_header and row == 0) or (row_header and column == 0) else "td"
        for row in range(3)
        for column in range(3)
    ]
    assert kinds == expected
    assert "&lt;all&gt;" in rendered.html
    assert rendered.text == " | Free | Pro\nSends | 1,000 | <all>\nHelp | Forum |"


def test_columns_are_stacked_in_order():
    b = PageBuilder()
    rendered = render(b.block("column_list", {}, [
        b.block("column", {}, [b.rich("paragraph", "left")]),
        b.block("column", {}, [b.rich("paragraph", "right")]),
    ]))
    assert unstyled(body(rendered)) == "<p>left</p>\n<p>right</p>"
    assert rendered.text == "left\n\nright"


def test_a_synced_blocks_content_is_shown():
    b = PageBuilder()
    rendered = render(b.block("synced_block", {"synced_from": None}, [b.rich("paragraph", "shared")]))
    assert rendered.text == "shared" and rendered.skipped == []


@pytest.mark.parametrize(
    ("block", "link"),
    [
        ({"type": "embed", "embed": {"caption": [], "url": "https://twitter.com/x/status/1"}}, "https://twitter.com/x/status/1"),
        ({"type": "video", "video": {"caption": [text("Talk")], "type": "external",
                                     "external": {"url": "https://youtube.com/watch?v=1"}}}, "https://youtube.com/watch?v=1"),
        ({"type": "pdf", "pdf": {"caption": [], "type": "external", "external": {"url": "https://x.test/r.pdf"}}},
         "https://x.test/r.pdf"),
        ({"type": "audio", "audio": {"caption": [], "type": "external", "external": {"url": "https://x.test/a.mp3"}}},
         "https://x.test/a.mp3"),
        ({"type": "file", "file": {"caption": [], "type": "file", "name": "a.pdf",
                                   "file": {"url": "https://s3.test/a.pdf", "expiry_time": "2025-01-01T00:00:00Z"}}}, None),
        ({"type": "embed", "embed": {"url": "javascript:alert(1)"}}, None),
        ({"type": "child_page", "child_page": {"title": "Drafts"}}, None),
        ({"type": "child_database", "child_database": {"title": "People"}}, None),
        ({"type": "link_to_page", "link_to_page": {"type": "page_id", "page_id": PAGE_ID}}, None),
        ({"type": "breadcrumb", "breadcrumb": {}}, None),
        ({"type": "table_of_contents", "table_of_contents": {"color": "default"}}, None),
        ({"type": "unsupported", "unsupported": {}}, None),
        ({"type": "template", "template": {"rich_text": [text("New")]}}, None),
        ({"type": "ai_block", "ai_block": {"url": "https://x.test/ai"}}, "https://x.test/ai"),
        ({"type": "mystery", "mystery": {"whatever": 1}}, None),
    ],
)
def test_blocks_an_email_cannot_show_become_a_link_or_nothing_and_are_listed(block, link):
    block = {"object": "block", "id": "b-1", "has_children": False, **block}
    rendered = render(block, PageBuilder().rich("paragraph", "kept"))
    assert [a["href"] for a in Parsed(rendered.html).all("a")] == ([link] if link else [])
    assert [(s.block_id, s.type) for s in rendered.skipped] == [("b-1", block["type"])]
    reason = rendered.skipped[0].reason
    assert reason.endswith("shown as a link" if link else "left out")
    assert rendered.text.endswith("kept") and (link is None or link in rendered.text)


def test_an_empty_page_renders_nothing_which_the_body_check_refuses():
    b = PageBuilder()
    for blocks in ([], [b.rich("paragraph")], [b.block("breadcrumb")], [b.rich("paragraph", "   ")]):
        rendered = render_page(blocks, image_url=external_url)
        assert (rendered.html, rendered.text) == ("", "")
        assert body_problem(rendered.html) == "the mailout's body is empty"
