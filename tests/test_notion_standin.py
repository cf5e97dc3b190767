"""The Notion stand-in speaks the Notion API well enough for notion-client, the official client, and is as strict as Notion."""

import uuid

import httpx
import pytest
from notion_client import Client
from notion_client.client import RetryOptions
from notion_client.errors import APIErrorCode, APIResponseError, HTTPResponseError
from notion_client.helpers import collect_paginated_api, is_full_block, is_full_page, iterate_paginated_api

from tests.support.notion_content import child_page, image, paragraph
from tests.support.notion_standin import NotionStandIn
from tests.support.notion_standin_checks import number_property, status_property


@pytest.fixture
def notion():
    with NotionStandIn() as standin:
        yield standin


def sdk(notion, **options):
    options.setdefault("retry", False)
    return Client(auth=options.pop("auth", notion.token), base_url=notion.url, **options)


def raw(notion, method, path, headers=None, **kwargs):
    """A request with exactly these headers, none added."""
    return httpx.request(method, notion.url + path, headers=headers or {}, **kwargs)


def good_headers(notion):
    return {"Authorization": f"Bearer {notion.token}", "Notion-Version": "2025-09-03"}


def test_the_client_reads_a_full_page_and_every_block_in_pages(notion):
    pid = notion.add_page(
        title="Issue 3",
        properties={"Status": status_property("Not started")},
        blocks=[paragraph(f"p{i}") for i in range(230)],
    )
    client = sdk(notion)
    page = client.pages.retrieve(pid)
    assert is_full_page(page) and page["id"] == pid
    assert page["url"].endswith(pid.replace("-", ""))
    assert page["properties"]["Name"]["title"][0]["plain_text"] == "Issue 3"

    blocks = collect_paginated_api(client.blocks.children.list, block_id=pid)
    assert len(blocks) == 230 and all(is_full_block(b) for b in blocks)
    small_pages = list(iterate_paginated_api(client.blocks.children.list, block_id=pid, page_size=7))
    assert [b["id"] for b in small_pages] == [b["id"] for b in blocks]

    first = client.blocks.children.list(pid, page_size=100)
    assert first["object"] == "list" and first["type"] == "block" and first["block"] == {}
    assert first["has_more"] is True and first["next_cursor"] == blocks[100]["id"]
    last = client.blocks.children.list(pid, page_size=100, start_cursor=blocks[200]["id"])
    assert last["has_more"] is False and last["next_cursor"] is None and len(last["results"]) == 30


def test_nested_blocks_and_sub_pages_are_what_notion_answers(notion):
    pid = notion.add_page(
        blocks=[paragraph("outer", children=[paragraph("inner")]), child_page("Sub", children=[paragraph("x")])]
    )
    client = sdk(notion)
    outer, sub = client.blocks.children.list(pid)["results"]
    assert outer["has_children"] is True and outer["parent"] == {"type": "page_id", "page_id": pid}
    inner = client.blocks.children.list(outer["id"])["results"][0]
    assert inner["parent"] == {"type": "block_id", "block_id": outer["id"]}
    assert client.blocks.retrieve(inner["id"])["paragraph"]["rich_text"][0]["plain_text"] == "inner"
    # A child_page is a page of its own, and its content is its children.
    assert sub["type"] == "child_page" and client.pages.retrieve(sub["id"])["id"] == sub["id"]
    assert client.blocks.children.list(sub["id"])["results"][0]["paragraph"]["rich_text"][0]["plain_text"] == "x"


def test_the_client_updates_properties(notion):
    pid = notion.add_page(properties={"Status": status_property("Not started"), "Count": number_property(1)})
    page = sdk(notion).pages.update(pid, properties={"Status": {"status": {"name": "Done"}}, "Count": {"number": 2}})
    assert is_full_page(page)
    assert page["properties"]["Status"]["status"]["name"] == "Done"
    assert notion.page_properties(pid)["Count"]["number"] == 2


@pytest.mark.parametrize(
    "call, status, code",
    [
        (lambda c, pid: c.pages.retrieve(str(uuid.uuid4())), 404, APIErrorCode.ObjectNotFound),
        (lambda c, pid: c.blocks.children.list(str(uuid.uuid4())), 404, APIErrorCode.ObjectNotFound),
        (lambda c, pid: c.pages.retrieve("not-a-uuid"), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.blocks.children.list(pid, page_size=101), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.blocks.children.list(pid, page_size=0), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.blocks.children.list(pid, start_cursor=str(uuid.uuid4())), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.pages.update(pid, properties={"Nope": {"number": 1}}), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.pages.update(pid, properties={"Status": {"status": {"name": "Gone"}}}), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.pages.update(pid), 400, APIErrorCode.ValidationError),
        (lambda c, pid: c.request(path="databases/x/query", method="GET"), 400, APIErrorCode.InvalidRequestURL),
    ],
)
def test_notions_errors_reach_the_client_with_their_codes(notion, call, status, code):
    pid = notion.add_page(properties={"Status": status_property("Not started")}, blocks=[paragraph("x")])
    before = notion.page_properties(pid)
    with pytest.raises(APIResponseError) as refused:
        call(sdk(notion), pid)
    assert refused.value.status == status and refused.value.code == code
    assert notion.page_properties(pid) == before


def test_a_wrong_or_missing_token_is_401(notion):
    pid = notion.add_page()
    with pytest.raises(APIResponseError) as refused:
        sdk(notion, auth="ntn_someone_else").pages.retrieve(pid)
    assert refused.value.code == APIErrorCode.Unauthorized and refused.value.status == 401
    answer = raw(notion, "GET", f"/v1/pages/{pid}", {"Notion-Version": "2025-09-03"})
    assert answer.status_code == 401
    body = answer.json()
    assert body["object"] == "error" and body["status"] == 401 and body["code"] == "unauthorized"
    assert isinstance(body["message"], str) and body["request_id"]


def test_the_version_header_is_required_and_must_be_one_modelled(notion):
    pid = notion.add_page()
    headers = {"Authorization": f"Bearer {notion.token}"}
    missing = raw(notion, "GET", f"/v1/pages/{pid}", headers)
    assert missing.status_code == 400 and missing.json()["code"] == "missing_version"
    with pytest.raises(HTTPResponseError) as refused:  # a code notion-client does not know
        sdk(notion, notion_version="").pages.retrieve(pid)
    assert refused.value.status == 400 and '"missing_version"' in refused.value.body
    with pytest.raises(APIResponseError) as refused:
        sdk(notion, notion_version="2021-05-13").pages.retrieve(pid)
    assert refused.value.code == APIErrorCode.ValidationError
    assert sdk(notion, notion_version="2022-06-28").pages.retrieve(pid)["id"] == pid


def test_a_body_that_is_not_json_is_invalid_json(notion):
    pid = notion.add_page()
    answer = raw(notion, "PATCH", f"/v1/pages/{pid}", good_headers(notion), content=b"{not json")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_json"


def test_the_clients_own_retry_reads_the_stand_ins_429(notion):
    pid = notion.add_page()
    notion.fail_next(1, 429, "rate_limited", retry_after=0)
    notion.fail_next(1, 500, "internal_server_error")
    client = sdk(notion, retry=RetryOptions(max_retries=2, initial_retry_delay_ms=1, max_retry_delay_ms=1))
    assert client.pages.retrieve(pid)["id"] == pid
    assert [r.status for r in notion.api_requests] == [429, 500, 200]
    assert [r.code for r in notion.api_requests] == ["rate_limited", "internal_server_error", None]


def test_a_rate_limited_answer_is_notions(notion):
    pid = notion.add_page()
    notion.fail_next(1, 429, "rate_limited", retry_after=3)
    answer = raw(notion, "GET", f"/v1/pages/{pid}", good_headers(notion))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert answer.json()["code"] == "rate_limited"
    notion.throttle_above_per_second = 0
    throttled = raw(notion, "GET", f"/v1/pages/{pid}", good_headers(notion))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"


def test_hosted_files_need_no_token_and_are_minted_per_answer(notion):
    file = notion.hosted_file(b"GIF89a", "image/gif", "dot.gif")
    pid = notion.add_page(blocks=[image(file)])
    client = sdk(notion)
    first = client.blocks.children.list(pid)["results"][0]["image"]
    assert first["type"] == "file" and set(first["file"]) == {"url", "expiry_time"}
    answer = httpx.get(first["file"]["url"])
    assert answer.status_code == 200 and answer.content == b"GIF89a"
    assert answer.headers["content-type"] == "image/gif"
    notion.advance(10)
    second = client.blocks.children.list(pid)["results"][0]["image"]["file"]
    assert second["url"] != first["file"]["url"] and second["expiry_time"] > first["file"]["expiry_time"]
    notion.advance(3595)  # the first URL's hour is over, not the second's
    assert httpx.get(first["file"]["url"]).status_code == 403
    assert httpx.get(second["url"]).status_code == 200
    assert httpx.get(notion.url + f"/files/{file.id}/dot.gif").status_code == 404
