"""Turns a mailout and one recipient into a complete MIME message.

Each recipient's message carries its own unsubscribe link, both in the footer
and in the RFC 2369 / RFC 8058 headers that Gmail and Yahoo require of bulk
senders, so a mail client can offer a one-click "Unsubscribe" button.
"""

from __future__ import annotations

import binascii
import html
import random
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html.parser import HTMLParser

from .addresses import header_line, mailbox_header, mailbox_of, ses_address, text_words
from .content import subject_problem

# The fixed headers (Date, MIME-Version, Content-Type, the parts') as the email
# package writes them for SMTP: CR LF line ends, folded at 78. From, To,
# Reply-To and Subject hold text from outside and are written by addresses.py
# instead, which never reads header syntax into that text. Not
# List-Unsubscribe either: its URL has no space to fold at, and the email
# package would turn it into an encoded word that mail clients no longer
# recognise; MessageBuilder.build writes it raw, on one line.
HEADER_POLICY = SMTP

FOOTER_HTML = (
    '<div style="margin-top:32px;padding-top:16px;border-top:1px solid #ddd;'
    'font-family:sans-serif;font-size:12px;color:#666;text-align:center">'
    "You are receiving this email because you subscribed to {who}.<br>"
    "{address}"
    '<a href="{url}" style="color:#666">Unsubscribe</a></div>'
)
FOOTER_TEXT = "\n\n--\nYou are receiving this email because you subscribed to {who}.\n{address}Unsubscribe: {url}\n"


@dataclass(frozen=True)
class Footer:
    """What the law asks at the foot of every email (docs/compliance.md): who
    sends it (NEWSLETTER_NAME), where they can be reached (POSTAL_ADDRESS, as
    CAN-SPAM requires) and a way out (the recipient's unsubscribe link)."""

    newsletter_name: str | None = None
    postal_address: str | None = None

    @classmethod
    def from_settings(cls, settings) -> Footer:
        return cls(getattr(settings, "newsletter_name", None), getattr(settings, "postal_address", None))

    def html(self, unsubscribe_url: str) -> str:
        address = f"{html.escape(self.postal_address)}<br>" if self.postal_address else ""
        who = html.escape(self.newsletter_name) if self.newsletter_name else "our newsletter"
        return FOOTER_HTML.format(who=who, address=address, url=html.escape(unsubscribe_url, quote=True))

    def text(self, unsubscribe_url: str) -> str:
        address = f"{self.postal_address}\n" if self.postal_address else ""
        return FOOTER_TEXT.format(who=self.newsletter_name or "our newsletter", address=address, url=unsubscribe_url)


@dataclass(frozen=True)
class OutgoingEmail:
    """One recipient's message, ready for a transport."""

    to_address: str
    raw: bytes
    tags: dict[str, str] = field(default_factory=dict)


class MessageBuilder:
    """Holds what every recipient's message shares (encoded once per mailout)
    and adds what is personal: the To header and the unsubscribe link.

    Building each message from scratch with the email package cost about
    3.5 ms for a 20 KB newsletter, most of a sending worker's CPU
    (BENCHMARKS.md). So the email package writes the shared headers, the
    part headers and the body lines before and after the footer once, and
    each message only adds its To, Date and List-Unsubscribe headers and the
    lines around its footer, quoted-printable-encoded by binascii (C). The
    result is the message the email package would write but for the boundary
    and small quoted-printable differences (b2a_qp writes a line of just "."
    as "=2E"); tests compare the two as a mail client reads them."""

    def __init__(
        self,
        *,
        mailout_id: str,
        subject: str,
        body_html: str,
        from_address: str,
        reply_to: str | None = None,
        footer: Footer = Footer(),
    ):
        self.mailout_id = str(mailout_id)
        self.subject = subject
        self.body_html = body_html
        self.body_text = html_to_text(body_html)
        self.from_address = from_address
        self.reply_to = reply_to
        self.footer = footer
        # Encoded by prepare() (or the first build), not here: a MessageBuilder
        # is made where no error can be recorded yet.
        self._shared: _Shared | None = None
        # (second, Date header); see _date_header.
        self._date: tuple[int, bytes] = (-1, b"")

    def build(self, *, to_email: str, to_name: str | None, unsubscribe_url: str) -> OutgoingEmail:
        """One recipient's message. Raises AddressError (a ValueError) when
        SES cannot take the address, ValueError for an unwritable link."""
        shared = self._shared or self.prepare()
        to_address = ses_address(to_email)
        to_header = mailbox_header("To", to_address, to_name)
        if _CONTROL_CHARACTERS.search(unsubscribe_url):
            # A raw header is written unchecked: never let it start a new header.
            raise ValueError("the unsubscribe URL must be on one line")
        # Raw, one line, never folded or encoded: see HEADER_POLICY. A URL
        # that is not ASCII raises UnicodeEncodeError, as the email package did.
        unsubscribe_header = f"List-Unsubscribe: <{unsubscribe_url}>\r\n".encode("ascii")
        text_middle = shared.text.personal_lines(self.footer.text(unsubscribe_url))
        html_middle = shared.html.personal_lines(self.footer.html(unsubscribe_url))
        if shared.delimiter in text_middle or shared.delimiter in html_middle:
            # Cannot happen (see _new_boundary), but a boundary inside a part
            # would cut the message short: this message gets another one.
            shared = self._encode_shared(also_avoid=(text_middle, html_middle))
        raw = b"".join(
            (
                shared.from_header,
                to_header,
                shared.subject_header,
                self._date_header(),
                shared.reply_to_header,
                unsubscribe_header,
                shared.up_to_text_footer,
                text_middle,
                shared.text_end_to_html_footer,
                html_middle,
                shared.html_end,
            )
        )
        return OutgoingEmail(to_address=to_address, raw=raw, tags={"mailout_id": self.mailout_id})

    def prepare(self) -> _Shared:
        """Encode what every recipient's message shares. A run calls this
        before it takes any recipient, so a mailout that cannot be written
        (a sender SES cannot take, say) stops the run with every row still
        queued, instead of failing recipient after recipient."""
        problem = subject_problem(self.subject)
        if problem:
            raise ValueError(problem)
        return self._shared or self._encode_shared()

    def _encode_shared(self, also_avoid: tuple[bytes, ...] = ()) -> _Shared:
        text = _EncodedBody(self.body_text, "")
        html_before, html_after = _split_at_body_end(self.body_html)
        html_part = _EncodedBody(html_before, html_after)
        boundary = _new_boundary(text.head, text.rest, html_part.head, html_part.rest, *also_avoid)
        text_headers, html_headers = _part_headers()
        after_unsubscribe = (
            _header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
            + _header("MIME-Version", "1.0")
            + _header("Content-Type", f'multipart/alternative; boundary="{boundary}"')
        )
        # The layout the email package writes: a blank line after the headers,
        # each part after "--boundary", a CRLF before each later delimiter
        # (it belongs to the delimiter, RFC 2046) and "--boundary--" at the end.
        delimiter = b"--" + boundary.encode("ascii")
        shared = _Shared(
            from_header=header_line("From", mailbox_of(self.from_address).split(" ")),
            subject_header=header_line("Subject", text_words(self.subject)),
            reply_to_header=header_line("Reply-To", mailbox_of(self.reply_to).split(" ")) if self.reply_to else b"",
            up_to_text_footer=after_unsubscribe + CRLF + delimiter + CRLF + text_headers + CRLF + text.head,
            text_end_to_html_footer=text.rest + CRLF + delimiter + CRLF + html_headers + CRLF + html_part.head,
            html_end=html_part.rest + CRLF + delimiter + b"--" + CRLF,
            delimiter=delimiter,
            text=text,
            html=html_part,
        )
        if not also_avoid:
            self._shared = shared
        return shared

    def _date_header(self) -> bytes:
        # Per message, not per mailout: a big list on a young SES account
        # (14/s) takes hours, and Date should say when the email left. Written
        # by the email package once a second at most (a cheap cache); the
        # tuple is replaced whole, so threads sharing the builder never see
        # half of it.
        now = int(time.time())
        second, header = self._date
        if second != now:
            header = _header("Date", format_datetime(datetime.fromtimestamp(now, timezone.utc)))
            self._date = (now, header)
        return header


CRLF = b"\r\n"


@dataclass(frozen=True)
class _Shared:
    """A mailout's message, encoded, in the pieces between the personal ones."""

    from_header: bytes
    subject_header: bytes
    reply_to_header: bytes
    up_to_text_footer: bytes
    text_end_to_html_footer: bytes
    html_end: bytes
    delimiter: bytes
    text: _EncodedBody
    html: _EncodedBody


class _EncodedBody:
    """A text part that is `before + personal + after`, only `personal`
    changing per recipient, quoted-printable-encoded with as little as
    possible done per recipient.

    Quoted-printable starts afresh after each line break of its output, hard
    (a line end of the text) or soft (a "=" ending a line that would be too
    long). So `before` is encoded once and cut after its last output line
    break; the incomplete line after the cut is decoded back and encoded
    again per recipient, with the personal text and the rest of its line.
    That holds for a newsletter minified onto one line too. What follows the
    personal text's line is encoded once.

    Line ends become what the email package makes them: CR LF, CR and LF all
    end a line, and the part ends with a line end. No cut falls between a CR
    and its LF, so normalising the pieces apart is normalising the whole."""

    def __init__(self, before: str, after: str):
        # A CR at the very end may be the first half of a CR LF with the
        # personal text: it goes with the personal text.
        self.carried = "\r" if before.endswith("\r") else ""
        encoded = _quoted_printable(_lf_utf8(before.removesuffix(self.carried)))
        cut = encoded.rfind(b"\n") + 1
        self.head = _crlf(encoded[:cut])
        # No soft line break in it, so it decodes back to the very bytes.
        self.open_line = binascii.a2b_qp(encoded[cut:])
        # The first line end in `after`, with the LF of a CR LF.
        match = _FIRST_LINE_END.search(after)
        cut = match.end() if match else len(after)
        self.close_line = after[:cut]
        rest = _lf_utf8(after[cut:])
        self.rest = _crlf(_quoted_printable(rest if not rest or rest.endswith(b"\n") else rest + b"\n"))

    def personal_lines(self, personal: str) -> bytes:
        lines = self.open_line + _lf_utf8(self.carried + personal + self.close_line)
        # The part ends with a line end: these lines end it unless `after`
        # has more lines (or they are empty and `before` ended with one).
        if not self.rest and not (lines or self.head).endswith(b"\n"):
            lines += b"\n"
        return _crlf(_quoted_printable(lines))


_FIRST_LINE_END = re.compile(r"\r\n|\r|\n")
_CR_LINE_END = re.compile(r"\r\n?")
# b2a_qp keeps a space or tab before a line end literal until it reaches the
# line end, then writes it as =20 or =09: on a line already 74 or 75
# characters long that makes 77 or 78, over RFC 2045's 76. A soft line break
# before the =20 puts it back within 76.
_LONG_LINE_WITH_WHITESPACE_AT_END = re.compile(rb"^(.{74,75})(=20|=09)$", re.MULTILINE)


def _lf_utf8(text: str) -> bytes:
    """UTF-8, every line end (CR LF, CR, LF) made LF."""
    if "\r" in text:
        text = _CR_LINE_END.sub("\n", text)
    return text.encode("utf-8")


def _quoted_printable(data: bytes) -> bytes:
    """Quoted-printable with lines of at most 76 characters (RFC 2045), and
    LF line ends: b2a_qp is given LF-only data so that it writes LF soft
    line breaks too."""
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"=20\n" in encoded or b"=09\n" in encoded:
        encoded = _LONG_LINE_WITH_WHITESPACE_AT_END.sub(rb"\1=\n\2", encoded)
    return encoded


def _crlf(encoded: bytes) -> bytes:
    # The data given to b2a_qp has no CR (_lf_utf8), so every LF it wrote
    # is a line end.
    return encoded.replace(b"\n", CRLF)


def _new_boundary(*content: bytes) -> str:
    """The email package's kind of boundary, which occurs in none of `content`.

    It starts with "==", and quoted-printable text never holds "==" (an "="
    is always followed by two hex digits or a line end), so no encoded part
    can hold a delimiter line. Checked anyway: it costs next to nothing, and
    another encoding some day would otherwise cut messages short silently."""
    while True:
        boundary = _boundary_candidate()
        delimiter = b"--" + boundary.encode("ascii")
        if not any(delimiter in piece for piece in content):
            return boundary


def _boundary_candidate() -> str:
    return "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="


def _header(name: str, value: str) -> bytes:
    """One header as the email package writes it in HEADER_POLICY: non-ASCII
    as RFC 2047 encoded words, folded at 78. Like message[name] = value, it
    refuses a value with a line break (ValueError)."""
    return HEADER_POLICY.fold_binary(*HEADER_POLICY.header_store_parse(name, value))


def _part_headers() -> tuple[bytes, bytes]:
    """The headers of the text and the HTML part, exactly as the email package
    wrote them for set_content + add_alternative."""
    message = EmailMessage(policy=HEADER_POLICY)
    message.set_content("", cte="quoted-printable")
    message.add_alternative("", subtype="html", cte="quoted-printable")
    return tuple(
        b"".join(HEADER_POLICY.fold_binary(name, value) for name, value in part.raw_items())
        for part in message.iter_parts()
    )


# What must never be in a raw header: any of them could end the line (the
# email package splits at \v, \f and \x1c-\x1e as well as CR and LF).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def append_footer(body_html: str, unsubscribe_url: str, footer: Footer = Footer()) -> str:
    before, after = _split_at_body_end(body_html)
    return before + footer.html(unsubscribe_url) + after


def _split_at_body_end(body_html: str) -> tuple[str, str]:
    """The HTML before and from the last </body>, where the footer goes; all
    of it and nothing when there is no </body>."""
    # The last </body>: an earlier one could sit in a comment or a code sample.
    matches = list(re.finditer(r"</body\s*>", body_html, flags=re.IGNORECASE))
    if matches:
        where = matches[-1].start()
        return body_html[:where], body_html[where:]
    return body_html, ""


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
