"""A mailout as the inline template of SES SendBulkEmail, and each recipient's entry in such a call.

The SES v2 reference for TemplateContent says that with an inline template
"Amazon SES supports only simple substitutions": `{{name}}`, nothing of
Handlebars beyond it (no `{{{name}}}`, no blocks, no escaping of braces). So
the one variable is written `{{t}}`, the recipient's unsubscribe token, which
is URL-safe base64 and dots and reads the same escaped or not. A mailout
whose own subject or text holds "{{" cannot be a template at all (SES would
read it as a variable, and there is no way to escape it): it goes out with
one SendEmail per recipient instead, unchanged. A lone "}}" is plain text to
SES and stays in the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .addresses import format_mailbox, ses_address
from .message import _CONTROL_CHARACTERS, Footer, append_footer, html_to_text

TOKEN_VARIABLE = "t"
TOKEN_PLACEHOLDER = "{{" + TOKEN_VARIABLE + "}}"
# SES reads "{{" in a template as the start of a variable.
TEMPLATE_MARKER = "{{"
# SES's limit on a template is 500 KB; stay clear of it.
MAX_TEMPLATE_BYTES = 400_000


@dataclass(frozen=True)
class BulkRecipient:
    """One destination of a SendBulkEmail call."""

    to_address: str  # the address alone, as SES takes it (IDNA domain)
    destination: str  # `Name <address>` in ASCII, a non-ASCII name as RFC 2047 encoded words
    unsubscribe_url: str
    template_data: str  # JSON: {"t": token}


@dataclass(frozen=True)
class BulkContent:
    """A mailout as the inline SES template of SendBulkEmail: what every
    recipient shares, with the unsubscribe token as the only variable (in the
    footer's link), plus the headers every copy carries. Per recipient, SES
    gets the To address, the template data and the List-Unsubscribe header."""

    mailout_id: str
    subject: str
    html: str
    text: str
    unsubscribe_base: str  # the unsubscribe URL up to the token
    headers: tuple[tuple[str, str], ...] = (("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),)

    @property
    def tags(self) -> dict[str, str]:
        return {"mailout_id": self.mailout_id}

    def recipient(self, *, to_email: str, to_name: str | None, token: str) -> BulkRecipient:
        """The entry for one recipient; AddressError (a ValueError) when SES
        cannot take the address."""
        url = self.unsubscribe_base + token
        if _CONTROL_CHARACTERS.search(url) or not url.isascii():
            raise ValueError("the unsubscribe URL must be one line of ASCII")
        address = ses_address(to_email)
        return BulkRecipient(
            to_address=address,
            destination=format_mailbox(address, to_name),
            unsubscribe_url=url,
            template_data=json.dumps({TOKEN_VARIABLE: token}, separators=(",", ":")),
        )


def bulk_content(
    *, mailout_id: str, subject: str, body_html: str, unsubscribe_base: str, footer: Footer = Footer()
) -> tuple[BulkContent | None, str]:
    """The mailout as an SES template, or None and the reason it cannot be one."""
    body_text = html_to_text(body_html)
    for name, value in (("subject", subject), ("body", body_html), ("plain-text body", body_text)):
        if TEMPLATE_MARKER in value:
            return None, f"the {name} contains '{{{{', which SES would read as a template variable"
    if TEMPLATE_MARKER in unsubscribe_base or _CONTROL_CHARACTERS.search(subject):
        return None, "the subject or the unsubscribe URL cannot go into an SES template"
    if "=?" in subject:
        # SES writes an ASCII subject into the header as it is, so a mail
        # client would decode text that looks like an RFC 2047 encoded word;
        # SendEmail writes it as encoded words of its own.
        return None, "the subject contains '=?', which mail clients would read as an encoded word"
    url = unsubscribe_base + TOKEN_PLACEHOLDER
    html_part = append_footer(body_html, url, footer)
    text_part = body_text + footer.text(url)
    if html_part.count(TEMPLATE_MARKER) != 1 or text_part.count(TEMPLATE_MARKER) != 1:
        # Our one variable and nothing else: "{{" in NEWSLETTER_NAME or
        # POSTAL_ADDRESS, even "{{t}}", would be substituted in every copy.
        return None, "the footer (NEWSLETTER_NAME or POSTAL_ADDRESS) contains '{{'"
    if len(html_part.encode()) + len(text_part.encode()) > MAX_TEMPLATE_BYTES:
        return None, f"the mailout is larger than {MAX_TEMPLATE_BYTES // 1000} KB, too large for an SES template"
    content = BulkContent(
        mailout_id=str(mailout_id), subject=subject, html=html_part, text=text_part, unsubscribe_base=unsubscribe_base
    )
    return content, ""
