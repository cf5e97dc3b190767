"""What the SES stand-in (tests/support/ses_standin.py) refuses, and why: the checks a
SendEmail or SendBulkEmail request passes before it is accepted. Each raises
BadRequest, which the stand-in answers 400 BadRequestException, as SES does.

Where each rule comes from:

- The request's shape: botocore's own copy of the SES v2 service model
  (botocore/data/sesv2/2019-09-27/service-2.json), the source of the API
  reference: member names, required members, types, lengths, enums and
  patterns (`check_model`).
- Addresses in FromEmailAddress, ReplyToAddresses and Destination must be 7-bit
  ASCII: "Amazon SES does not support the SMTPUTF8 extension, as described in
  RFC6531. For this reason, the local part of a destination email address ...
  may only contain 7-bit ASCII characters. If the domain part ... contains
  non-ASCII characters, they must be encoded using Punycode" (the Destination
  shape, https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Destination.html,
  and "The email address string must be 7-bit ASCII" at
  https://docs.aws.amazon.com/ses/latest/dg/send-email-formatted.html); a
  non-ASCII display name must be "MIME encoded-word syntax (RFC 2047)"
  (https://docs.aws.amazon.com/ses/latest/dg/send-email-raw.html), which
  also says headers other than 7-bit ASCII must be encoded words.
- A raw message "has to contain a header and a body, separated by one blank
  line", "All of the required header fields must be present", and "The
  length of any single line of text in the message can't exceed 1,000
  characters" (RFC 5321, CR LF included: 998 without it, as RFC 5322 2.1.1
  puts it), from RawMessage.Data,
  https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_RawMessage.html.
- Header fields that "can't appear more than once in the header section of a
  message" (From, Subject, Date, Message-ID, List-Unsubscribe, ...):
  https://docs.aws.amazon.com/ses/latest/dg/header-fields.html.
- MessageTag Name and Value: "only ASCII letters (a-z, A-Z), numbers (0-9),
  underscores (_), or dashes (-)", "no more than 256 characters"; MessageHeader:
  "The combined length of the header name and value must not exceed 996
  characters" (the MessageTag and MessageHeader shapes of the same model).
- SendBulkEmail: at most 50 entries, a template of at most 500 KB
  (https://docs.aws.amazon.com/ses/latest/dg/send-personalized-email-api.html
  says 500 KB for a stored template and 1 MB for an inline one's whole
  input: the stand-in keeps the lower figure, to be at least as strict).

Beyond the letter of the docs, where SES would not send what it cannot read,
the stand-in also refuses: an address that is not exactly one mailbox with a
domain of letters, digits and hyphens (at least two labels, a punycode
label "xn--" that decodes); a raw header line that is neither a field
(printable ASCII name, ':') nor a folded continuation; a From, Sender,
Reply-To, To, Cc or Bcc header whose addresses do not parse (email.policy.default
finds a defect). Only what SES is documented to take, or obviously takes,
passes: the stand-in is meant to be at least as strict as SES.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.headerregistry
import email.policy
import functools
import json
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser

import botocore.session

# SendBulkEmail takes at most 50 destinations per call.
MAX_BULK_ENTRIES = 50
# SES's limit on a template (Subject, Html and Text together).
MAX_TEMPLATE_BYTES = 500_000
# RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: 1000 characters a line with CR LF.
MAX_LINE = 998
# "Using the SES v2 API or SMTP - Maximum message size (including
# attachments): 40 MB per message (after base64 encoding)",
# https://docs.aws.amazon.com/ses/latest/dg/quotas.html.
MAX_MESSAGE_BASE64_BYTES = 40 * 1024 * 1024
# MessageHeader: name and value together.
MAX_HEADER_NAME_AND_VALUE = 996
MAX_TAG_CHARS = 256
_TAG_TEXT = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII but ':'
_FIELD_LINE = re.compile(rb"[!-9;-~]+:")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# https://docs.aws.amazon.com/ses/latest/dg/header-fields.html
SINGLE_FIELDS = frozenset(
    name.lower()
    for name in (
        "Accept-Language", "acceptLanguage", "Archived-At", "Auto-Submitted", "Bounces-to", "Comments",
        "Content-Alternative", "Content-Base", "Content-Class", "Content-Description", "Content-Disposition",
        "Content-Duration", "Content-ID", "Content-Language", "Content-Length", "Content-Location",
        "Content-MD5", "Content-Transfer-Encoding", "Content-Type", "Date", "Delivered-To",
        "Disposition-Notification-Options", "Disposition-Notification-To", "DKIM-Signature",
        "DomainKey-Signature", "Errors-To", "From", "Importance", "In-Reply-To", "Keywords", "List-Archive",
        "List-Help", "List-Id", "List-Owner", "List-Post", "List-Subscribe", "List-Unsubscribe",
        "Message-Context", "Message-ID", "MIME-Version", "Organization", "Original-From",
        "Original-Message-ID", "Original-Recipient", "Original-Subject", "Precedence", "Priority",
        "References", "Reply-To", "Return-Path", "Return-Receipt-To", "Sender", "Solicitation", "Sensitivity",
        "Subject", "Thread-Index", "Thread-Topic", "User-Agent", "VBR-Info",
    )
)  # fmt: skip
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
_POLICY = email.policy.default


class BadRequest(Exception):
    """The request is refused as a whole with 400 BadRequestException."""


# -- the service model ---------------------------------------------------------


@functools.cache
def input_shape(operation: str):
    """The input shape of an SES v2 operation, from botocore's model."""
    return botocore.session.get_session().get_service_model("sesv2").operation_model(operation).input_shape


def check_model(operation: str, body) -> None:
    """BadRequest listing every way `body` (the rest-json request body, blobs
    base64) departs from the operation's input shape: an unknown member, a
    required member missing, a wrong type, a string, blob or list shorter or
    longer than its min/max, a value outside an enum or not matching a
    pattern. botocore's ParamValidator checks less (no max, enum or pattern:
    it leaves them to the service) and works on unserialised params, so the
    stand-in walks the model itself. A pattern must match the whole value,
    the stricter reading (MessageHeaderValue's "[ -~]*" is "printable ASCII"
    in its documentation)."""
    problems: list[str] = []
    _check_value(body, input_shape(operation), "", problems)
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''}"
        raise BadRequest(f"{count} detected: " + "; ".join(problems))


def _check_value(value, shape, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    where = path or shape.name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object ({shape.name})")
            return
        for name in value:
            if name not in shape.members:
                problems.append(f"{where}: unknown member {name!r} ({shape.name} has no such member)")
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(f"{where}: required member {name!r} is missing")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check_value(value[name], member, f"{path}.{name}" if path else name, problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list ({shape.name})")
            return
        _check_size(len(value), shape, where, "entries", problems)
        for index, item in enumerate(value):
            _check_value(item, shape.member, f"{where}[{index}]", problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object ({shape.name})")
            return
        for key, item in value.items():
            _check_value(key, shape.key, f"{where} key", problems)
            _check_value(item, shape.value, f"{where}[{key!r}]", problems)
    else:
        _check_scalar(value, shape, where, problems)


def _check_scalar(value, shape, where: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string ({shape.name})")
            return
        _check_size(len(value), shape, where, "characters", problems)
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            problems.append(f"{where}: {value!r} is not one of {', '.join(enum)}")
        pattern = shape.metadata.get("pattern")
        if pattern and not re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value):
            problems.append(f"{where}: {value[:80]!r} does not match the pattern {pattern}")
    elif kind == "blob":
        try:
            data = base64.b64decode(value, validate=True)
        except (TypeError, ValueError, binascii.Error):
            problems.append(f"{where}: expected base64 data ({shape.name})")
            return
        _check_size(len(data), shape, where, "bytes", problems)
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true or false ({shape.name})")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}: expected an integer ({shape.name})")
        else:
            _check_range(value, shape, where, problems)
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{where}: expected a number ({shape.name})")
        else:
            _check_range(value, shape, where, problems)
    elif kind == "timestamp" and (not isinstance(value, (int, float, str)) or isinstance(value, bool)):
        problems.append(f"{where}: expected a timestamp ({shape.name})")


def _check_size(size: int, shape, where: str, unit: str, problems: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        problems.append(f"{where}: {size} {unit}, fewer than the minimum {low}")
    if high is not None and size > high:
        problems.append(f"{where}: {size} {unit}, more than the maximum {high}")


def _check_range(number, shape, where: str, problems: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and number < low) or (high is not None and number > high):
        problems.append(f"{where}: {number} is outside {low}..{high}")


# -- addresses -------------------------------------------------------------------


def check_address(value, where: str) -> str:
    """The bare address of a FromEmailAddress, ReplyToAddresses or Destination
    entry, or BadRequest: not 7-bit ASCII (SES has no SMTPUTF8: a non-ASCII
    display name must be RFC 2047 encoded words, an internationalised domain
    punycode, and a non-ASCII local part cannot be sent at all), or not
    exactly one mailbox."""
    if not isinstance(value, str) or not value.isascii():
        raise BadRequest(
            f"{where}: {value!r} is not 7-bit ASCII (SES does not support SMTPUTF8: a display name must be "
            "RFC 2047 encoded words, a domain punycode, a local part ASCII)"
        )
    addresses = _parse_addresses("To", value, where)
    if len(addresses) != 1:
        raise BadRequest(f"{where}: {value!r} is not one email address")
    return check_mailbox(addresses[0], where)


def _parse_addresses(field: str, value: str, where: str) -> tuple:
    """The addresses of an address header's value, or BadRequest when
    email.policy.default finds a defect (or gives up: the parser raises on
    some malformed addresses)."""
    addresses = _parsed(field, value)
    if addresses is None:
        raise BadRequest(f"{where}: {value[:80]!r} is not one email address or a list of them")
    return addresses


# A bare dot-atom address, which the email package takes without a defect.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_BARE_ADDRESS = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@({_ATEXT}(?:\.{_ATEXT})*)")


@functools.lru_cache(maxsize=8192)
def _parsed(field: str, value: str) -> tuple | None:
    """The addresses in `value`, None when it does not parse. Cached, and a
    bare address skips the parser: it costs some 0.2 ms an address, and a
    bulk call has 50 (the same From in every call)."""
    bare = _BARE_ADDRESS.fullmatch(value.strip(" \t"))
    if bare:
        return (email.headerregistry.Address(username=bare[1], domain=bare[2]),)
    try:
        header = _POLICY.header_factory(field, value)
        addresses, defects = header.addresses, header.defects
    except (email.errors.HeaderParseError, IndexError, ValueError):
        return None
    return None if defects else tuple(addresses)


def check_mailbox(address, where: str) -> str:
    """The addr-spec of an email.headerregistry.Address, or BadRequest when it
    has no local part, or a domain that is not letters, digits and hyphens
    in two labels or more (a punycode label must decode)."""
    local, domain = address.username, address.domain
    if not local or not domain or len(local) > 64 or len(domain) > 253:
        raise BadRequest(f"{where}: {address.addr_spec!r} is not an address with a local part and a domain")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadRequest(f"{where}: the domain of {address.addr_spec!r} is not a host name (IDNA, punycode)")
    for label in labels:
        if label.lower().startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise BadRequest(f"{where}: {label!r} in {address.addr_spec!r} is not valid punycode") from None
    return address.addr_spec


def check_destination(destination: dict, where: str) -> None:
    for key in ("ToAddresses", "CcAddresses", "BccAddresses"):
        for index, address in enumerate(destination.get(key) or []):
            check_address(address, f"{where}.{key}[{index}]")


def check_tags(tags, where: str) -> None:
    """MessageTag names and values: ASCII letters, digits, '_' and '-', at
    most 256 characters (the model's documentation of MessageTag)."""
    for index, tag in enumerate(tags or []):
        for key in ("Name", "Value"):
            text = tag.get(key) if isinstance(tag, dict) else None
            if not isinstance(text, str) or not _TAG_TEXT.fullmatch(text) or len(text) > MAX_TAG_CHARS:
                raise BadRequest(
                    f"{where}[{index}].{key}: {text!r} must be 1 to {MAX_TAG_CHARS} ASCII letters, digits, '_' or '-'"
                )


def check_headers(headers, where: str) -> list[tuple[str, str]]:
    """(name, value) of each MessageHeader, or BadRequest: a name that is not
    printable ASCII without ':', a value with a line break, the two longer
    than 996 characters together."""
    if headers is None:
        return []
    if not isinstance(headers, list):
        raise BadRequest(f"{where} must be a list")
    checked = []
    for header in headers:
        name, value = (header or {}).get("Name"), (header or {}).get("Value")
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or not isinstance(value, str):
            raise BadRequest(f"{where}: a header needs a Name (printable ASCII, no ':') and a Value")
        if "\r" in value or "\n" in value:
            raise BadRequest(f"{where}: the value of {name} has a line break")
        if len(name) + len(value) > MAX_HEADER_NAME_AND_VALUE:
            raise BadRequest(f"{where}: {name} and its value are over {MAX_HEADER_NAME_AND_VALUE} characters")
        checked.append((name, value))
    return checked


# -- SendEmail ---------------------------------------------------------------------


def check_send_email(body) -> tuple[bytes, list[str]]:
    """The raw message of a SendEmail request and the bare addresses its To
    header names, or BadRequest. The stand-in takes only Content.Raw, and
    wants FromEmailAddress and Destination.ToAddresses (SES could take the
    sender and recipients from the raw message; the application always
    gives both)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object")
    check_model("SendEmail", body)
    raw_data = ((body.get("Content") or {}).get("Raw") or {}).get("Data")
    if raw_data is None:
        raise BadRequest("Content.Raw.Data is required (the stand-in takes raw messages only)")
    destination = body.get("Destination") or {}
    if not body.get("FromEmailAddress") or not destination.get("ToAddresses"):
        raise BadRequest("FromEmailAddress and Destination.ToAddresses are required")
    check_address(body["FromEmailAddress"], "FromEmailAddress")
    for index, address in enumerate(body.get("ReplyToAddresses") or []):
        check_address(address, f"ReplyToAddresses[{index}]")
    check_destination(destination, "Destination")
    check_tags(body.get("EmailTags"), "EmailTags")
    raw = base64.b64decode(raw_data, validate=True)
    return raw, check_raw_message(raw)


def check_raw_message(raw: bytes) -> list[str]:
    """The bare addresses the To header of a raw message names, or BadRequest:
    no blank line after the header section, a header section that is not
    7-bit ASCII or has a line that is not a field or a continuation, a line
    (anywhere) over 998 characters, no From, a field SES allows once given
    twice, an address field that does not parse."""
    if len(raw) * 4 / 3 > MAX_MESSAGE_BASE64_BYTES:
        raise BadRequest(f"the message is {len(raw)} bytes, over 40 MB once base64-encoded")
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        raise BadRequest("the raw message has no blank line between its header and its body")
    head = raw[: match.start()]
    if not head.isascii():
        raise BadRequest("the header section of the raw message is not 7-bit ASCII (use RFC 2047 encoded words)")
    head_lines = head.split(b"\n")
    for number, line in enumerate(raw.split(b"\n"), start=1):
        length = len(line.removesuffix(b"\r"))
        if length > MAX_LINE:
            part = "header" if number <= len(head_lines) else "body"
            raise BadRequest(f"line {number} of the raw message ({part}) has {length} characters, more than {MAX_LINE}")
    for number, line in enumerate(head_lines, start=1):
        line = line.removesuffix(b"\r")
        folded = line[:1] in (b" ", b"\t") and number > 1
        if not folded and not _FIELD_LINE.match(line):
            raise BadRequest(f"line {number} of the raw message is not a header field: {line[:60]!r}")
    message = BytesHeaderParser(policy=_POLICY).parsebytes(head + b"\r\n\r\n")
    names = [name.lower() for name in message]
    if "from" not in names:
        raise BadRequest("the raw message has no From header")
    repeated = sorted({name for name in names if name in SINGLE_FIELDS and names.count(name) > 1})
    if repeated:
        raise BadRequest(f"the raw message has more than one {repeated[0]} header (SES allows it once)")
    to_addresses: list[str] = []
    for name, value in message.raw_items():
        if name.lower() not in _ADDRESS_FIELDS:
            continue
        where = f"the {name} header of the raw message"
        for address in _parse_addresses(name, re.sub(r"\r?\n", "", value), where):
            bare = check_mailbox(address, where)
            if name.lower() == "to":
                to_addresses.append(bare)
    return to_addresses


# -- SendBulkEmail -----------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """SendBulkEmail's DefaultContent.Template, checked."""

    from_address: str
    reply_to: tuple[str, ...]
    subject: str
    html: str | None
    text: str | None
    data: dict
    headers: tuple[tuple[str, str], ...]
    name: str | None = None  # TemplateName, if the request gave one


def json_object(text, where: str) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise BadRequest(f"{where} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{where} is not a JSON object")
    return value


def entry_destinations(entry: dict) -> list[str]:
    return list(((entry.get("Destination") or {}).get("ToAddresses")) or [])


def check_bulk_request(body) -> tuple[Template, list[dict]]:
    """The template and the entries, or BadRequest for what SES refuses as a
    whole: a body off the model, no sender, no inline template, 0 or more
    than 50 entries, an entry without a destination, an address that is not
    7-bit ASCII or not one mailbox, bad tags, bad headers, template data that
    is not a JSON object, a template over 500 KB. (Which of these real SES
    refuses as a whole rather than per entry is the stand-in's reading of its
    docs.)"""
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object")
    check_model("SendBulkEmail", body)
    if not body.get("FromEmailAddress"):
        raise BadRequest("FromEmailAddress is required")
    check_address(body["FromEmailAddress"], "FromEmailAddress")
    for index, address in enumerate(body.get("ReplyToAddresses") or []):
        check_address(address, f"ReplyToAddresses[{index}]")
    check_tags(body.get("DefaultEmailTags"), "DefaultEmailTags")
    template = ((body.get("DefaultContent") or {}).get("Template")) or {}
    content = template.get("TemplateContent")
    if not isinstance(content, dict):
        raise BadRequest("DefaultContent.Template.TemplateContent is required (the stand-in has no stored templates)")
    subject, html_part, text_part = content.get("Subject"), content.get("Html"), content.get("Text")
    if not isinstance(subject, str) or not subject or not (html_part or text_part):
        raise BadRequest("TemplateContent needs a Subject and an Html or a Text part")
    size = sum(len(part.encode()) for part in (subject, html_part or "", text_part or ""))
    if size > MAX_TEMPLATE_BYTES:
        raise BadRequest(f"the template is {size} bytes, more than {MAX_TEMPLATE_BYTES}")
    data = json_object(template.get("TemplateData"), "TemplateData")
    headers = check_headers(template.get("Headers"), "DefaultContent.Template.Headers")
    entries = body.get("BulkEmailEntries")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BULK_ENTRIES:
        raise BadRequest(f"BulkEmailEntries must hold 1 to {MAX_BULK_ENTRIES} entries")
    for number, entry in enumerate(entries, start=1):
        _check_entry(entry, f"BulkEmailEntries[{number}]")
    return (
        Template(
            from_address=body["FromEmailAddress"],
            reply_to=tuple(body.get("ReplyToAddresses") or []),
            subject=subject,
            html=html_part,
            text=text_part,
            data=data,
            headers=tuple(headers),
            name=template.get("TemplateName"),
        ),
        entries,
    )


def _check_entry(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise BadRequest(f"{where} is not an object")
    destinations = entry_destinations(entry)
    if not destinations or not all(isinstance(d, str) and d for d in destinations):
        raise BadRequest(f"{where} needs Destination.ToAddresses")
    check_destination(entry.get("Destination") or {}, f"{where}.Destination")
    check_tags(entry.get("ReplacementTags"), f"{where}.ReplacementTags")
    check_headers(entry.get("ReplacementHeaders"), f"{where}.ReplacementHeaders")
    replacement = ((entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate")) or {}
    json_object(replacement.get("ReplacementTemplateData"), f"{where} ReplacementTemplateData")
