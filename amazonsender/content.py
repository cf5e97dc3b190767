"""What a mailout's subject and body may hold: checked before it is created, made ready, claimed or resumed.

A subject with a control character is refused, not cleaned: a line break or
a tab in a subject is a mistake in the editor (a pasted line end, say), and
the person who wrote it should see it named and fix it rather than find the
newsletter sent under a subject we changed. Refusing before the claim means
nothing is queued for a mailout that cannot go out as it is.
"""

from __future__ import annotations

import unicodedata

from .addresses import not_text

# Long enough for any real subject; mail clients show the first 40 to 80
# characters. SES sets no limit of its own, but a subject of thousands of
# characters is a paste gone wrong.
MAX_SUBJECT_CHARS = 400
# Each message holds the HTML and its plain-text copy, quoted-printable, which
# can triple non-ASCII text: 2 MB of body makes at most about 12.5 MB of raw
# message, 16.7 MB once base64-encoded for SendEmail, within the 40 MB SES v2
# takes ("Service quotas in Amazon SES"). Far more than a newsletter needs
# (Gmail clips HTML past about 100 KB); SendBulkEmail's 500 KB template limit
# sends larger bodies by SendEmail.
MAX_BODY_BYTES = 2_000_000


class ContentProblem(ValueError):
    """The mailout cannot be sent as it is; the message says why."""


def subject_problem(subject: str) -> str | None:
    if not subject.strip():
        return "the mailout's subject is empty"
    bad = not_text(subject)
    if bad is not None:
        where = subject.index(bad) + 1
        return (
            f"the mailout's subject contains {_describe(bad)} at character {where}; a subject is one line of"
            " text: remove it and try again"
        )
    if len(subject) > MAX_SUBJECT_CHARS:
        return f"the mailout's subject is {len(subject)} characters long; at most {MAX_SUBJECT_CHARS} are allowed"
    return None


def body_problem(body: str) -> str | None:
    if not body.strip():
        return "the mailout's body is empty"
    if "\x00" in body:
        return "the mailout's body contains a NUL character"
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        return "the mailout's body is not valid text (it has an unpaired surrogate)"
    if size > MAX_BODY_BYTES:
        return f"the mailout's body is {size} bytes; at most {MAX_BODY_BYTES} are allowed"
    return None


def check_content(subject: str, body: str) -> None:
    """Raise ContentProblem naming the first problem of the subject or body."""
    problem = subject_problem(subject) or body_problem(body)
    if problem:
        raise ContentProblem(problem)


def _describe(ch: str) -> str:
    names = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", "\t": "a tab", "\x00": "a NUL character"}
    if ch in names:
        return names[ch]
    name = unicodedata.name(ch, "")
    return f"the control character U+{ord(ch):04X}" + (f" ({name})" if name else "")
