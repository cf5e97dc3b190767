"""The MIME message each recipient gets, parsed back as a mail client would."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from amazonsender.message import MessageBuilder, append_footer, format_recipient, html_to_text

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


def test_format_recipient():
    assert format_recipient("ann@example.org", None) == "ann@example.org"
    assert format_recipient("ann@example.org", "  Ann   Lee ") == "Ann Lee <ann@example.org>"
    assert format_recipient("ann@example.org", "Lee, Ann") == '"Lee, Ann" <ann@example.org>'


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
        assert all(re.search(r"=\?utf-8\?[bq]\?", line) for line in lines), lines


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
