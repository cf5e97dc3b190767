"""Reading JSON that comes from outside (request bodies, the SES event inside
an SNS message): a limit on how deeply it may nest, and its strings made
storable. No Flask in here. (The body limit, 413 for a body over 64 KiB with
or without a Content-Length, is web.BodyLimit's, for every endpoint.)

Python's json parser recurses once per array or object level and raises
RecursionError (not ValueError) at about a thousand: `[` repeated 30,000
times, well under the 64 KiB body limit, would end in a 500. What we accept
nests a few levels (an SES event about five, a Notion webhook body about
eight), so anything deeper than MAX_DEPTH is refused before it is parsed.
The limit sits far below the interpreter's, so nothing that walks an
accepted document later (json.dumps, psycopg, Postgres) comes near it either.
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 64

# A JSON string, escapes included; what is left once these are gone holds
# every bracket that opens or closes an array or object, and no other.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


# What Postgres cannot store in text or jsonb: NUL, and lone surrogates
# (UTF-8 cannot encode them). JSON spells both with \u escapes, so any
# document may hold them, in a value or a key.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In JSON text, the escapes that can spell one. A match may be a false alarm
# (an escaped backslash before "u0000", a surrogate pair): it costs a walk.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
REPLACEMENT = "\ufffd"


class TooDeep(ValueError):
    """The JSON nests arrays and objects more than MAX_DEPTH levels deep."""


def loads(data: str | bytes | bytearray):
    """json.loads, but TooDeep (a ValueError) for JSON nested deeper than
    MAX_DEPTH; otherwise the same answers and the same errors."""
    # Fewer opening brackets than the limit cannot nest past it: nearly every
    # real document is settled by these two counts, made in C.
    if isinstance(data, str):
        opening = data.count("[") + data.count("{")
    elif isinstance(data, (bytes, bytearray)):
        opening = data.count(b"[") + data.count(b"{")
    else:
        opening = 0  # not JSON text: json.loads raises its TypeError
    if opening > MAX_DEPTH:
        data = _text(data)
        if _nests_deeper(data, MAX_DEPTH):
            raise TooDeep(f"nests JSON arrays and objects more than {MAX_DEPTH} levels deep")
    return json.loads(data)


def _text(data: str | bytes | bytearray) -> str:
    # As json.loads decodes bytes (UTF-8, -16 or -32, found from the first
    # bytes); UnicodeDecodeError is a ValueError, as json.loads would raise.
    if isinstance(data, str):
        return data
    return data.decode(json.detect_encoding(data), "surrogatepass")


def _nests_deeper(text: str, limit: int) -> bool:
    """Whether the brackets outside strings go more than `limit` deep. For
    valid JSON this is the document's depth; for invalid JSON it is at least
    the depth the parser would reach before it stops at the first error."""
    depth = 0
    for bracket in _NOT_A_BRACKET.sub("", _STRING.sub("", text)):
        if bracket == "[" or bracket == "{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def storable(value, source: str | bytes | bytearray | None = None):
    """`value`, a parsed JSON value, with NUL and lone surrogates replaced by
    U+FFFD in every string and key: what Postgres can store as text or jsonb.
    The value itself comes back when nothing was replaced (`is` tells), so a
    caller may keep the text it was parsed from.

    `source` is the JSON text `value` was parsed from, if at hand: when it
    holds no such character nor an escape of one, as nearly every document,
    the value is not walked."""
    if source is not None and not _may_hold_unstorable(source):
        return value
    return _storable(value)


def _may_hold_unstorable(source: str | bytes | bytearray) -> bool:
    if isinstance(source, str):
        if "\\u" in source and _UNSTORABLE_ESCAPE.search(source):
            return True
        return "\x00" in source or (not source.isascii() and _UNSTORABLE.search(source) is not None)
    if b"\\u" in source and _UNSTORABLE_ESCAPE_BYTES.search(source):
        return True
    # UTF-16 and UTF-32 hold NUL bytes, and 0xED begins UTF-8's surrogates.
    return b"\x00" in source or b"\xed" in source


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates as U+FFFD: what a Postgres text
    column can hold (an error message may quote either)."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


def _storable(value):
    # Recursion is bounded: what loads returns nests at most MAX_DEPTH deep.
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        items = [_storable(item) for item in value]
        return items if any(new is not old for new, old in zip(items, value)) else value
    if isinstance(value, dict):
        pairs, changed = [], False
        for key, item in value.items():
            new_key, new_item = _storable(key), _storable(item)
            changed = changed or new_key is not key or new_item is not item
            pairs.append((new_key, new_item))
        # Two keys that differ only there become one: the last stays, as in
        # a JSON object that repeats a key.
        return dict(pairs) if changed else value
    return value
