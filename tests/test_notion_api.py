"""NotionPages against the Notion stand-in: paging, nesting, retries, errors, pacing; and page ids from URLs."""

import logging
import uuid

import pytest

from amazonsender.notion.api import (
    MAX_ATTEMPTS,
    NOTION_VERSION,
    NotionAccessError,
    NotionAuthError,
    NotionError,
    NotionNotFound,
    NotionPages,
    NotionPageTooLarge,
    NotionRequestError,
    NotionUnavailable,
)
from amazonsender.notion.ids import MAX_INPUT_CHARS, page_id
from amazonsender.sender.pacer import Pacer
from tests.fakes import FakeClock
from tests.support.notion_content import child_page, image, paragraph
from tests.support.notion_standin import NotionStandIn
from tests.support.notion_standin_checks import (
    date_property,
    number_property,
    rich_text_property,
    select_property,
    status_property,
)

PAGE = "0123456789abcdef0123456789abcdef"
PAGE_UUID = "01234567-89ab-cdef-0123-456789abcdef"


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


@pytest.fixture
def clock():
    return FakeClock()


def client(notion, clock, **kwargs):
    """A NotionPages on the stand-in whose pacing and waits use the fake clock."""
    return NotionPages(
        kwargs.pop("token", notion.token),
        base_url=notion.url,
        pacer=Pacer(3, clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
        **kwargs,
    )


def texts(blocks):
    return [b["paragraph"]["rich_text"][0]["plain_text"] for b in blocks if b["type"] == "paragraph"]


def newsletter_page(notion, **kwargs):
    return notion.add_page(
        title="Issue 7",
        properties={
            "Status": status_property("Not started", options=("Not started", "Imported", "Sent")),
            "Kind": select_property("Weekly", options=("Weekly",)),
            "Recipients": number_property(),
            "Imported at": date_property(),
            "Mailout": rich_text_property(),
        },
        **kwargs,
    )


# -- reading -----------------------------------------------------------------


def test_more_than_a_hundred_children_come_in_pages_of_a_hundred_in_order(notion, clock):
    pid = notion.add_page(blocks=[paragraph(f"p{i}") for i in range(250)])
    blocks = client(notion, clock).blocks(pid)
    assert texts(blocks) == [f"p{i}" for i in range(250)]
    lists = notion.api_requests
    assert [r.query.get("page_size") for r in lists] == [["100"]] * 3
    assert "start_cursor" not in lists[0].query
    # Each later request starts at the cursor the previous answer gave.
    assert lists[1].query["start_cursor"] == [blocks[100]["id"]]
    assert lists[2].query["start_cursor"] == [blocks[200]["id"]]


def test_nested_children_are_attached_under_children_at_every_level(notion, clock):
    pid = notion.add_page(
        blocks=[
            paragraph("a", children=[paragraph("a1", children=[paragraph("a1x")]), paragraph("a2")]),
            paragraph("b"),
            paragraph("c", children=[paragraph(f"c{i}") for i in range(120)]),
        ]
    )
    blocks = client(notion, clock).blocks(pid)
    assert texts(blocks) == ["a", "b", "c"]
    assert texts(blocks[0]["children"]) == ["a1", "a2"]
    assert texts(blocks[0]["children"][0]["children"]) == ["a1x"]
    assert "children" not in blocks[1]
    assert texts(blocks[2]["children"]) == [f"c{i}" for i in range(120)]


def test_a_sub_pages_content_is_not_fetched(notion, clock):
    pid = notion.add_page(blocks=[paragraph("intro"), child_page("Archive", children=[paragraph("old")])])
    blocks = client(notion, clock).blocks(pid)
    assert blocks[1]["type"] == "child_page" and blocks[1]["has_children"] is True
    assert "children" not in blocks[1]
    assert [r.path for r in notion.api_requests] == [f"/v1/blocks/{pid}/children"]


def test_the_page_and_a_url_to_it(notion, clock):
    pid = newsletter_page(notion)
    page = client(notion, clock).page(f"https://www.notion.so/acme/Issue-7-{pid.replace('-', '')}?pvs=4")
    assert page["object"] == "page" and page["id"] == pid
    assert page["properties"]["Status"]["status"]["name"] == "Not started"


def test_depth_and_block_count_are_capped(notion, clock):
    nested = paragraph("deepest")
    for level in range(4):
        nested = paragraph(f"level {level}", children=[nested])
    pid = notion.add_page(blocks=[nested])
    with pytest.raises(NotionPageTooLarge, match="deeper than 3 levels"):
        client(notion, clock, max_depth=3).blocks(pid)
    assert len(client(notion, clock, max_depth=5).blocks(pid)) == 1

    wide = notion.add_page(blocks=[paragraph(str(i)) for i in range(30)])
    with pytest.raises(NotionPageTooLarge, match="more than 25 blocks"):
        client(notion, clock, max_blocks=25).blocks(wide)


def test_hosted_file_urls_are_fresh_per_answer_and_expire(notion, clock):
    import httpx

    file = notion.hosted_file(b"\x89PNG...", "image/png", "chart.png")
    pid = notion.add_page(blocks=[image(file)])
    url = client(notion, clock).blocks(pid)[0]["image"]["file"]["url"]
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"\x89PNG..."
    notion.advance(3601)
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    fresh = client(notion, clock).blocks(pid)[0]["image"]["file"]["url"]
    assert fresh != url and httpx.get(fresh).content == b"\x89PNG..."
    assert httpx.get(fresh.replace("X-Signature=", "X-Signature=0")).status_code == 403


# -- what is sent --------------------------------------------------------------


def test_every_request_carries_the_token_and_the_pinned_version(notion, clock):
    pid = newsletter_page(notion, blocks=[paragraph("x")])
    pages = client(notion, clock)
    pages.page(pid)
    pages.blocks(pid)
    pages.update_properties(pid, {"Status": {"status": {"name": "Imported"}}})
    assert NOTION_VERSION == "2025-09-03"
    for request in notion.api_requests:
        assert request.headers["notion-version"] == NOTION_VERSION
        assert request.headers["authorization"] == f"Bearer {notion.token}"


def test_properties_are_updated_and_the_page_is_answered(notion, clock):
    pid = newsletter_page(notion)
    mailout = str(uuid.uuid4())
    page = client(notion, clock).update_properties(
        pid,
        {
            "Status": {"status": {"name": "Imported"}},
            "Kind": {"select": {"name": "Special"}},
            "Recipients": {"number": 1234},
            "Imported at": {"date": {"start": "2026-05-01T10:00:00+00:00"}},
            "Mailout": {"rich_text": [{"text": {"content": mailout}}]},
        },
    )
    stored = notion.page_properties(pid)
    assert page["properties"] == stored
    assert stored["Status"]["status"]["name"] == "Imported"
    assert stored["Kind"]["select"]["name"] == "Special"
    assert stored["Recipients"]["number"] == 1234
    assert stored["Imported at"]["date"]["start"] == "2026-05-01T10:00:00+00:00"
    assert stored["Mailout"]["rich_text"][0]["plain_text"] == mailout
    assert notion.api_requests[-1].body == {
        "properties": {
            "Status": {"status": {"name": "Imported"}},
            "Kind": {"select": {"name": "Special"}},
            "Recipients": {"number": 1234},
            "Imported at": {"date": {"start": "2026-05-01T10:00:00+00:00"}},
            "Mailout": {"rich_text": [{"text": {"content": mailout}}]},
        }
    }


@pytest.mark.parametrize(
    "properties, message",
    [
        ({"Stauts": {"status": {"name": "Imported"}}}, "Stauts is not a property that exists"),
        ({"Status": {"status": {"name": "Shipped"}}}, 'Status option "Shipped" does not exist'),
        ({"Status": {"select": {"name": "Imported"}}}, "body.properties.Status.select should be not present"),
        ({"Recipients": {"number": "12"}}, "should be a number"),
        ({"Imported at": {"date": {"start": "yesterday"}}}, "ISO 8601"),
    ],
)
def test_a_bad_property_is_a_clear_error_and_changes_nothing(notion, clock, properties, message):
    pid = newsletter_page(notion)
    before = notion.page_properties(pid)
    with pytest.raises(NotionRequestError, match=message) as refused:
        client(notion, clock).update_properties(pid, {"Recipients": {"number": 5}, **properties})
    assert refused.value.status == 400 and refused.value.code == "validation_error"
    assert notion.page_properties(pid) == before
    assert len(notion.api_requests) == 1  # not retried


# -- errors and retries -------------------------------------------------------------


def test_429_waits_the_retry_after_seconds_then_succeeds(notion, clock):
    pid = newsletter_page(notion)
    seen = []
    notion.on_request = lambda record: seen.append(clock.now)
    notion.fail_next(2, 429, "rate_limited", retry_after=7)
    page = client(notion, clock).page(pid)
    assert page["id"] == pid
    assert [r.status for r in notion.api_requests] == [429, 429, 200]
    assert seen[1] - seen[0] >= 7 and seen[2] - seen[1] >= 7
    assert clock.sleeps.count(7) == 2


def test_server_errors_and_timeouts_back_off_and_retry(notion, clock):
    pid = newsletter_page(notion)
    notion.fail_next(1, 500, "internal_server_error")
    notion.fail_next(1, 503, "service_unavailable")
    assert client(notion, clock).page(pid)["id"] == pid
    assert [r.status for r in notion.api_requests] == [500, 503, 200]
    assert 1.0 in clock.sleeps and 2.0 in clock.sleeps  # exponential back-off

    notion.slow_next(1, 1.0)
    assert client(notion, clock, timeout_seconds=0.2).page(pid)["id"] == pid


def test_retries_are_bounded(notion, clock):
    pid = newsletter_page(notion)
    notion.fail_next(MAX_ATTEMPTS, 500, "internal_server_error")
    with pytest.raises(NotionUnavailable, match=f"after {MAX_ATTEMPTS} tries"):
        client(notion, clock).page(pid)
    assert len(notion.api_requests) == MAX_ATTEMPTS


def test_a_retry_after_longer_than_a_minute_is_not_waited_out(notion, clock):
    pid = newsletter_page(notion)
    notion.fail_next(1, 429, "rate_limited", retry_after=600)
    with pytest.raises(NotionUnavailable, match="wait 600 s"):
        client(notion, clock).page(pid)
    assert 600 not in clock.sleeps


def test_a_wrong_token_is_named_without_being_shown(notion, clock, caplog):
    pid = newsletter_page(notion)
    secret = "ntn_wrong_token_123456"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(NotionAuthError, match="NOTION_TOKEN") as refused:
        client(notion, clock, token=secret).page(pid)
    assert refused.value.status == 401
    assert secret not in str(refused.value)
    assert secret not in caplog.text
    assert len(notion.api_requests) == 1


def test_an_unknown_or_unshared_page_says_so(notion, clock):
    missing = str(uuid.uuid4())
    with pytest.raises(NotionNotFound, match="not shared with the integration") as refused:
        client(notion, clock).page(missing)
    assert missing in str(refused.value)
    with pytest.raises(NotionNotFound):
        client(notion, clock).blocks(missing)


def test_403_names_the_capability(notion, clock):
    pid = newsletter_page(notion)
    notion.fail_next(1, 403, "restricted_resource", "API token does not have access to this resource.")
    with pytest.raises(NotionAccessError, match="capabilit"):
        client(notion, clock).update_properties(pid, {"Recipients": {"number": 1}})


def test_every_error_is_a_notion_error(notion, clock):
    for kind in (NotionAuthError, NotionAccessError, NotionNotFound, NotionRequestError, NotionUnavailable):
        assert issubclass(kind, NotionError)


# -- pacing ------------------------------------------------------------------


def test_no_second_holds_more_than_three_requests(notion, clock):
    pid = notion.add_page(blocks=[paragraph(str(i), children=[paragraph("x")]) for i in range(12)])
    seen = []
    notion.on_request = lambda record: seen.append(clock.now)
    client(notion, clock).blocks(pid)
    assert len(seen) == 13
    for index, start in enumerate(seen):
        assert sum(1 for t in seen[index:] if t < start + 1.0) <= 3


def test_clients_in_one_process_share_one_pace(notion):
    first, second = NotionPages("t1", base_url=notion.url), NotionPages("t2", base_url=notion.url)
    assert first.pacer is second.pacer and first.pacer.rate == 3


# -- page ids ------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        PAGE,
        PAGE.upper(),
        PAGE_UUID,
        f"  {PAGE}\n",
        f"https://www.notion.so/Weekly-Issue-7-{PAGE}",
        f"https://www.notion.so/acme/Weekly-Issue-7-{PAGE}?pvs=4",
        f"https://www.notion.so/{PAGE}",
        f"https://acme.notion.site/Issue-{PAGE}#block",
        f"https://www.notion.so/acme/{PAGE_UUID}",
        f"https://www.notion.so/acme/News-{'f' * 32}?v={'e' * 32}&p={PAGE}&pm=s",
        f"https://www.notion.so/Caf%C3%A9-Été-{PAGE}",
        # Another host: only the id is used, and only NOTION_BASE_URL is called.
        f"https://example.com/anything/Issue-{PAGE}",
    ],
)
def test_page_ids_from_urls_and_ids(given):
    assert page_id(given) == PAGE_UUID


@pytest.mark.parametrize(
    "given",
    [
        None,
        42,
        "",
        "   ",
        PAGE[:-1],
        PAGE + "0",
        f"{PAGE}\x00",
        f"https://www.notion.so/Issue-{PAGE}\x00",
        "https://www.notion.so/Issue-7",
        f"https://www.notion.so/{PAGE}/edit",
        f"ftp://www.notion.so/{PAGE}",
        f"javascript:alert('{PAGE}')",
        f"Issue-{PAGE}",
        "x" * (MAX_INPUT_CHARS + 1),
        f"https://www.notion.so/{'a' * MAX_INPUT_CHARS}-{PAGE}",
        "https://[::1/" + PAGE,
    ],
)
def test_anything_else_is_a_clear_value_error(given):
    with pytest.raises(ValueError, match="Notion page") as refused:
        page_id(given)
    if isinstance(given, str) and len(given) > 20:
        assert given not in str(refused.value)


def test_a_bad_id_never_reaches_notion(notion, clock):
    with pytest.raises(ValueError):
        client(notion, clock).page("../users")
    assert notion.requests == []


def test_a_patch_is_retried_after_a_server_error(notion, clock):
    pid = newsletter_page(notion)
    notion.fail_next(1, 502, "internal_server_error")
    client(notion, clock).update_properties(pid, {"Recipients": {"number": 3}})
    assert [(r.method, r.status) for r in notion.api_requests] == [("PATCH", 502), ("PATCH", 200)]
    assert notion.page_properties(pid)["Recipients"]["number"] == 3


def test_built_from_settings(notion, clock):
    from types import SimpleNamespace

    settings = SimpleNamespace(notion_token=notion.token, notion_base_url=notion.url + "/", notion_timeout_seconds=5.0)
    pages = NotionPages.from_settings(settings, pacer=Pacer(3, clock=clock, sleep=clock.sleep), sleep=clock.sleep)
    pid = newsletter_page(notion)
    assert pages.page(pid)["id"] == pid
    with pytest.raises(ValueError, match="NOTION_TOKEN"):
        NotionPages("", base_url=notion.url)
