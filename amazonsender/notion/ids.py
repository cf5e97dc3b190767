"""Which Notion page a string names: a page URL or an id, as a canonical UUID.

Accepted: a bare id (32 hex digits, or a dashed UUID), or an http(s) URL
whose last path segment ends in the page's 32 hex digits
(https://www.notion.so/Title-<32hex>?pvs=4, https://x.notion.site/Title-<32hex>),
or whose `p` query parameter is one (a page opened in a side peek:
.../Database-<db>?v=<view>&p=<page>&pm=s). A `#fragment` names a block
within the page and is ignored.

The URL's host is not checked: only the id is used, and it is only ever
sent to NOTION_BASE_URL; the host in the URL is never contacted. A copy of
a page's link from a custom domain, notion.com or notion.site therefore
works, and no host can be made to receive anything.

Anything else (another type, a control character such as NUL, more than
MAX_INPUT_CHARS characters, a URL with no id in it) is a ValueError with a
message fit to show the person who typed it: it never repeats their input.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

# A Notion page URL is well under this; anything longer is not one.
MAX_INPUT_CHARS = 2048

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_DASHED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The id at the end of a path segment: "Title-<32hex>", "<32hex>" or a dashed UUID.
_SEGMENT_ID = re.compile(
    r"(?:^|-)([0-9a-fA-F]{32})$|^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)

WHAT_IS_ACCEPTED = "a Notion page URL or a page id (32 hex digits or a UUID)"


def page_id(text: object) -> str:
    """The page id `text` names, as a lowercase dashed UUID."""
    if not isinstance(text, str):
        raise ValueError(f"the Notion page must be given as {WHAT_IS_ACCEPTED}")
    if len(text) > MAX_INPUT_CHARS:
        raise ValueError(f"the Notion page is over {MAX_INPUT_CHARS} characters long; give {WHAT_IS_ACCEPTED}")
    text = text.strip()
    if not text.isprintable():
        raise ValueError(f"the Notion page contains a control character; give {WHAT_IS_ACCEPTED}")
    if not text:
        raise ValueError(f"no Notion page given; give {WHAT_IS_ACCEPTED}")
    if _HEX32.fullmatch(text) or _DASHED.fullmatch(text):
        return str(UUID(text))
    if "://" in text:
        found = _id_in_url(text)
        if found:
            return found
        raise ValueError(f"that URL names no Notion page (no page id at the end of its path); give {WHAT_IS_ACCEPTED}")
    raise ValueError(f"that is not {WHAT_IS_ACCEPTED}")


def _id_in_url(text: str) -> str | None:
    try:
        parts = urlsplit(text)
    except ValueError:  # an invalid IPv6 host, say
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    peeked = parse_qs(parts.query).get("p", [])
    if len(peeked) == 1 and (_HEX32.fullmatch(peeked[0]) or _DASHED.fullmatch(peeked[0])):
        return str(UUID(peeked[0]))
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments:
        return None
    match = _SEGMENT_ID.search(segments[-1])
    if match is None:
        return None
    return str(UUID(match.group(1) or match.group(2)))
