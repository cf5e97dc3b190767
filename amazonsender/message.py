"""Turns a mailout and one recipient into a complete MIME message.

Each recipient's message carries its own unsubscribe link, both in the footer
and in the RFC 2369 / RFC 8058 headers that Gmail and Yahoo require of bulk
senders, so a mail client can offer a one-click "Unsubscribe" button.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, parseaddr
from html.parser import HTMLParser

# The email package quoted-printable-encodes a body with lines as long as the
# policy's max_line_length, and RFC 2045 allows at most 76.
BODY_POLICY = SMTP.clone(max_line_length=76)
# Headers are folded at 78 as usual, so a long non-ASCII Subject or name becomes
# several short RFC 2047 encoded words (RFC 2047 forbids one encoded word
# hundreds of characters long). The List-Unsubscribe URL has no space to fold
# at, and the email package would turn it into an encoded word that mail
# clients no longer recognise; so it is stored raw with `set_raw`, and
# refold_source="none" writes raw values exactly as given.
OUTPUT_POLICY = SMTP.clone(refold_source="none")

FOOTER_HTML = (
    '<div style="margin-top:32px;padding-top:16px;border-top:1px solid #ddd;'
    'font-family:sans-serif;font-size:12px;color:#666;text-align:center">'
    "You are receiving this email because you subscribed to our newsletter.<br>"
    '<a href="{url}" style="color:#666">Unsubscribe</a></div>'
)
FOOTER_TEXT = "\n\n--\nYou are receiving this email because you subscribed to our newsletter.\nUnsubscribe: {url}\n"


@dataclass(frozen=True)
class OutgoingEmail:
    """One recipient's message, ready for a transport."""

    to_address: str
    raw: bytes
    tags: dict[str, str] = field(default_factory=dict)


class MessageBuilder:
    """Holds what every recipient's message shares (computed once per mailout)
    and adds what is personal: the To header and the unsubscribe link."""

    def __init__(
        self,
        *,
        mailout_id: str,
        subject: str,
        body_html: str,
        from_address: str,
        reply_to: str | None = None,
    ):
        self.mailout_id = str(mailout_id)
        self.subject = subject
        self.body_html = body_html
        self.body_text = html_to_text(body_html)
        self.from_address = from_address
        self.reply_to = reply_to

    def build(self, *, to_email: str, to_name: str | None, unsubscribe_url: str) -> OutgoingEmail:
        message = EmailMessage(policy=BODY_POLICY)
        message["From"] = self.from_address
        message["To"] = format_recipient(to_email, to_name)
        message["Subject"] = self.subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        if "\r" in unsubscribe_url or "\n" in unsubscribe_url:
            # A raw header is written unchecked: never let it start a new header.
            raise ValueError("the unsubscribe URL must be on one line")
        message.set_raw("List-Unsubscribe", f"<{unsubscribe_url}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # Quoted-printable keeps every line 7-bit and short whatever the text.
        text = self.body_text + FOOTER_TEXT.format(url=unsubscribe_url)
        message.set_content(text, cte="quoted-printable")
        html_part = append_footer(self.body_html, unsubscribe_url)
        message.add_alternative(html_part, subtype="html", cte="quoted-printable")
        return OutgoingEmail(
            to_address=to_email,
            raw=message.as_bytes(policy=OUTPUT_POLICY),
            tags={"mailout_id": self.mailout_id},
        )


def format_recipient(email: str, name: str | None) -> str:
    """`Name <email>` when the name is known; quoting and encoding of
    non-ASCII names is left to the email package."""
    clean_name = " ".join((name or "").split())
    if not clean_name:
        return email
    try:
        local, _, domain = email.rpartition("@")
        return str(Address(display_name=clean_name, username=local, domain=domain))
    except (ValueError, IndexError):
        return formataddr((clean_name, email))


def address_only(value: str) -> str:
    return parseaddr(value)[1]


def append_footer(body_html: str, unsubscribe_url: str) -> str:
    footer = FOOTER_HTML.format(url=html.escape(unsubscribe_url, quote=True))
    # The last </body>: an earlier one could sit in a comment or a code sample.
    matches = list(re.finditer(r"</body\s*>", body_html, flags=re.IGNORECASE))
    if matches:
        where = matches[-1].start()
        return body_html[:where] + footer + body_html[where:]
    return body_html + footer


BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol",
    "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
}  # fmt: skip
# Not "head": HTML lets </head> be left out, and skipping up to a missing end
# tag would drop the whole body. What <head> holds is in these tags or has no text.
SKIPPED_TAGS = {"style", "script", "title"}
LIST_MARKER = "\n- "


class _TextExtractor(HTMLParser):
    """A small HTML-to-text converter for the plain-text alternative: keeps
    paragraphs and line breaks, writes links as `text (url)` and list items
    as `- item`, and drops styles and scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        # For each open <a>: its href and where its text starts in parts.
        self.links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append(LIST_MARKER)
        elif tag in BLOCK_TAGS:
            self.block_break()
        elif tag == "td":
            self.parts.append(" ")
        if tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_endtag(self, tag):
        if tag in SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in BLOCK_TAGS:
            self.block_break()
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.parts[start:]).strip()
            shown = href.removeprefix("mailto:") if href else None
            # A link whose text is already its address is not written twice.
            if href and href.startswith(("http://", "https://", "mailto:")) and text not in (href, shown):
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        if not self.skip_depth:
            self.parts.append(re.sub(r"\s+", " ", data))

    def block_break(self):
        # `<li><p>item</p></li>` is one item: keep its text on the "- " line.
        if self.parts and self.parts[-1] == LIST_MARKER:
            return
        self.parts.append("\n\n")


def html_to_text(body_html: str) -> str:
    parser = _TextExtractor()
    parser.feed(body_html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
