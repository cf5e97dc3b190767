"""Notion rich text as email-safe inline HTML and as plain text, with the text and URL checks every rendered string goes through.

A rich text array is what Notion gives for any run of formatted text
(developers.notion.com/reference/rich-text): items of type "text"
(`text.content`, `text.link.url`), "mention" (a user, page, database, date
or link preview, shown as its `plain_text`, linked by `href`) and
"equation" (`equation.expression`, shown as text), each with `annotations`
(bold, italic, strikethrough, underline, code, color) and `plain_text`.

Everything here is the page editor's input, so nothing is trusted: every
text is cleaned of control characters and HTML-escaped, and a link is kept
only when its URL is http, https or mailto (its text stays either way).
Anything malformed (a missing key, a value of the wrong type) counts as
absent.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

# C0 and C1 control characters but tab and LF (CR is made a line end first),
# and lone surrogates, which cannot be encoded and which content.body_problem
# refuses.
_BAD_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# A URL holds no whitespace, control character or lone surrogate: one that
# does is a paste gone wrong or an attempt to smuggle a scheme past a check.
_BAD_URL = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")
SAFE_SCHEMES = ("http", "https", "mailto")
# Longer than any real link (Notion's own signed file URLs are well under it);
# a longer one is refused rather than copied into every message.
MAX_URL_CHARS = 4096

# Notion's palette (the colors of its light theme), for text and backgrounds.
TEXT_COLORS = {
    "gray": "#787774",
    "brown": "#9f6b53",
    "orange": "#d9730d",
    "yellow": "#cb912f",
    "green": "#448361",
    "blue": "#337ea9",
    "purple": "#9065b0",
    "pink": "#c14c8a",
    "red": "#d44c47",
}
BACKGROUND_COLORS = {
    "gray": "#f1f1ef",
    "brown": "#f4eeee",
    "orange": "#fbecdd",
    "yellow": "#fbf3db",
    "green": "#edf3ec",
    "blue": "#e7f3f8",
    "purple": "#f6f3f9",
    "pink": "#faf1f5",
    "red": "#fdebec",
}
LINK_COLOR = "#0b6bcb"
CODE_STYLE = (
    "font-family:Menlo,Consolas,'Courier New',monospace;font-size:85%;"
    "background-color:#f2f1ee;color:#c7254e;padding:1px 4px;border-radius:3px"
)


def clean_text(value: object) -> str:
    """The text without control characters (tab and line ends kept, every
    line end made LF) or lone surrogates; "" for anything but a string."""
    if not isinstance(value, str):
        return ""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _BAD_TEXT.sub("", value)


def safe_url(value: object) -> str | None:
    """The URL if an email may link to it (http or https with a host, or
    mailto with an address), else None: javascript:, data:, relative and
    malformed URLs are dropped."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > MAX_URL_CHARS or _BAD_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.netloc:
        return url
    if scheme == "mailto" and parts.path:
        return url
    return None


def escape(text: str) -> str:
    """Text or an attribute value, HTML-escaped (quotes too)."""
    return html.escape(text, quote=True)


def color_style(color: object) -> str:
    """The inline CSS for a Notion color ("red", "red_background",
    "default"), or "" for the default or a color Notion does not have."""
    if not isinstance(color, str):
        return ""
    if color.endswith("_background"):
        background = BACKGROUND_COLORS.get(color.removesuffix("_background"))
        return f"background-color:{background};" if background else ""
    text = TEXT_COLORS.get(color)
    return f"color:{text};" if text else ""


def link_html(url: str, inner_html: str, style: str = "") -> str:
    """An <a> to a URL already passed through safe_url."""
    return f'<a href="{escape(url)}" style="color:{LINK_COLOR};text-decoration:underline;{style}">{inner_html}</a>'


def link_text(text: str, url: str | None) -> str:
    """A link in the plain-text part: `text (url)`, or the URL alone when
    it is the text already."""
    if not url:
        return text
    stripped = text.strip()
    if not stripped:
        return url
    if stripped in (url, url.removeprefix("mailto:")):
        return text
    return f"{text} ({url})"


def _items(rich_text: object) -> list[tuple[str, str | None, dict]]:
    """(text, safe URL or None, annotations) for each usable item."""
    if not isinstance(rich_text, list):
        return []
    items = []
    for item in rich_text:
        if not isinstance(item, dict):
            continue
        text = clean_text(_item_text(item))
        if not text:
            continue
        annotations = item.get("annotations")
        items.append((text, safe_url(_item_url(item)), annotations if isinstance(annotations, dict) else {}))
    return items


def _item_text(item: dict) -> object:
    kind = item.get("type")
    body = item.get(kind) if isinstance(kind, str) else None
    if kind == "text" and isinstance(body, dict) and isinstance(body.get("content"), str):
        return body["content"]
    if kind == "equation" and isinstance(body, dict) and isinstance(body.get("expression"), str):
        return body["expression"]
    return item.get("plain_text")


def _item_url(item: dict) -> object:
    body = item.get("text")
    if item.get("type") == "text" and isinstance(body, dict):
        link = body.get("link")
        if isinstance(link, dict) and link.get("url"):
            return link["url"]
    if item.get("type") == "equation":
        return None
    return item.get("href")


def to_html(rich_text: object) -> str:
    """The rich text as inline HTML: escaped, line breaks as <br>, each
    annotation as a tag or an inline style, links kept when safe."""
    return "".join(_item_html(text, url, annotations) for text, url, annotations in _items(rich_text))


def _item_html(text: str, url: str | None, annotations: dict) -> str:
    inner = escape(text).replace("\n", "<br>")
    if annotations.get("code") is True:
        inner = f'<code style="{CODE_STYLE}">{inner}</code>'
    # Tags rather than styles where a tag exists: every mail client knows
    # them, and they survive a client that strips style attributes.
    for flag, tag in (("bold", "strong"), ("italic", "em"), ("underline", "u"), ("strikethrough", "s")):
        if annotations.get(flag) is True:
            inner = f"<{tag}>{inner}</{tag}>"
    style = color_style(annotations.get("color"))
    if url:
        return link_html(url, inner, style)
    return f'<span style="{style}">{inner}</span>' if style else inner


def to_text(rich_text: object) -> str:
    """The rich text as plain text, links written `text (url)`: a link
    whose text is split over items (part of it bold, say) gets its URL once."""
    runs: list[tuple[str, str | None]] = []
    for text, url, _ in _items(rich_text):
        if runs and url and runs[-1][1] == url:
            runs[-1] = (runs[-1][0] + text, url)
        else:
            runs.append((text, url))
    return "".join(link_text(text, url) for text, url in runs)


def bare_text(rich_text: object) -> str:
    """The rich text's words alone, no URLs (for alt text and code)."""
    return "".join(text for text, _, _ in _items(rich_text))
