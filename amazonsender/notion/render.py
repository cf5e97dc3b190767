"""A Notion page's blocks as a mailout body: email-safe HTML and its plain-text part.

The input is the page's blocks as Notion's API returns them from
GET /v1/blocks/{id}/children (developers.notion.com/reference/block), with
one addition, the convention between the importer and this module: a block
whose `has_children` is true carries its own children, fetched the same
way, under the key "children" (a list of blocks, which may carry theirs).
A block with `has_children` true and no "children" list is rendered
without them and listed in `skipped`.

The HTML is the mailout body (MessageBuilder adds the footer after it), in
the layout of styles.py. Lists, tables, quotes and code use their own tags;
callouts are one-cell tables, the one box with a background that Outlook
draws; columns are stacked, since side by side they do not fit a phone.

Nothing in a page is trusted (rich_text.py escapes and checks every text
and URL); a malformed block renders what is valid in it and never raises,
and blocks nested deeper than MAX_DEPTH are left out, so a hostile page
cannot exhaust the stack. What an email cannot show (embeds, videos, files,
sub-pages, unknown types) becomes a link when it has a public URL and is
left out otherwise; either way it is listed in `Rendered.skipped`, for the
importer to tell the editor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from . import rich_text as rt
from .rich_text import clean_text, escape, safe_url
from .styles import (
    CALLOUT_STYLE,
    CAPTION_STYLE,
    CELL_STYLE,
    CODE_BLOCK_STYLE,
    DIVIDER_TEXT,
    EQUATION_STYLE,
    HEADER_CELL_STYLE,
    HEADING_STYLES,
    HR_STYLE,
    IMAGE_WIDTH_PX,
    LAYOUT_CLOSE,
    LAYOUT_OPEN,
    LIST_TAGS,
    NESTED_LIST_STYLE,
    LIST_STYLE,
    NESTED_STYLE,
    P_STYLE,
    QUOTE_STYLE,
    TABLE_STYLE,
)

# Deep enough for any page a person writes (Notion's own editor stops
# indenting long before), shallow enough that rendering stays far from
# Python's recursion limit.
MAX_DEPTH = 20
# How much of a block's id and type a Skipped keeps: they are the page's
# text and may be shown to the editor or logged.
MAX_LABEL_CHARS = 100
MAX_ICON_CHARS = 16



@dataclass(frozen=True)
class Skipped:
    """A block left out of the email, or shown only as a link, and why."""

    block_id: str
    type: str
    reason: str


@dataclass(frozen=True)
class Rendered:
    """A page as a mailout body: `html` (the body, "" for a page with nothing
    to show, which content.body_problem refuses as empty), its plain-text
    part `text`, and the blocks that did not make it in as they are."""

    html: str
    text: str
    skipped: list[Skipped] = field(default_factory=list)


class Piece(NamedTuple):
    """One rendered block (or a run of list items) in both forms."""

    html: str
    text: str


ImageUrl = Callable[[dict], "str | None"]


def render_page(blocks: list[dict], *, image_url: ImageUrl) -> Rendered:
    """Render a page's blocks. `image_url(block)` gives the URL an image
    block is shown from in the email (None leaves it out)."""
    renderer = _Renderer(image_url)
    pieces = renderer.blocks(blocks, 1)
    if not pieces:
        return Rendered("", "", renderer.skipped)
    body = "\n".join(piece.html for piece in pieces if piece.html)
    text = "\n".join(line.rstrip() for line in _join_text(pieces).split("\n"))
    return Rendered(LAYOUT_OPEN + "\n" + body + "\n" + LAYOUT_CLOSE, text, renderer.skipped)


def _join_text(pieces: list[Piece], separator: str = "\n\n") -> str:
    text = separator.join(piece.text for piece in pieces if piece.text.strip())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def _label(value: object) -> str:
    return clean_text(value)[:MAX_LABEL_CHARS] if isinstance(value, str) else ""


def _content(block: dict) -> dict:
    """The block's type-specific object (`block[block["type"]]`), {} if none."""
    kind = block.get("type")
    content = block.get(kind) if isinstance(kind, str) else None
    return content if isinstance(content, dict) else {}


class _Renderer:
    """One page's rendering: the image callback and what was skipped."""

    def __init__(self, image_url: ImageUrl):
        self.image_url = image_url
        self.skipped: list[Skipped] = []
        # How many list items the block being rendered is inside of: a
        # nested list takes no margin of its own.
        self.list_depth = 0

    def skip(self, block: dict, reason: str) -> None:
        self.skipped.append(Skipped(_label(block.get("id")), _label(block.get("type")), reason))

    def blocks(self, blocks: object, depth: int) -> list[Piece]:
        """A list of sibling blocks; consecutive list items of one kind make one list."""
        if not isinstance(blocks, list):
            return []
        valid = [block for block in blocks if isinstance(block, dict)]
        if len(valid) < len(blocks):
            self.skipped.append(Skipped("", "", f"{len(blocks) - len(valid)} entries that are not blocks"))
        if depth > MAX_DEPTH:
            for block in valid:
                self.skip(block, f"nested more than {MAX_DEPTH} levels deep")
            return []
        pieces: list[Piece] = []
        index = 0
        while index < len(valid):
            block = valid[index]
            kind = block.get("type") if isinstance(block.get("type"), str) else None
            if block.get("in_trash") is True or block.get("archived") is True:
                self.skip(block, "the block is in Notion's trash")
                index += 1
            elif kind in LIST_TAGS:
                end = index
                while end < len(valid) and valid[end].get("type") == kind:
                    end += 1
                pieces.append(self.list_items(valid[index:end], kind, depth))
                index = end
            else:
                piece = self.block(block, depth)
                if piece is not None:
                    pieces.append(piece)
                index += 1
        return pieces

    def block(self, block: dict, depth: int) -> Piece | None:
        kind = block.get("type")
        if not isinstance(kind, str) or not kind:
            self.skip(block, "the block has no type")
            return None
        if kind in HEADING_STYLES:
            return self.heading(block, depth)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, block, depth)
        return self.unsupported(block, kind)

    def children(self, block: dict, depth: int) -> list[Piece]:
        """The block's children, rendered one level deeper."""
        children = block.get("children")
        if not isinstance(children, list):
            if block.get("has_children") is True:
                self.skip(block, "its children were not fetched, so they are left out")
            return []
        return self.blocks(children, depth + 1)

    def nested(self, block: dict, depth: int) -> Piece:
        """The block's children indented under it, as Notion shows them."""
        pieces = self.children(block, depth)
        if not pieces:
            return Piece("", "")
        inner = "\n".join(piece.html for piece in pieces)
        return Piece(f'<div style="{NESTED_STYLE}">{inner}</div>', _indent(_join_text(pieces), "  "))

    # Text blocks

    def paragraph(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        inner = rt.to_html(content.get("rich_text"))
        nested = self.nested(block, depth)
        # An empty paragraph is Notion's blank line; the margins already space blocks.
        if not inner.strip():
            return nested if nested.html else None
        style = P_STYLE + ";" + rt.color_style(content.get("color"))
        html = f'<p style="{style}">{inner}</p>'
        return _then(Piece(html, rt.to_text(content.get("rich_text"))), nested)

    def heading(self, block: dict, depth: int) -> Piece:
        content = _content(block)
        tag, style = HEADING_STYLES[block["type"]]
        style += ";" + rt.color_style(content.get("color"))
        inner = rt.to_html(content.get("rich_text"))
        heading = Piece(f'<{tag} style="{style}">{inner}</{tag}>' if inner else "", rt.to_text(content.get("rich_text")))
        # A toggleable heading is shown open: its children follow it.
        children = self.children(block, depth)
        return Piece(
            "\n".join(html for html in [heading.html, *(piece.html for piece in children)] if html),
            _join_text([heading, *children]),
        )

    def list_items(self, items: list[dict], kind: str, depth: int) -> Piece:
        tag = LIST_TAGS[kind]
        html_items, text_items = [], []
        for number, item in enumerate(items, start=1):
            content = _content(item)
            marker = "- " if tag == "ul" else f"{number}. "
            style = "margin:0 0 4px;" + rt.color_style(content.get("color"))
            self.list_depth += 1
            try:
                children = self.children(item, depth)
            finally:
                self.list_depth -= 1
            inner = rt.to_html(content.get("rich_text"))
            html_items.append(f'<li style="{style}">{inner}{"".join(piece.html for piece in children)}</li>')
            text = marker + rt.to_text(content.get("rich_text"))
            if children:
                text += "\n" + _indent(_join_text(children), " " * len(marker))
            text_items.append(text)
        style = NESTED_LIST_STYLE if self.list_depth else LIST_STYLE
        html = f'<{tag} style="{style}">' + "\n".join(html_items) + f"</{tag}>"
        return Piece(html, "\n".join(text_items))

    def to_do(self, block: dict, depth: int) -> Piece:
        content = _content(block)
        box = "\u2611" if content.get("checked") is True else "\u2610"
        style = P_STYLE + ";" + rt.color_style(content.get("color"))
        inner = rt.to_html(content.get("rich_text"))
        item = Piece(f'<p style="{style}">{box} {inner}</p>', f"{box} {rt.to_text(content.get('rich_text'))}")
        return _then(item, self.nested(block, depth))

    def quote(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        children = self.children(block, depth)
        inner = rt.to_html(content.get("rich_text"))
        if not inner and not children:
            return None
        style = QUOTE_STYLE + ";" + rt.color_style(content.get("color"))
        html = f'<blockquote style="{style}">{inner}' + "".join(piece.html for piece in children) + "</blockquote>"
        text = _join_text([Piece("", rt.to_text(content.get("rich_text"))), *children])
        return Piece(html, "\n".join("> " + line if line else ">" for line in text.split("\n")))

    def callout(self, block: dict, depth: int) -> Piece:
        content = _content(block)
        icon = _icon_text(content.get("icon"))
        color = content.get("color")
        background = "#f1f1ef"
        if isinstance(color, str) and color.endswith("_background"):
            background = rt.BACKGROUND_COLORS.get(color.removesuffix("_background"), background)
        children = self.children(block, depth)
        inner = (escape(icon) + " " if icon else "") + rt.to_html(content.get("rich_text"))
        cell = f'<div style="margin:0">{inner}</div>' + "".join(piece.html for piece in children)
        html = (
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
            ' style="width:100%;border-collapse:collapse;margin:0 0 16px">'
            f'<tr><td style="{CALLOUT_STYLE.format(background=background)}">{cell}</td></tr></table>'
        )
        first = (icon + " " if icon else "") + rt.to_text(content.get("rich_text"))
        return Piece(html, _join_text([Piece("", first), *children]))

    def toggle(self, block: dict, depth: int) -> Piece:
        # Email has no toggles that work everywhere: shown open.
        content = _content(block)
        summary = rt.to_html(content.get("rich_text"))
        style = P_STYLE + ";font-weight:600;" + rt.color_style(content.get("color"))
        head = Piece(f'<p style="{style}">{summary}</p>' if summary else "", rt.to_text(content.get("rich_text")))
        return _then(head, self.nested(block, depth))

    def code(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        # The code's characters as they are: annotations and links inside a
        # code block are not shown in Notion either.
        source = rt.bare_text(content.get("rich_text"))
        if not source:
            return None
        html = f'<pre style="{CODE_BLOCK_STYLE}"><code>{escape(source)}</code></pre>'
        return _then(Piece(html, _indent(source, "    ")), _caption(content))

    def equation(self, block: dict, depth: int) -> Piece | None:
        expression = clean_text(_content(block).get("expression")).strip()
        if not expression:
            return None
        return Piece(f'<p style="{EQUATION_STYLE}">{escape(expression)}</p>', expression)

    def divider(self, block: dict, depth: int) -> Piece:
        return Piece(f'<hr style="{HR_STYLE}">', DIVIDER_TEXT)

    # Media and links

    def image(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        try:
            url = safe_url(self.image_url(block))
        except Exception:  # noqa: BLE001 - the importer's mapping failing leaves the image out, not the page
            url = None
        if url is None:
            self.skip(block, "the image has no URL an email can show, so it is left out")
            return None
        alt = rt.bare_text(content.get("caption"))
        html = (
            f'<img src="{escape(url)}" alt="{escape(alt)}" width="{IMAGE_WIDTH_PX}"'
            f' style="display:block;width:100%;max-width:{IMAGE_WIDTH_PX}px;height:auto;border:0;margin:0 0 16px">'
        )
        caption_text = rt.to_text(content.get("caption"))
        text = f"[image: {caption_text}] {url}" if caption_text else f"[image] {url}"
        return Piece(_then(Piece(html, ""), _caption(content)).html, text)

    def bookmark(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        url = safe_url(content.get("url"))
        if url is None:
            self.skip(block, "the link's URL is not http, https or mailto, so it is left out")
            return None
        return _link_piece(url, rt.bare_text(content.get("caption")) or url)

    def table(self, block: dict, depth: int) -> Piece | None:
        content = _content(block)
        rows = self.table_rows(block, depth)
        if not rows:
            return None
        column_header = content.get("has_column_header") is True
        row_header = content.get("has_row_header") is True
        width = max(len(cells) for cells in rows)
        html_rows, text_rows = [], []
        for row_number, cells in enumerate(rows):
            cells = cells + [[]] * (width - len(cells))
            html_cells = []
            for column_number, cell in enumerate(cells):
                header = (column_header and row_number == 0) or (row_header and column_number == 0)
                tag, style = ("th", HEADER_CELL_STYLE) if header else ("td", CELL_STYLE)
                html_cells.append(f'<{tag} style="{style}">{rt.to_html(cell)}</{tag}>')
            html_rows.append("<tr>" + "".join(html_cells) + "</tr>")
            text_rows.append(" | ".join(rt.to_text(cell).replace("\n", " ") for cell in cells).rstrip())
        html = (
            f'<table cellpadding="0" cellspacing="0" border="0" width="100%" style="{TABLE_STYLE}">'
            + "\n".join(html_rows)
            + "</table>"
        )
        return Piece(html, "\n".join(text_rows))

    def table_rows(self, block: dict, depth: int) -> list[list]:
        """Each table_row child's cells (lists of rich text)."""
        children = block.get("children")
        if not isinstance(children, list):
            if block.get("has_children") is True:
                self.skip(block, "the table's rows were not fetched, so it is left out")
            return []
        if depth + 1 > MAX_DEPTH:
            self.blocks(children, depth + 1)
            return []
        rows = []
        for child in children:
            if not isinstance(child, dict):
                continue
            cells = _content(child).get("cells")
            if child.get("type") != "table_row" or not isinstance(cells, list):
                self.skip(child, "a table holds only rows with cells")
                continue
            rows.append([cell if isinstance(cell, list) else [] for cell in cells])
        return rows

    def container(self, block: dict, depth: int) -> Piece | None:
        """column_list, column and synced_block: their children, in order
        (columns stacked: side by side they would not fit a phone)."""
        pieces = self.children(block, depth)
        if not pieces:
            return None
        return Piece("\n".join(piece.html for piece in pieces), _join_text(pieces))

    def unsupported(self, block: dict, kind: str) -> Piece | None:
        """A block an email cannot show: a link to it when it has a public
        URL, otherwise nothing; listed in skipped either way."""
        content = _content(block)
        url, why_no_url = _media_url(content)
        what = _UNSHOWABLE.get(kind, "this kind of block cannot be shown in an email")
        if url is None:
            self.skip(block, f"{what}; {why_no_url}, so it is left out")
            return None
        self.skip(block, f"{what}; shown as a link")
        name = clean_text(content.get("name")).strip()
        return _link_piece(url, rt.bare_text(content.get("caption")) or name or url)

    def left_out(self, block: dict, depth: int) -> None:
        self.skip(block, f"{_UNSHOWABLE.get(block['type'], 'this kind of block is not part of an email')}, so it is left out")


_UNSHOWABLE = {  # why each kind of block cannot be shown as it is
    "child_page": "a sub-page is not part of the email",
    "child_database": "a database is not part of the email",
    "link_to_page": "a link to another Notion page would need a Notion login",
    "embed": "an embed cannot run in an email",
    "video": "a video cannot play in an email",
    "audio": "audio cannot play in an email",
    "file": "a file cannot be attached from a page",
    "pdf": "a PDF cannot be shown in an email",
    "breadcrumb": "a breadcrumb means nothing outside Notion",
    "table_of_contents": "a table of contents means nothing outside Notion",
    "template": "a template button means nothing outside Notion",
    "unsupported": "Notion's API does not give this block's content",
    "table_row": "a table row outside a table",
}


def _media_url(content: dict) -> tuple[str | None, str]:
    """A block's public URL: `url` (embed, and any unknown block with one)
    or an external file's `external.url`. Notion-hosted files are not
    linked: their URLs are signed and expire within hours."""
    if "url" in content:
        url = safe_url(content.get("url"))
        return url, "" if url else "its URL is not http, https or mailto"
    kind = content.get("type")
    if kind == "external":
        external = content.get("external")
        url = safe_url(external.get("url")) if isinstance(external, dict) else None
        return url, "" if url else "its URL is not http, https or mailto"
    if kind in ("file", "file_upload"):
        return None, "a file kept by Notion has no lasting URL"
    return None, "it has no URL"


def _link_piece(url: str, text: str) -> Piece:
    text = text.strip() or url
    html = f'<p style="{P_STYLE}">{rt.link_html(url, escape(text))}</p>'
    return Piece(html, rt.link_text(text, url))


def _caption(content: dict) -> Piece:
    caption = content.get("caption")
    inner = rt.to_html(caption)
    if not inner:
        return Piece("", "")
    return Piece(f'<p style="{CAPTION_STYLE}">{inner}</p>', rt.to_text(caption))


def _then(first: Piece, second: Piece) -> Piece:
    """Two pieces, one after the other, as one block."""
    html = "\n".join(part for part in (first.html, second.html) if part)
    return Piece(html, _join_text([first, second], "\n"))


def _icon_text(icon: object) -> str:
    """A callout's icon as text: an emoji as itself; an image icon (external,
    file or custom emoji) is left out rather than fetched from Notion."""
    if isinstance(icon, dict) and icon.get("type") == "emoji":
        return clean_text(icon.get("emoji")).strip()[:MAX_ICON_CHARS]
    return ""


_HANDLERS: dict[str, Callable[[_Renderer, dict, int], Piece | None]] = {
    "paragraph": _Renderer.paragraph,
    "to_do": _Renderer.to_do,
    "quote": _Renderer.quote,
    "callout": _Renderer.callout,
    "toggle": _Renderer.toggle,
    "code": _Renderer.code,
    "equation": _Renderer.equation,
    "divider": _Renderer.divider,
    "image": _Renderer.image,
    "bookmark": _Renderer.bookmark,
    "link_preview": _Renderer.bookmark,
    "table": _Renderer.table,
    "column_list": _Renderer.container,
    "column": _Renderer.container,
    "synced_block": _Renderer.container,
    "child_page": _Renderer.left_out,
    "child_database": _Renderer.left_out,
    "link_to_page": _Renderer.left_out,
    "breadcrumb": _Renderer.left_out,
    "table_of_contents": _Renderer.left_out,
    "template": _Renderer.left_out,
    "unsupported": _Renderer.left_out,
    "table_row": _Renderer.left_out,
}
