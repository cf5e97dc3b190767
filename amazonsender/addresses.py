"""Addresses and display names: the one check, normalisation and header form of every address we write or SES sees.

Three rules, from what SES and RFC 5322 accept:

- An address SES can send to is 7-bit ASCII: SES has no SMTPUTF8, so a
  non-ASCII local part (`üser@…`) cannot be addressed at all, and an
  internationalised domain goes as its IDNA (punycode) form.
- A display name is text, never header syntax. Control characters and line
  separators become spaces, runs of white space one space, and a name is cut
  to MAX_NAME_CHARS. A name that is not plain ASCII, or that looks like an RFC
  2047 encoded word, is written as encoded words of its own, so a mail client
  shows exactly the text we hold: `=?utf-8?b?…?=` in a CRM export is shown as
  those characters, never decoded into a Bcc header or a second address.
- Every header line we write is ASCII and at most 78 characters where it can
  be folded (RFC 5322's SHOULD), never over 998 (its MUST).

The email package is not used to write these headers: its header parser
decodes encoded words in the value it is given, which turns the text
`=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=` into a line break and a Bcc header.
"""

from __future__ import annotations

import base64
import re
from email.utils import getaddresses, parseaddr

from email_validator import EmailNotValidError, validate_email

MAX_NAME_CHARS = 200
# An encoded name may not grow past this, so that `To: name <address>` stays
# within 998 even on one line (SES writes SendBulkEmail's To header itself and
# does not say that it folds): 600 + 254 + the rest < 998.
MAX_ENCODED_NAME_CHARS = 600
MAX_ADDRESS_CHARS = 254
# RFC 5321 4.5.3.1: a local part of at most 64 octets, a domain label of at
# most 63 (RFC 1035). SES refuses longer ones; email-validator does not check
# the local part's.
MAX_LOCAL_PART_CHARS = 64
MAX_LABEL_CHARS = 63
# RFC 2047: a line holding an encoded word is at most 76 characters. 39 bytes
# make 52 base64 characters, 64 with `=?utf-8?b?` and `?=`: it fits after the
# longest field name we write ("Reply-To: ").
ENCODED_WORD_BYTES = 39
FOLD_AT = 78
MAX_LINE = 998


class AddressError(ValueError):
    """SES cannot send to this address; the message says why."""


# RFC 5322 atext without "=" and "?", so that no atom can be an encoded word.
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
_PLAIN_ADDRESS = re.compile(rf"(?:{_ATOM}|=)(?:\.?(?:{_ATOM}|=))*@{_DOMAIN}")
# A name written as it is: atoms separated by single spaces.
_PLAIN_NAME = re.compile(rf"{_ATOM}(?: {_ATOM})*")
# What is not text in a name or a subject: Unicode's control characters
# (category Cc: C0, DEL and C1 with NEL), the line and paragraph separators
# (Zl, Zp) and unpaired surrogates (Cs). A regular expression, not
# unicodedata per character: it runs for every recipient's name.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def normalize_address(value: str, *, special_use_domains: bool = False) -> str:
    """An address as we store it: syntax checked (no DNS), the domain in its
    lower-case IDNA ASCII form, the local part as given (mail servers may
    treat its case as significant). Raises AddressError with the reason,
    for a non-ASCII local part too. Reserved domains (`.test`, `.invalid`)
    are refused, but for `.test` when `special_use_domains`."""
    value = value.strip()
    if not value:
        raise AddressError("the address is empty")
    if not_text(value):
        raise AddressError("the address contains a control character")
    try:
        result = validate_email(
            value, check_deliverability=False, allow_smtputf8=False, test_environment=special_use_domains
        )
    except EmailNotValidError as exc:
        reason = str(exc)
        if "before the @-sign" in reason and "nternationali" in reason:
            reason += " (SES cannot send to addresses with non-ASCII characters before the @)"
        raise AddressError(reason) from None
    local, _, domain = result.ascii_email.rpartition("@")
    if len(local) > MAX_LOCAL_PART_CHARS:
        raise AddressError(f"the part before the @ has {len(local)} characters, more than {MAX_LOCAL_PART_CHARS}")
    return f"{local}@{domain.lower()}"


def ses_address(value: str) -> str:
    """`value`, a stored address, as SES takes it, or AddressError. Addresses
    imported before these checks existed may have a Unicode domain (converted
    here) or a non-ASCII local part (refused here, so that row fails alone)."""
    if len(value) <= MAX_ADDRESS_CHARS and _PLAIN_ADDRESS.fullmatch(value):
        local, _, domain = value.rpartition("@")
        # Punycode labels and the length limits need the full check.
        if len(local) <= MAX_LOCAL_PART_CHARS and "xn--" not in domain.lower():
            if all(len(label) <= MAX_LABEL_CHARS for label in domain.split(".")):
                return value
    # Whatever the import allowed then goes, reserved domain or not.
    return normalize_address(value, special_use_domains=True)


def is_one_address(value: str) -> bool:
    """One plausible address, as `a@b.c` or `Name <a@b.c>`, that SES can send
    to: no control characters, not two addresses in one entry (that would get
    round a limit on how many test addresses one request names)."""
    if not_text(value) or len(getaddresses([value])) != 1:
        return False
    name, address = parseaddr(value)
    if not address:
        return False
    try:
        ses_address(address)
    except AddressError:
        return False
    return True


def not_text(value: str) -> str | None:
    """The first character of `value` that is not text (see _NOT_TEXT), or None."""
    match = _NOT_TEXT.search(value)
    return match.group() if match else None


def clean_name(name: str | None) -> str:
    """A display name as text: controls and separators as spaces, white space
    collapsed, at most MAX_NAME_CHARS characters."""
    if not name:
        return ""
    name = _NOT_TEXT.sub(" ", name)
    return " ".join(name.split())[:MAX_NAME_CHARS].rstrip()


def mailbox(address: str, name: str | None = None) -> str:
    """`name <address>` in 7-bit ASCII on one line, as SES takes it in
    FromEmailAddress, ReplyToAddresses and a SendBulkEmail destination, and as
    a header value. Raises AddressError for an address SES cannot take."""
    return format_mailbox(ses_address(address), name)


def format_mailbox(address: str, name: str | None = None) -> str:
    """mailbox() for an address that ses_address has already given: the
    sender checks each recipient's address once and uses it twice (SES's
    destination and the To header)."""
    words = name_words(clean_name(name))
    return " ".join([*words, f"<{address}>"]) if words else address


def mailbox_of(value: str) -> str:
    """A configured `Name <address>` (SES_FROM_EMAIL, SES_REPLY_TO) as mailbox()."""
    name, address = parseaddr(value)
    if not address:
        raise AddressError(f"not an email address: {value!r}")
    return mailbox(address, name)


def bare_address(value: str) -> str:
    """The address of a configured `Name <address>`."""
    return parseaddr(value)[1]


def name_words(name: str) -> list[str]:
    """A clean display name as ASCII header words: atoms as they are, a name
    with specials as one quoted string, anything else as encoded words."""
    if not name:
        return []
    if _PLAIN_NAME.fullmatch(name):
        return name.split(" ")
    if name.isascii() and "=?" not in name:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{quoted}"']
    words = encoded_words(name)
    while len(" ".join(words)) > MAX_ENCODED_NAME_CHARS:
        name = name[: len(name) * 9 // 10]
        words = encoded_words(name)
    return words


def text_words(text: str) -> list[str]:
    """Unstructured header text (a Subject) as ASCII words: plain printable
    ASCII split at its spaces, anything else as encoded words. The caller has
    refused control characters (content.subject_problem)."""
    if text.isascii() and "=?" not in text and "  " not in text and text == text.strip():
        return text.split(" ")
    return encoded_words(text)


def encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 base64 encoded words of whole UTF-8 characters,
    each at most 75 characters. White space between encoded words is not
    part of the text, so the words decode to exactly `text`."""
    words, chunk, size = [], [], 0
    for ch in text:
        length = len(ch.encode("utf-8"))
        if size + length > ENCODED_WORD_BYTES:
            words.append(_encoded_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(ch)
        size += length
    if chunk:
        words.append(_encoded_word("".join(chunk)))
    return words


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def header_line(field: str, words: list[str]) -> bytes:
    """`Field: words` in ASCII, folded between words at FOLD_AT where the
    words allow; no line over MAX_LINE (ValueError otherwise)."""
    lines, line = [], f"{field}:"
    for word in words:
        if len(line) + 1 + len(word) > FOLD_AT and line.strip() != f"{field}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    if any(len(part) > MAX_LINE for part in lines):
        raise ValueError(f"the {field} header has a word too long for one line")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def mailbox_header(field: str, address: str, name: str | None = None) -> bytes:
    """A From, To or Reply-To header naming exactly this one mailbox;
    `address` as ses_address gives it."""
    return header_line(field, format_mailbox(address, name).split(" "))
