"""The email layout and the inline styles of every rendered Notion block.

Inline styles only: Gmail drops <style> elements, and no client shares our
classes. The layout is a centred table 600 pixels wide: Outlook honours its
width attribute (it ignores max-width), other clients shrink it to a phone's
width by width:100% and max-width.
"""

from __future__ import annotations

WIDTH_PX = 600
GUTTER_PX = 16
FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
LAYOUT_OPEN = (
    f'<table role="presentation" width="{WIDTH_PX}" align="center" cellpadding="0" cellspacing="0" border="0"'
    f' style="width:100%;max-width:{WIDTH_PX}px;margin:0 auto;border-collapse:collapse">'
    f'<tr><td style="padding:0 {GUTTER_PX}px;{FONT};font-size:16px;line-height:1.5;color:#37352f">'
)
LAYOUT_CLOSE = "</td></tr></table>"
# Images fill the column; the width attribute is for Outlook, which ignores
# max-width and would otherwise show a large image at its own size.
IMAGE_WIDTH_PX = WIDTH_PX - 2 * GUTTER_PX

P_STYLE = "margin:0 0 16px"
HEADING_STYLES = {
    "heading_1": ("h1", "margin:32px 0 12px;font-size:28px;line-height:1.25;font-weight:700"),
    "heading_2": ("h2", "margin:28px 0 10px;font-size:22px;line-height:1.3;font-weight:700"),
    "heading_3": ("h3", "margin:24px 0 8px;font-size:18px;line-height:1.35;font-weight:700"),
}
LIST_TAGS = {"bulleted_list_item": "ul", "numbered_list_item": "ol"}
LIST_STYLE = "margin:0 0 16px;padding:0 0 0 24px"
NESTED_LIST_STYLE = "margin:4px 0 0;padding:0 0 0 24px"
NESTED_STYLE = "margin:0 0 0 24px"
QUOTE_STYLE = "margin:0 0 16px;padding:2px 0 2px 14px;border-left:3px solid #37352f"
CALLOUT_STYLE = "padding:12px 16px;background-color:{background};border-radius:4px"
CODE_BLOCK_STYLE = (
    "margin:0 0 16px;padding:12px 16px;background-color:#f7f6f3;border-radius:4px;"
    "font-family:Menlo,Consolas,'Courier New',monospace;font-size:13px;line-height:1.45;"
    "white-space:pre-wrap;word-wrap:break-word"
)
CAPTION_STYLE = "margin:-8px 0 16px;font-size:13px;color:#787774"
HR_STYLE = "border:0;border-top:1px solid #e3e2e0;height:0;margin:24px 0"
TABLE_STYLE = "width:100%;border-collapse:collapse;margin:0 0 16px;font-size:14px"
CELL_STYLE = "border:1px solid #e3e2e0;padding:6px 8px;text-align:left;vertical-align:top"
HEADER_CELL_STYLE = CELL_STYLE + ";background-color:#f7f6f3;font-weight:700"
EQUATION_STYLE = P_STYLE + ";text-align:center;font-family:'Times New Roman',serif;font-style:italic"
DIVIDER_TEXT = "-" * 20
