"""How the stand-in renders a SendBulkEmail entry: the simple substitution
an inline SES template gets, and the email SES sends for it."""

from __future__ import annotations

import binascii
import email.policy
import json
import re
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.ses_standin import BulkDelivery

# Inline templates get "only simple substitutions" (the SES v2 reference for
# Template.TemplateContent): {{name}}, spaces allowed inside the braces, a
# name of letters, digits and _$@- (no dots: nothing looks into objects).
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_$@-]+)\s*\}\}")
# What Handlebars escapes in {{name}}; the Html part keeps this escaping, as
# the docs do not say whether inline templates escape.
_HANDLEBARS_ESCAPES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;", "=": "&#x3D;",
}  # fmt: skip


class _RenderingFailure(Exception):
    pass


def _lookup(data: dict, name: str) -> str:
    if name not in data:
        # SES's own words, in the Rendering Failure event's errorMessage.
        raise _RenderingFailure(f"Attribute '{name}' is not present in the rendering data.")
    value = data[name]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render_template(template: str, data: dict, *, escape_html: bool) -> str:
    """Simple substitution, all an inline SES template gets: `{{name}}` is the
    value (HTML-escaped when `escape_html`). Nothing of Handlebars beyond it:
    `{{{name}}}` is not a raw insert but a literal "{", the value and "}"
    (a link written with triple braces keeps them); a "}}" of the text's own
    stays as it is. A name with no value, or any other "{{" (a block, a
    comment, a dotted name, "{{" alone), is a _RenderingFailure."""
    pieces = []
    position = 0
    for match in _VARIABLE.finditer(template):
        literal = template[position : match.start()]
        if "{{" in literal:
            raise _RenderingFailure("the template has a '{{' that is not a simple variable")
        value = _lookup(data, match.group(1))
        if escape_html:
            value = "".join(_HANDLEBARS_ESCAPES.get(ch, ch) for ch in value)
        pieces += (literal, value)
        position = match.end()
    rest = template[position:]
    if "{{" in rest:
        raise _RenderingFailure("the template has a '{{' that is not a simple variable")
    pieces.append(rest)
    return "".join(pieces)


_RENDER_POLICY = email.policy.SMTP


def _render_header(name: str, value: str) -> bytes:
    """One header line: ASCII as it is, on one line, as SES passes it on (a
    destination with a non-ASCII name comes as RFC 2047 encoded words
    already, and folding would turn a long List-Unsubscribe URL into an
    encoded word); non-ASCII (a Subject) as the email package encodes it."""
    if value.isascii():
        return f"{name}: {value}\r\n".encode("ascii")
    return _RENDER_POLICY.fold_binary(*_RENDER_POLICY.header_store_parse(name, value))


def _render_part(subtype: str, content: str) -> bytes:
    data = re.sub(r"\r\n?", "\n", content)
    if not data.endswith("\n"):
        data += "\n"
    encoded = binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    ).encode("ascii") + encoded


def render_email(delivery: BulkDelivery, destinations: list[str]) -> bytes:
    """The email SES sends for one accepted bulk entry (to `destinations`,
    its ToAddresses as given). Written by hand, not by EmailMessage, which
    costs milliseconds a message."""
    body = delivery.request.body
    headers = [
        ("From", body["FromEmailAddress"]),
        ("To", ", ".join(destinations)),
        ("Subject", delivery.subject),
    ]
    if body.get("ReplyToAddresses"):
        headers.append(("Reply-To", ", ".join(body["ReplyToAddresses"])))
    headers += [("Date", delivery.date), ("Message-ID", f"<{delivery.message_id}@email.amazonses.com>")]
    headers += delivery.email_headers
    headers.append(("MIME-Version", "1.0"))
    parts = [("plain", delivery.text), ("html", delivery.html)]
    parts = [_render_part(subtype, content) for subtype, content in parts if content is not None]
    head = b"".join(_render_header(name, value) for name, value in headers)
    if len(parts) == 1:
        return head + parts[0]
    boundary = f"=_standin_{uuid.uuid4().hex}"
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return (
        head
        + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii")
        # The CR LF before a delimiter belongs to it (RFC 2046): each part
        # keeps its own last line end.
        + b"".join(delimiter + part + b"\r\n" for part in parts)
        + f"--{boundary}--\r\n".encode("ascii")
    )
