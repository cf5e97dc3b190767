"""What a rendered Notion page must be as email HTML: well nested, inline styles only, safe links; and small helpers to read it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from amazonsender.notion.render import Rendered, render_page
from amazonsender.notion.styles import LAYOUT_CLOSE, LAYOUT_OPEN

VOID_TAGS = {"img", "hr", "br"}
ALLOWED_TAGS = {
    "table", "tr", "td", "th", "p", "h1", "h2", "h3", "ul", "ol", "li", "blockquote", "pre", "code",
    "hr", "img", "a", "strong", "em", "u", "s", "span", "div", "br",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"style", "href", "src", "alt", "width", "align", "role", "cellpadding", "cellspacing", "border"}


def external_url(block: dict) -> str | None:
    """The importer's image mapping, as the tests need it: external URLs as they are."""
    image = block.get("image", {})
    return image.get("external", {}).get("url") if image.get("type") == "external" else None


def render(*blocks: dict, image_url=external_url) -> Rendered:
    return render_page(list(blocks), image_url=image_url)


def body(rendered: Rendered) -> str:
    """The rendered blocks without the layout table around them."""
    assert rendered.html.startswith(LAYOUT_OPEN + "\n") and rendered.html.endswith("\n" + LAYOUT_CLOSE)
    return rendered.html[len(LAYOUT_OPEN) + 1 : -len(LAYOUT_CLOSE) - 1]


def unstyled(html: str) -> str:
    """The HTML without style attributes, for comparing structure."""
    return re.sub(r' style="[^"]*"', "", html)


class Parsed(HTMLParser):
    """Every element with its attributes, the text, and whether tags nest properly."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()
        if self.stack:
            self.problems.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"misnested </{tag}>")

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.problems.append("comment")

    def all(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.elements if name == tag]


def assert_email_safe(html: str) -> Parsed:
    parsed = Parsed(html)
    assert parsed.problems == []
    for tag, attrs in parsed.elements:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRIBUTES, (tag, attrs)
        assert all(value is not None for value in attrs.values()), (tag, attrs)
    for attrs in parsed.all("a"):
        assert re.match(r"(https?://[^/\s]|mailto:\S)", attrs["href"]), attrs
    for attrs in parsed.all("img"):
        assert re.match(r"https?://[^/\s]", attrs["src"]), attrs
    assert "<style" not in html.lower() and "class=" not in html.lower() and "<script" not in html.lower()
    assert parsed.all("table")[0]["width"] == "600" and "max-width:600px" in parsed.all("table")[0]["style"]
    return parsed
