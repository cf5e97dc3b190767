"""A local stand-in for the Notion API (pages, block children, page properties) and its expiring file URLs.

    with NotionStandIn() as notion:
        page_id = notion.add_page(title="Issue 12", properties={"Status": status_property("Draft", ...)},
                                  blocks=[paragraph("Hello", children=[paragraph("nested")])])
        pages = NotionPages(notion.token, base_url=notion.url, ...)
        ...
        assert notion.page_properties(page_id)["Status"]["status"]["name"] == "Sent"

Pages are loaded from nested dicts (tests/support/notion_content.py builds
blocks: `paragraph`, `child_page`, `image(notion.hosted_file(...))`).

A threaded HTTP server on 127.0.0.1 (TCP_NODELAY, keep-alive). It answers,
as Notion's API reference describes them:

- GET /v1/pages/{id}: the page object (properties, parent, url, ...);
- GET /v1/blocks/{id}: one block; GET /v1/blocks/{id}/children: a page of
  child blocks, `{"object": "list", "results", "next_cursor", "has_more",
  "type": "block", "block": {}}`, with page_size 1 to 100 (default 100) and
  start_cursor the next_cursor of an earlier answer (Notion's cursors are
  the next block's id; any other cursor is a 400 validation_error);
- PATCH /v1/pages/{id}: `{"properties": {...}}` checked as Notion checks it
  (tests/support/notion_standin_checks.py) and applied to the stored page,
  all or nothing;
- GET /files/{id}/{name}?X-Expires=..&X-Signature=..: a Notion-hosted file,
  as its presigned S3 URL would: the bytes until expiry, 403 AccessDenied
  after, or with a bad signature. Each time a block or page holding a
  `hosted_file(...)` is answered, a fresh URL valid FILE_URL_SECONDS is
  minted, with its expiry_time, as Notion does; `advance(seconds)` moves
  the stand-in's clock so that earlier URLs expire.

Strict: every /v1/ request needs `Authorization: Bearer <token>` (compared
in constant time; otherwise 401 unauthorized) and a Notion-Version the
stand-in models (missing: 400 missing_version); an id that is not a UUID is
a 400 validation_error, an unknown one 404 object_not_found; an unknown
route is 400 invalid_request_url. Every error body is Notion's error object
`{"object": "error", "status", "code", "message", "request_id"}`.

Faults: `fail_next(n, status, code, retry_after=...)` answers the next n
/v1/ requests with that error (a 429 rate_limited with Retry-After, a 500
internal_server_error, ...); `slow_next(n, seconds)` delays the next n
answers (a client timeout); `throttle_above_per_second = k` answers 429 to
a request that would make more than k in the last second.

What tests read: `requests` (every request, `Recorded`, in order),
`on_request` (called with each record as it arrives), `page_properties(id)`.
"""

from __future__ import annotations

import collections
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, urlsplit

from tests.support.http_server import LoopbackServer, QuietHandler
from tests.support.notion_content import HostedFile, HostedFiles
from tests.support.notion_standin_checks import (
    BadRequest,
    Prop,
    apply_page_update,
    check_list_query,
    check_page_update,
    check_uuid,
    check_version,
    title_property,
)

CREATED = "2026-01-05T09:00:00.000Z"
USER = {"object": "user", "id": "6b2c0a4e-0000-4000-8000-00000000a11e"}
OTHER_PAGES = ("child_page", "child_database")


@dataclass
class Recorded:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: object  # the parsed JSON body, if any
    received_at: float  # time.monotonic()
    status: int = 0
    code: str | None = None  # the error code answered, if any
    invalid_json: bool = False  # a body that did not parse


@dataclass
class _Fault:
    remaining: int
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after: int | None = None
    delay: float = 0.0


class NotionStandIn(LoopbackServer):
    thread_name = "notion-standin"

    def __init__(self, token: str | None = None):
        self.token = token or f"ntn_standin_{secrets.token_hex(12)}"
        self.on_request = None  # called with each Recorded as it arrives
        self.throttle_above_per_second: int | None = None
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._faults: list[_Fault] = []
        self._pages: dict[str, dict] = {}  # id -> {"properties": {name: Prop}, "parent":, "icon":, "cover":, ...}
        self._blocks: dict[str, dict] = {}  # id -> the stored block (without children)
        self._children: dict[str, list[str]] = collections.defaultdict(list)
        self.files = HostedFiles()
        self._recent: collections.deque[float] = collections.deque()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # -- loading content ----------------------------------------------------

    def add_page(
        self,
        *,
        title: str = "Untitled",
        properties: dict[str, Prop] | None = None,
        blocks: list[dict] = (),
        page_id: str | None = None,
        parent: dict | None = None,
        icon: dict | None = None,
        cover: dict | None = None,
    ) -> str:
        """Store a page and its blocks (nested under "children"); its id."""
        page_id = str(uuid.UUID(page_id)) if page_id else str(uuid.uuid4())
        props = dict(properties or {})
        if not any(prop.type == "title" for prop in props.values()):
            props = {"Name": title_property(title), **props}
        with self._lock:
            self._pages[page_id] = {
                "properties": props,
                "parent": parent or {"type": "workspace", "workspace": True},
                "icon": icon,
                "cover": cover,
                "last_edited_time": CREATED,
            }
            self._add_blocks(page_id, "page_id", list(blocks))
        return page_id

    def _add_blocks(self, parent_id: str, parent_type: str, blocks: list[dict]) -> None:
        for given in blocks:
            block = {key: value for key, value in given.items() if key != "children"}
            block_id = str(uuid.UUID(block.pop("id"))) if "id" in block else str(uuid.uuid4())
            children = given.get("children") or []
            self._blocks[block_id] = {
                "object": "block",
                "id": block_id,
                "parent": {"type": parent_type, parent_type: parent_id},
                "created_time": CREATED,
                "last_edited_time": CREATED,
                "created_by": USER,
                "last_edited_by": USER,
                "has_children": bool(children),
                "archived": False,
                "in_trash": False,
                **block,
            }
            self._children[parent_id].append(block_id)
            if block.get("type") == "child_page":
                title = block["child_page"]["title"]
                self._pages[block_id] = {
                    "properties": {"title": title_property(title)},
                    "parent": {"type": parent_type, parent_type: parent_id},
                    "icon": None,
                    "cover": None,
                    "last_edited_time": CREATED,
                }
                self._add_blocks(block_id, "page_id", children)
            else:
                self._add_blocks(block_id, "block_id", children)

    def hosted_file(self, content: bytes, content_type: str = "image/png", name: str = "image.png") -> HostedFile:
        """A file to put in a block (`image(file)`): each answer mints it a fresh URL."""
        return self.files.add(content, content_type, name)

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock on (file URL expiry only)."""
        self.files.advance(seconds)

    # -- faults -------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 429,
        code: str = "rate_limited",
        message: str | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        if retry_after is None and status == 429:
            retry_after = 1
        message = message or _DEFAULT_MESSAGES.get(code, "An unexpected error occurred.")
        with self._lock:
            self._faults.append(_Fault(n, status, code, message, retry_after))

    def slow_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults.append(_Fault(n, delay=seconds))

    # -- what tests read ----------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def api_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1/")]

    def page_properties(self, page_id: str) -> dict:
        with self._lock:
            return json.loads(json.dumps({n: p.answer() for n, p in self._pages[page_id]["properties"].items()}))

    # -- answering ----------------------------------------------------------

    def _answer(self, record: Recorded) -> tuple[int, dict[str, str], bytes, str]:
        """(status, headers, body, content type) for one request."""
        if record.path.startswith("/files/"):
            status, body, content_type, record.code = self.files.serve(record.path, record.query)
            return status, {}, body, content_type
        delay, fault = self._take_fault()
        if delay:
            time.sleep(delay)
        try:
            if fault is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise _Refused(fault.status, fault.code, fault.message, headers)
            self._check_throttle()
            self._check_auth(record.headers.get("authorization", ""))
            check_version(record.headers)
            if record.invalid_json:
                raise BadRequest("invalid_json", "Error parsing JSON body.")
            answer = self._route(record)
        except BadRequest as refused:
            return self._error(record, refused.status, refused.code, refused.message)
        except _Refused as refused:
            return self._error(record, refused.status, refused.code, refused.message, refused.headers)
        answer["request_id"] = str(uuid.uuid4())
        return 200, {}, json.dumps(answer).encode(), "application/json"

    def _error(self, record, status, code, message, headers=None):
        record.code = code
        body = {"object": "error", "status": status, "code": code, "message": message, "request_id": str(uuid.uuid4())}
        return status, headers or {}, json.dumps(body).encode(), "application/json"

    def _take_fault(self) -> tuple[float, _Fault | None]:
        with self._lock:
            delay = 0.0
            for fault in list(self._faults):
                if fault.delay and fault.remaining > 0:
                    fault.remaining -= 1
                    delay = max(delay, fault.delay)
            for fault in self._faults:
                if not fault.delay and fault.remaining > 0:
                    fault.remaining -= 1
                    return delay, fault
            return delay, None

    def _check_throttle(self) -> None:
        if self.throttle_above_per_second is None:
            return
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.throttle_above_per_second:
                raise _Refused(429, "rate_limited", _DEFAULT_MESSAGES["rate_limited"], {"Retry-After": "1"})
            self._recent.append(now)

    def _check_auth(self, header: str) -> None:
        expected = f"Bearer {self.token}".encode()
        if not hmac.compare_digest(header.encode("utf-8", "replace"), expected):
            raise _Refused(401, "unauthorized", "API token is invalid.")

    def _route(self, record: Recorded) -> dict:
        parts = record.path.split("/")[2:]  # after "", "v1"
        if record.method == "GET" and len(parts) == 2 and parts[0] == "pages":
            return self._page(check_uuid(parts[1], "path.page_id"))
        if record.method == "PATCH" and len(parts) == 2 and parts[0] == "pages":
            return self._update_page(check_uuid(parts[1], "path.page_id"), record.body)
        if record.method == "GET" and len(parts) == 2 and parts[0] == "blocks":
            return self._block(check_uuid(parts[1], "path.block_id"))
        if record.method == "GET" and len(parts) == 3 and parts[0] == "blocks" and parts[2] == "children":
            return self._list_children(check_uuid(parts[1], "path.block_id"), record.query)
        raise BadRequest("invalid_request_url", "Invalid request URL.")

    def _page(self, page_id: str) -> dict:
        with self._lock:
            stored = self._pages.get(page_id)
            if stored is None:
                raise _not_found("page", page_id)
            title = next(p for p in stored["properties"].values() if p.type == "title")
            slug = "-".join("".join(t["plain_text"] for t in title.value).split())
            answer = {
                "object": "page",
                "id": page_id,
                "created_time": CREATED,
                "last_edited_time": stored["last_edited_time"],
                "created_by": USER,
                "last_edited_by": USER,
                "cover": stored["cover"],
                "icon": stored["icon"],
                "parent": stored["parent"],
                "archived": False,
                "in_trash": False,
                "is_locked": False,
                "properties": {name: prop.answer() for name, prop in stored["properties"].items()},
                "url": f"https://www.notion.so/{quote(slug)}-{page_id.replace('-', '')}",
                "public_url": None,
            }
            return self._with_file_urls(answer)

    def _update_page(self, page_id: str, body: object) -> dict:
        with self._lock:
            stored = self._pages.get(page_id)
            if stored is None:
                raise _not_found("page", page_id)
            changes = check_page_update(stored["properties"], body)
            apply_page_update(changes)
            stored["last_edited_time"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:00.000Z")
        return self._page(page_id)

    def _block(self, block_id: str) -> dict:
        with self._lock:
            if block_id not in self._blocks:
                raise _not_found("block", block_id)
            return self._with_file_urls(self._blocks[block_id])

    def _list_children(self, block_id: str, query: dict[str, list[str]]) -> dict:
        page_size, cursor = check_list_query(query)
        with self._lock:
            if block_id not in self._blocks and block_id not in self._pages:
                raise _not_found("block", block_id)
            ids = self._children.get(block_id, [])
            start = 0
            if cursor is not None:
                if cursor not in ids:
                    raise BadRequest("validation_error", "start_cursor provided is invalid: " + repr(cursor[:60]))
                start = ids.index(cursor)
            chosen = ids[start : start + page_size]
            more = start + page_size < len(ids)
            return {
                "object": "list",
                "results": [self._with_file_urls(self._blocks[i]) for i in chosen],
                "next_cursor": ids[start + page_size] if more else None,
                "has_more": more,
                "type": "block",
                "block": {},
            }

    def _with_file_urls(self, value):
        """A deep copy of `value` with every HostedFile a fresh file object."""
        if isinstance(value, HostedFile):
            return self.files.file_object(value, self.url)
        if isinstance(value, dict):
            return {key: self._with_file_urls(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._with_file_urls(item) for item in value]
        return value

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self._requests.append(record)
        if self.on_request is not None:
            self.on_request(record)


_DEFAULT_MESSAGES = {
    "rate_limited": "You have been rate limited. Please try again in a few minutes.",
    "internal_server_error": "Unexpected error occurred.",
    "service_unavailable": "Notion is unavailable. Try again later.",
    "gateway_timeout": "Notion timed out while attempting to complete this request. Please try again later.",
    "conflict_error": "Conflict occurred while saving. Please try again.",
}


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _not_found(kind: str, object_id: str) -> _Refused:
    return _Refused(
        404,
        "object_not_found",
        f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and databases are shared with your integration.",
    )


def _handler_for(standin: NotionStandIn):
    class Handler(QuietHandler):
        def do_GET(self):
            self._handle()

        def do_PATCH(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def do_DELETE(self):
            self._handle()

        def _handle(self):
            data = self.read_body()
            parts = urlsplit(self.path)
            record = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=None,
                received_at=time.monotonic(),
            )
            if data:
                try:
                    record.body = json.loads(data)
                except ValueError:
                    record.invalid_json = True
            standin._record(record)
            status, headers, payload, content_type = standin._answer(record)
            record.status = status
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
