"""The MIME message each recipient gets, parsed back as a mail client would."""

from __future__ import annotations

import binascii
import datetime
import email
import email.policy
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.header import decode_header, make_header
from email.utils import formatdate, getaddresses

import pytest
from email.headerregistry import Address

from amazonsender import message as message_module
from amazonsender.addresses import AddressError
from amazonsender.message import (
    Footer,
    MessageBuilder,
    append_footer,
    html_to_text,
)

UNSUBSCRIBE_URL = "https://news.example.test/unsubscribe?token=" + "Ab3_-x." * 12
BODY = "<html><head><title>Issue 7</title></head><body><h1>Hello</h1><p>News &amp; more.</p></body></html>"


def builder(**changes) -> MessageBuilder:
    options = dict(
        mailout_id="4f1c2a9e-0000-4000-8000-000000000001",
        subject="Our news",
        body_html=BODY,
        from_address="Newsletter <news@example.test>",
        reply_to=None,
    )
    options.update(changes)
    return MessageBuilder(**options)


def build(to_email="ann@example.org", to_name=None, url=UNSUBSCRIBE_URL, **changes):
    return builder(**changes).build(to_email=to_email, to_name=to_name, unsubscribe_url=url)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def parts(message) -> dict[str, str]:
    """The decoded text of each alternative, by content type."""
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


def mailboxes_as_read(raw: bytes, name: str) -> list[tuple[str, str]] | None:
    """(display name, address) of each mailbox in header `name`, decoded as
    RFC 2047 says: white space between adjacent encoded words is dropped.
    (The email package's address parser keeps it, so a long name split into
    several encoded words would read with stray spaces; mail clients follow
    the RFC.)"""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").lower()
    if not head.startswith(name.lower() + ":") and f"\r\n{name.lower()}:" not in head:
        return None
    lines = raw_header_lines(raw, name)
    value = "".join(lines).split(":", 1)[1]
    return [(str(make_header(decode_header(display))), address) for display, address in getaddresses([value])]


def raw_header_lines(raw: bytes, name: str) -> list[str]:
    """The header exactly as written on the wire, with its continuation lines."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    for index, line in enumerate(lines):
        if line.lower().startswith(name.lower() + ":"):
            found = [line]
            for following in lines[index + 1 :]:
                if not following.startswith((" ", "\t")):
                    break
                found.append(following)
            return found
    raise AssertionError(f"no {name} header in {head!r}")


# --- headers ---------------------------------------------------------------


def test_from_subject_and_to_without_a_name():
    message = parse(build().raw)
    assert message["From"].addresses[0].addr_spec == "news@example.test"
    assert message["From"].addresses[0].display_name == "Newsletter"
    assert message["Subject"] == "Our news"
    assert str(message["To"]) == "ann@example.org"
    assert message["Date"] is not None


@pytest.mark.parametrize("name", [None, "", "   ", "\n\t"])
def test_to_is_the_bare_address_when_the_name_is_unknown(name):
    raw = build(to_name=name).raw
    message = parse(raw)
    assert message["To"].addresses[0].display_name == ""
    assert raw_header_lines(raw, "To") == ["To: ann@example.org"]


@pytest.mark.parametrize(
    "name",
    [
        "Ann Lee",
        "Jöhn Dœ",
        "Анна Иванова",
        "Lee, Ann",
        'Ann "The Boss" Lee',
        "Zoë O'Brien, Jr.",
        "<Ann> @ (Lee);",
    ],
)
def test_to_carries_the_subscribers_name(name):
    raw = build(to_name=name).raw
    (address,) = parse(raw)["To"].addresses
    assert address.display_name == name
    assert address.addr_spec == "ann@example.org"
    # Whatever the name, the wire form is 7-bit and the address is intact.
    assert all(ord(ch) < 128 for ch in "".join(raw_header_lines(raw, "To")))


def test_a_name_with_line_breaks_is_put_on_one_line():
    (address,) = parse(build(to_name="Ann\r\nBcc: evil@example.org").raw)["To"].addresses
    assert address.display_name == "Ann Bcc: evil@example.org"
    assert address.addr_spec == "ann@example.org"
    assert parse(build(to_name="Ann\r\nBcc: evil@example.org").raw)["Bcc"] is None


def format_recipient(email: str, name: str | None) -> str:
    """The To header as the email package writes it: the reference that
    MessageBuilder's own writing is compared with, as a mail client reads it."""
    clean_name = " ".join((name or "").split())
    if not clean_name:
        return email
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=clean_name, username=local, domain=domain))


def test_non_ascii_subject_is_encoded_and_decodes_back():
    subject = "Новости недели — выпуск №7 ✉"
    raw = build(subject=subject).raw
    assert parse(raw)["Subject"] == subject
    assert "Новости".encode() not in raw  # encoded, never raw UTF-8 in a header


def test_long_non_ascii_subject_is_folded_into_short_encoded_words():
    subject = "Новости недели: большой выпуск с очень длинным заголовком, который не поместится в строку " * 2
    subject = subject.strip()
    raw = build(subject=subject, to_name="Анна Иванова-Петрова " * 5).raw
    message = parse(raw)
    assert message["Subject"] == subject
    for name in ("Subject", "To"):
        lines = raw_header_lines(raw, name)
        assert len(lines) > 1
        assert all(len(line) <= 78 for line in lines), lines
        words = [line for line in lines if "@" not in line]
        assert all(re.search(r"=\?utf-8\?[bq]\?", line) for line in words), lines


def test_reply_to_only_when_configured():
    assert parse(build().raw)["Reply-To"] is None
    message = parse(build(reply_to="Editor <editor@example.test>").raw)
    assert message["Reply-To"].addresses[0].addr_spec == "editor@example.test"


def test_list_unsubscribe_headers_are_exact():
    raw = build().raw
    assert raw_header_lines(raw, "List-Unsubscribe") == [f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>"]
    assert raw_header_lines(raw, "List-Unsubscribe-Post") == ["List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    message = parse(raw)
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(message.get_all("List-Unsubscribe")) == 1


def test_a_long_unsubscribe_url_is_neither_encoded_nor_folded():
    url = "https://news.example.test/mail/unsubscribe?token=" + "x" * 200
    raw = build(url=url).raw
    assert raw_header_lines(raw, "List-Unsubscribe") == [f"List-Unsubscribe: <{url}>"]
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"List-Unsubscribe:", 1)[1].split(b"\r\n", 1)[0]


def test_unsubscribe_url_with_a_line_break_is_refused():
    with pytest.raises(ValueError):
        build(url="https://news.example.test/unsubscribe?token=a\r\nBcc: evil@example.org")


def test_every_header_line_fits_rfc_5322():
    raw = build(subject="Ünïcödé " * 40, to_name="Zoë " * 40, reply_to="editor@example.test").raw
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998


# --- body ------------------------------------------------------------------


def test_multipart_alternative_with_text_then_html():
    message = parse(build().raw)
    assert message.get_content_type() == "multipart/alternative"
    # Mail clients show the last alternative they can: HTML must come last.
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"


def test_both_parts_carry_the_unsubscribe_link():
    url = "https://news.example.test/unsubscribe?token=abc&x=1"
    body = parts(parse(build(url=url).raw))
    assert body["text/plain"].rstrip().endswith(f"Unsubscribe: {url}")
    assert "Hello" in body["text/plain"] and "News & more." in body["text/plain"]
    # In HTML the & of the URL is escaped inside the attribute.
    assert 'href="https://news.example.test/unsubscribe?token=abc&amp;x=1"' in body["text/html"]
    assert ">Unsubscribe</a>" in body["text/html"]


def test_html_footer_goes_before_body_end_tag():
    html_part = parts(parse(build().raw))["text/html"]
    assert html_part.rstrip().endswith("</body></html>")
    assert html_part.index("<p>News &amp; more.</p>") < html_part.index(UNSUBSCRIBE_URL) < html_part.index("</body>")


def test_html_footer_is_appended_without_body_tag():
    html_part = parts(parse(build(body_html="<p>Just a fragment</p>").raw))["text/html"]
    assert html_part.startswith("<p>Just a fragment</p>")
    assert html_part.rstrip().endswith("Unsubscribe</a></div>")


def test_append_footer_finds_body_end_tag_in_any_case_and_uses_the_last():
    result = append_footer("<BODY><p>x</p><!-- </body> --></BODY >", "https://u.test/?t=1")
    assert result.endswith("</BODY >")
    assert result.index("<!-- </body> -->") < result.index("https://u.test/?t=1")
    assert result.count("Unsubscribe</a>") == 1


def test_quoted_printable_lines_are_at_most_76_characters():
    long_line = "<p>" + "Очень длинная строка без переносов, " * 40 + "</p>"
    raw = build(body_html=long_line, url="https://news.example.test/unsubscribe?token=" + "y" * 300).raw
    body = raw.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line
        assert all(byte < 128 for byte in line)
    # And it decodes back to the original text.
    assert "Очень длинная строка без переносов," in parts(parse(raw))["text/plain"]


def test_the_mailout_id_is_the_tag_and_the_recipient_is_the_destination():
    outgoing = build(to_email="bob@example.org", to_name="Bob", mailout_id="abc-123")
    assert outgoing.tags == {"mailout_id": "abc-123"}
    assert outgoing.to_address == "bob@example.org"


def test_each_recipient_gets_their_own_link():
    shared = builder()
    first = shared.build(to_email="a@example.org", to_name=None, unsubscribe_url="https://n.test/unsubscribe?token=A1")
    second = shared.build(to_email="b@example.org", to_name=None, unsubscribe_url="https://n.test/unsubscribe?token=B2")
    assert parse(first.raw)["List-Unsubscribe"] == "<https://n.test/unsubscribe?token=A1>"
    assert parse(second.raw)["List-Unsubscribe"] == "<https://n.test/unsubscribe?token=B2>"
    assert "token=B2" not in parts(parse(first.raw))["text/html"]


# --- html_to_text ----------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("<h1>Title</h1>Text", "Title\n\nText"),
        ("Line1<br>Line2<br/>Line3", "Line1\nLine2\nLine3"),
        ("<P>Upper</P><BR>x", "Upper\n\nx"),
        ("<ul><li>Apple</li><li>Pear</li></ul><p>after</p>", "- Apple\n- Pear\n\nafter"),
        ("<ol><li>first</li><li>second</li></ol>", "- first\n- second"),
        ("<ul><li><p>Item one</p></li><li><p>Item two</p></li></ul>", "- Item one\n\n- Item two"),
        ('<p>See <a href="https://ex.com/a?b=1&amp;c=2">our site</a>.</p>', "See our site (https://ex.com/a?b=1&c=2)."),
        ('<a href="https://a.com"><b>bold</b> link</a>', "bold link (https://a.com)"),
        ("<a href='mailto:x@y.z'>Write to us</a>", "Write to us (mailto:x@y.z)"),
        ('<a href="https://ex.com">https://ex.com</a>', "https://ex.com"),
        ('<a href="mailto:x@y.z">x@y.z</a>', "x@y.z"),
        ('<a href="#top">top</a> <a href="/rel">rel</a> <a>bare</a>', "top rel bare"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ("<style>p { color: red }</style><p>styled</p>", "styled"),
        ("<script>var x = '<p>no</p>';</script><p>yes</p>", "yes"),
        ("<p>Hi &amp; bye &lt;3 &eacute; &#8212; &#x263A; &quot;q&quot;</p>", 'Hi & bye <3 é — ☺ "q"'),
        ("<p>a&nbsp;b</p>", "a b"),
        ("<p>  lots   of\n\n spaces </p>", "lots of spaces"),
        ("<p>x<br><br><br><br>y</p>", "x\n\ny"),
        ("<p>a</p><!-- a comment --><p>b</p>", "a\n\nb"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\n\nc"),
        ("plain text, no tags", "plain text, no tags"),
        ("", ""),
    ],
)
def test_html_to_text(html, text):
    assert html_to_text(html) == text


def test_html_to_text_drops_the_head():
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Secret title</title>"
        "<style>.a{}</style></head><body><p>Body text</p></body></html>"
    )
    assert html_to_text(html) == "Body text"


def test_html_to_text_keeps_the_body_when_head_end_tag_is_left_out():
    # </head> is optional in HTML: the body must not vanish with it.
    html = "<html><head><title>T</title><meta charset=utf-8><body><p>Hello</p></body></html>"
    assert html_to_text(html) == "Hello"


def test_plain_text_part_is_derived_from_the_html():
    html = '<html><body><h1>June</h1><ul><li>One</li><li>Two</li></ul><p><a href="https://ex.com">More</a></p></body></html>'
    text = parts(parse(build(body_html=html).raw))["text/plain"]
    # get_content() keeps the CRLF line ends of the wire.
    text = text.replace("\r\n", "\n")
    assert text.startswith("June\n\n- One\n- Two\n\nMore (https://ex.com)\n")
    assert "<" not in text.split("Unsubscribe:")[0]


# --- the message built once per mailout, against the email package ----------
#
# MessageBuilder encodes what every recipient shares once and only the To,
# Date and List-Unsubscribe headers and the lines around the footers per
# recipient (BENCHMARKS.md). `reference_build` is how every message used to be
# built, whole, with the email package; a mail client must read the same
# message from both.

REFERENCE_BODY_POLICY = email.policy.SMTP.clone(max_line_length=76)
REFERENCE_OUTPUT_POLICY = email.policy.SMTP.clone(refold_source="none")


def reference_append_footer(body_html: str, unsubscribe_url: str) -> str:
    footer = Footer().html(unsubscribe_url)
    matches = list(re.finditer(r"</body\s*>", body_html, flags=re.IGNORECASE))
    if matches:
        where = matches[-1].start()
        return body_html[:where] + footer + body_html[where:]
    return body_html + footer


def reference_build(*, subject, body_html, from_address, reply_to, to_email, to_name, unsubscribe_url) -> bytes:
    message = EmailMessage(policy=REFERENCE_BODY_POLICY)
    message["From"] = from_address
    message["To"] = format_recipient(to_email, to_name)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    if reply_to:
        message["Reply-To"] = reply_to
    if "\r" in unsubscribe_url or "\n" in unsubscribe_url:
        raise ValueError("the unsubscribe URL must be on one line")
    message.set_raw("List-Unsubscribe", f"<{unsubscribe_url}>")
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(html_to_text(body_html) + Footer().text(unsubscribe_url), cte="quoted-printable")
    html_part = reference_append_footer(body_html, unsubscribe_url)
    message.add_alternative(html_part, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=REFERENCE_OUTPUT_POLICY)


def as_read(raw: bytes) -> dict:
    """What a mail client reads in a message: headers, parts and their text."""
    message = parse(raw)
    reply_to = message["Reply-To"]
    assert len(message["To"].addresses) == 1
    assert reply_to is None or len(reply_to.addresses) == 1
    return {
        "From": mailboxes_as_read(raw, "From"),
        "To": mailboxes_as_read(raw, "To"),
        "Subject": str(message["Subject"]),
        "Reply-To": mailboxes_as_read(raw, "Reply-To"),
        "List-Unsubscribe": message.get_all("List-Unsubscribe"),
        "List-Unsubscribe-Post": message.get_all("List-Unsubscribe-Post"),
        "MIME-Version": str(message["MIME-Version"]),
        "Content-Type": message.get_content_type(),
        "defects": [type(d).__name__ for d in message.defects],
        "parts": [
            (
                part.get_content_type(),
                part.get_content_charset(),
                str(part["Content-Transfer-Encoding"]),
                part.get_content(),
                [type(d).__name__ for d in part.defects],
            )
            for part in message.iter_parts()
        ],
    }


def assert_well_formed(raw: bytes) -> None:
    """7-bit, CR LF line ends only, headers folded at 78 (but the one-line
    List-Unsubscribe), quoted-printable lines of at most 76 (RFC 2045)."""
    assert all(byte < 128 for byte in raw)
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    head, body = raw.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n"):
        assert len(line) <= 78 or line.startswith(b"List-Unsubscribe: "), line
    boundary = b"--" + parse(raw).get_boundary().encode()
    for line in body.split(b"\r\n"):
        assert len(line) <= 76 or line.startswith(boundary), line
    # The delimiter lines and nothing else hold the boundary: two parts and the end.
    assert body.count(boundary) == 3


def build_both(**case) -> tuple[bytes, bytes]:
    shared = dict(
        subject=case.get("subject", "Our news"),
        body_html=case.get("body_html", BODY),
        from_address=case.get("from_address", "Newsletter <news@example.test>"),
        reply_to=case.get("reply_to"),
    )
    personal = dict(
        to_email=case.get("to_email", "ann@example.org"),
        to_name=case.get("to_name"),
        unsubscribe_url=case.get("unsubscribe_url", UNSUBSCRIBE_URL),
    )
    new = MessageBuilder(mailout_id="m-1", **shared).build(**personal).raw
    return new, reference_build(**shared, **personal)


LONG_LINE = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit; " * 30 + "</p>"
VARIED_CASES = {
    "plain": {},
    "ascii name": dict(to_name="Ann Lee", reply_to="Editor <editor@example.test>"),
    "non-ascii subject and name": dict(subject="Новости недели — выпуск №7 ✉", to_name="Анна Иванова"),
    "emoji everywhere": dict(
        subject="🎉 Big news 🎉", to_name="Zoë 😀", body_html="<body><p>Party 🎈🎈 time — ünïcödé</p></body>"
    ),
    "long non-ascii subject and name": dict(
        subject=("Новости недели: большой выпуск с очень длинным заголовком " * 3).strip(),
        to_name="Анна Иванова-Петрова " * 5,
    ),
    "name with a comma": dict(to_name="Lee, Ann"),
    "name with quotes": dict(to_name='Ann "The Boss" Lee'),
    "name with a dot and an apostrophe": dict(to_name="Zoë O'Brien, Jr."),
    "name with specials": dict(to_name="<Ann> @ (Lee);"),
    "long ascii name": dict(to_name="Annabelle Leigh-Worthington " * 4),
    "non-ascii from": dict(from_address="Société Générale <news@example.test>", reply_to="Rédaction <r@example.test>"),
    "no body tag": dict(body_html="<p>Just a fragment = 1 + 1</p>"),
    "upper case body tag and text after it": dict(
        body_html="<HTML><BODY><p>x</p><!-- </body> --></BODY >\n<!-- trailer -->\n</HTML>"
    ),
    "very long lines": dict(body_html=f"<html><body>{LONG_LINE}{LONG_LINE}</body></html>"),
    "very long non-ascii line": dict(body_html="<body><p>" + "Очень длинная строка без переносов, " * 60 + "</p>"),
    "equals signs": dict(
        body_html='<body><p style="a=b">x = y == z =3D =\n=</p><a href="https://e.test/?a=1&amp;b=2">l</a></body>',
        unsubscribe_url="https://news.example.test/u?token=a=b&c==d",
    ),
    # A space or tab ending a line of 73-75 characters: see message._quoted_printable.
    "trailing whitespace and tabs": dict(
        body_html="<html>  \n<body>\t\n<pre>a \t \nb\t\n"
        + ("x" * 74 + " \n" + "y" * 75 + "\t\n" + "z" * 73 + "  \n" + "w" * 75 + " ")
        + "</pre>  \n</body>\t \n</html> "
    ),
    "crlf, cr and lf mixed": dict(body_html="<html>\r\n<body>\r<p>one</p>\n<p>two</p>\r\n\r\n\n\r</body>\r\n</html>\r"),
    "cr just before the body end tag": dict(body_html="<body><p>x</p>\r</body>\r\n"),
    "lines starting with a dot or From": dict(
        body_html="<body><pre>\n.\n..\n. x\nFrom here\nFrom: me\n>From\n</pre>\n.\n</body>\n.\n"
    ),
    "empty body": dict(body_html=""),
    "only whitespace": dict(body_html=" \r\n\t "),
    "long unsubscribe url": dict(unsubscribe_url="https://news.example.test/mail/unsubscribe?token=" + "x" * 300),
    "minified newsletter": dict(
        body_html="<html><body>" + "<p>Story = news. Ünïcödé — “quoted”</p>" * 400 + "</body></html>"
    ),
}


@pytest.mark.parametrize("case", VARIED_CASES.values(), ids=VARIED_CASES.keys())
def test_the_message_reads_as_the_email_packages_did(case):
    new, reference = build_both(**case)
    assert as_read(new) == as_read(reference)
    assert_well_formed(new)


def test_random_bodies_read_as_the_email_packages_did():
    # Bodies made of what is hard for quoted-printable and line ends: long
    # runs, spaces and tabs before line ends, "=", ".", "From ", every line
    # end, non-ASCII and emoji, with </body> anywhere or nowhere.
    pieces = ["x" * 73, "y" * 75, "z" * 150, " ", "\t", "=", ".", "From ", "\r\n", "\n", "\r", "é", "😀", "Ж", "a"]
    pieces.append("</body>")
    rnd = random.Random(20240607)
    for _ in range(150):
        body = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 40)))
        url = "https://n.test/u?t=" + "".join(rnd.choice("ab=&.-_%") for _ in range(rnd.randint(1, 80)))
        name = rnd.choice([None, "Ann Lee", "Zoë"])
        new, reference = build_both(body_html=body, unsubscribe_url=url, to_name=name)
        assert as_read(new) == as_read(reference), body
        assert_well_formed(new)


@pytest.mark.parametrize(
    ("to_email", "to_name"),
    [
        ("ann@example.org", None),
        ("ann@example.org", "Ann"),
        ("ann.lee+news@mail.example.org", "Ann Lee"),
        ("o'brien@example.org", "Mary-Kate O'Brien"),
        ("ann@example.org", "Ann #1 & co ~ {x} | y"),
        ("ann@example.org", "Ann B. Lee"),
        ("ann@example.org", "Lee, Ann"),
        ("ann@example.org", "Zoë"),
        ("ANN@EXAMPLE.ORG", "ANN"),
        ("ann@xn--exmple-cua.org", "Ann"),
        # "To: " and the value: 77, 78 (the longest on one line) and 79 characters.
        ("ann@example.org", "A" * 55),
        ("ann@example.org", "A" * 56),
        ("ann@example.org", "A" * 57),
        ("a" * 60 + "@example.org", None),
        ("a" * 64 + "@long.example-domain.org", None),
        ("a" * 64 + "@long.example-domain.org", "Ann"),
    ],
)
def test_the_to_header_reads_as_the_email_package_writes_it(to_email, to_name):
    new, reference = build_both(to_email=to_email, to_name=to_name)
    assert mailboxes_as_read(new, "To") == mailboxes_as_read(reference, "To")
    [address] = parse(new)["To"].addresses
    assert address.addr_spec == to_email
    lines = raw_header_lines(new, "To")
    assert all(line.isascii() for line in lines)
    # Folded at 78 where there is a space to fold at.
    assert all(len(line) <= 78 or len(line.removeprefix("To:").split()) == 1 for line in lines), lines


@pytest.mark.parametrize("to_email", ["a@b", "ann lee@example.org", "ann@@example.org", "ann", "", "üser@example.org"])
def test_an_address_ses_cannot_take_is_refused_when_its_message_is_built(to_email):
    with pytest.raises(AddressError):
        build(to_email=to_email, to_name="Ann")


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?Bcc=3A_evil?=",
        "=?utf-8?b?eA0KQmNjOiBhQGV2aWwuY29t?=",
        "Ann =?utf-8?q?x?=",
        "=?iso-8859-1?q?Zo=EB?= <zoe@example.org>, other@example.org",
    ],
)
def test_a_name_that_looks_like_an_encoded_word_is_shown_as_written(name):
    raw = build(to_name=name).raw
    assert mailboxes_as_read(raw, "To") == [(name, "ann@example.org")]
    message = parse(raw)
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.org"]
    assert message["Bcc"] is None and message["Cc"] is None


def test_an_ordinary_newsletter_is_byte_for_byte_the_email_packages():
    # But for the boundary (random) and the Date (the second it was built).
    def comparable(raw: bytes) -> bytes:
        raw = raw.replace(parse(raw).get_boundary().encode(), b"BOUNDARY")
        return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", raw)

    stories = "\n".join(f"<p>Story {n}: café = news.</p>" for n in range(50))
    body = f"<html>\n<body>\n{stories}\n</body>\n</html>\n"
    for to_name in (None, "Ann Lee", "Анна"):
        new, reference = build_both(body_html=body, to_name=to_name, reply_to="r@example.test")
        assert comparable(new) == comparable(reference)


def test_one_boundary_per_mailout_and_the_date_of_each_message():
    shared = builder()
    first = shared.build(to_email="a@example.org", to_name=None, unsubscribe_url="https://n.test/u?t=1").raw
    second = shared.build(to_email="b@example.org", to_name="Bob", unsubscribe_url="https://n.test/u?t=2").raw
    other_mailout = build().raw
    assert parse(first).get_boundary() == parse(second).get_boundary()
    assert parse(first).get_boundary() != parse(other_mailout).get_boundary()
    date = parse(second)["Date"].datetime
    assert date.utcoffset() == datetime.timedelta(0)
    assert abs(date.timestamp() - time.time()) < 5


def test_a_boundary_that_occurs_in_a_part_is_never_used(monkeypatch):
    # A boundary like the email package's cannot occur in quoted-printable
    # text; these can, so the checks must catch them: "Aa" in the shared body,
    # "Bb" in this recipient's footer (the URL).
    body = "<body><pre>\n--Aa\n</pre></body>"
    _, reference = build_both(body_html=body, unsubscribe_url="https://n.test/u?t=x--Bb")
    candidates = iter(["Aa", "Bb", "Bb", "Cc"])
    monkeypatch.setattr(message_module, "_boundary_candidate", lambda: next(candidates))
    shared = builder(body_html=body)
    raw = shared.build(to_email="ann@example.org", to_name=None, unsubscribe_url="https://n.test/u?t=x--Bb").raw
    assert parse(raw).get_boundary() == "Cc"
    assert as_read(raw) == as_read(reference)
    assert_well_formed(raw)
    # The mailout keeps its own boundary for the next recipient.
    raw = shared.build(to_email="b@example.org", to_name=None, unsubscribe_url="https://n.test/u?t=y").raw
    assert parse(raw).get_boundary() == "Bb"


@pytest.mark.parametrize(
    "url",
    [
        "https://n.test/u?t=a\nBcc: evil@example.org",
        "https://n.test/u?t=a\rBcc: evil@example.org",
        "https://n.test/u?t=a\x0bBcc: evil@example.org",
        "https://n.test/u?t=a\x0cb",
        "https://n.test/u?t=a\x1eb",
        "https://n.test/u?t=a\x00b",
        "https://n.test/u?t=a\u2028b",
        "https://n.test/u?t=é",
    ],
)
def test_an_unsubscribe_url_that_cannot_be_one_raw_line_is_refused(url):
    with pytest.raises(ValueError):
        build(url=url)


def test_a_mailout_that_cannot_be_written_fails_each_build_not_the_setup():
    # The run that sends it records the failure (sender.send_all); a builder
    # that raised while the run was being set up would leave it unrecorded.
    shared = builder(subject="Two\nlines")
    for _ in range(2):
        with pytest.raises(ValueError):
            shared.build(to_email="a@example.org", to_name=None, unsubscribe_url=UNSUBSCRIBE_URL)
    with pytest.raises(ValueError):
        build_both(subject="Two\nlines")


def test_a_recipient_address_with_a_line_break_is_refused_as_before():
    with pytest.raises(ValueError):
        build(to_email="ann@example.org\nBcc: evil@example.org")


def test_threads_sharing_a_builder_get_complete_messages():
    shared = builder(body_html="<body>" + "<p>news</p>" * 500 + "</body>")

    def one(n: int) -> bytes:
        url = f"https://n.test/u?t={n}"
        return shared.build(to_email=f"r{n}@example.org", to_name="Ann", unsubscribe_url=url).raw

    with ThreadPoolExecutor(max_workers=8) as pool:
        raws = list(pool.map(one, range(200)))
    for n, raw in enumerate(raws):
        assert parse(raw)["List-Unsubscribe"] == f"<https://n.test/u?t={n}>"
        assert f"Unsubscribe: https://n.test/u?t={n}" in parts(parse(raw))["text/plain"]
        assert_well_formed(raw)


def test_a_part_encoded_in_pieces_decodes_as_the_whole():
    # The pieces a part is cut into (message._EncodedBody) against the whole
    # text with line ends made as the email package makes them (CR LF, CR and
    # LF all end a line; the part ends with one), including the cases the
    # footers never hit: a CR before the cut and an LF after it.
    pieces = ["x" * 74, "y" * 150, " ", "\t", "=", ".", "\r\n", "\n", "\r", "é", "😀", "a"]
    rnd = random.Random(7)
    for _ in range(2000):
        before, personal, after = ("".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12))) for _ in range(3))
        part = message_module._EncodedBody(before, after)
        encoded = part.head + part.personal_lines(personal) + part.rest
        whole = before + personal + after
        assert binascii.a2b_qp(encoded) == b"\r\n".join(whole.encode().splitlines()) + b"\r\n", (before, personal, after)
        assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
        assert b"\r" not in encoded.replace(b"\r\n", b"") and b"\n" not in encoded.replace(b"\r\n", b"")


def test_the_footer_names_the_newsletter_and_its_postal_address_in_both_parts():
    footer = Footer(newsletter_name="Café <Gazette> & Co", postal_address="1 Rue de la Paix, 75002 Paris")
    shared = MessageBuilder(
        mailout_id="m-1", subject="News", body_html=BODY, from_address="News <news@example.test>", footer=footer
    )
    message = parse(shared.build(to_email="ann@example.org", to_name=None, unsubscribe_url=UNSUBSCRIBE_URL).raw)
    text, html_part = parts(message)["text/plain"].replace("\r\n", "\n"), parts(message)["text/html"]
    assert "you subscribed to Café <Gazette> & Co." in text
    assert "1 Rue de la Paix, 75002 Paris\nUnsubscribe: " + UNSUBSCRIBE_URL in text
    assert "you subscribed to Café &lt;Gazette&gt; &amp; Co.<br>1 Rue de la Paix, 75002 Paris<br>" in html_part


def test_without_settings_the_footer_says_our_newsletter_and_no_address():
    assert "subscribed to our newsletter.\nUnsubscribe: u" in Footer().text("u")
    assert Footer.from_settings(object()) == Footer()
