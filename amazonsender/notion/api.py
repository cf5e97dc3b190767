"""The Notion API as the importer uses it: one page, its blocks and its properties, paced and retried.

`NotionPages` wraps notion-client (the official client: it sets the
Notion-Version and Authorization headers and turns Notion's error objects
into typed exceptions) and adds what an import needs around it:

- pacing: at most MAX_REQUESTS_PER_SECOND requests per process, Notion's
  documented average per integration (request limits page), through the
  sender's Pacer, which never lets more than that into any one second;
- retries: a 429 waits the Retry-After seconds Notion sends (an integer
  number of seconds), a 409, 5xx, 529 or a timeout or lost connection
  backs off exponentially; MAX_ATTEMPTS in all, then NotionUnavailable.
  notion-client's own retries are off: they sleep on the real clock,
  which tests could not drive, and would retry behind our pacer's back;
- errors a person can act on: 401 NotionAuthError (the token is wrong),
  403 NotionAccessError (the integration lacks the capability), 404
  NotionNotFound (no such page, or not shared with the integration), any
  other 4xx NotionRequestError with Notion's own message. The token is in
  no message and no log line.

Notion-Version: pinned to NOTION_VERSION, "2025-09-03", notion-client
3.1.0's default, so that the client and our pin cannot disagree. The three
endpoints used here (retrieve a page, retrieve block children, update page
properties) take and return the same block and property-value shapes under
2022-06-28 and 2025-09-03; 2025-09-03 changed databases into data sources,
which shows here only as a page's parent (`data_source_id`), which the
importer does not read.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from notion_client import Client
from notion_client.errors import HTTPResponseError, RequestTimeoutError

from ..sender.pacer import Pacer
from .ids import page_id as parse_page_id

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.notion.com"
NOTION_VERSION = "2025-09-03"
DEFAULT_TIMEOUT_SECONDS = 30.0
# Notion: "an average of three requests per second" per integration.
MAX_REQUESTS_PER_SECOND = 3.0
# Retrieve block children answers at most 100 blocks a request.
PAGE_SIZE = 100
# A page nested deeper, or with more blocks, is not a newsletter: stop with
# a clear error rather than walk it for minutes at 3 requests a second.
MAX_DEPTH = 20
MAX_BLOCKS = 5000
# Their children are other pages (or a database), not this page's content.
OTHER_PAGES = frozenset({"child_page", "child_database"})

MAX_ATTEMPTS = 5
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# Notion's per-connection limit sends at most 60; a longer wait (the
# per-workspace limit) is not waited out inside one import.
MAX_RETRY_AFTER_SECONDS = 60.0
# 409 conflict_error: "Make sure the parameters are up to date and try
# again"; 529 service_overload carries a Retry-After like a 429.
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504, 529})
# How much of Notion's own error message is passed on.
MAX_MESSAGE_CHARS = 300


class NotionError(Exception):
    """Notion refused or failed a request; the message says what to do."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotionAuthError(NotionError):
    """401: Notion does not accept the token."""


class NotionAccessError(NotionError):
    """403: the integration may not do this (a capability it lacks)."""


class NotionNotFound(NotionError):
    """404: no such page or block, or it is not shared with the integration."""


class NotionRequestError(NotionError):
    """Another 4xx: Notion refused the request itself (a property, say)."""


class NotionUnavailable(NotionError):
    """Notion kept answering 429, 5xx or not at all, MAX_ATTEMPTS times."""


class NotionPageTooLarge(NotionError):
    """The page nests deeper than MAX_DEPTH or holds more than MAX_BLOCKS blocks."""


_process_pacer: Pacer | None = None
_process_pacer_lock = threading.Lock()


def process_pacer() -> Pacer:
    """The one pacer every NotionPages in this process shares, so that two
    imports at once still stay within Notion's rate together."""
    global _process_pacer
    with _process_pacer_lock:
        if _process_pacer is None:
            _process_pacer = Pacer(MAX_REQUESTS_PER_SECOND)
        return _process_pacer


@dataclass
class _Attempt:
    """What one failed try tells the retry loop."""

    error: NotionError
    retryable: bool
    wait_seconds: float | None = None  # Retry-After, when Notion sent one


class NotionPages:
    """Read a page and its blocks, and set its properties."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        notion_version: str = NOTION_VERSION,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_depth: int = MAX_DEPTH,
        max_blocks: int = MAX_BLOCKS,
    ):
        if not token:
            raise ValueError("a Notion token is needed (NOTION_TOKEN)")
        self._client = Client(
            auth=token,
            base_url=base_url.rstrip("/"),
            timeout_ms=int(timeout_seconds * 1000),
            notion_version=notion_version,
            retry=False,
            # Its own logger, quiet: it would log every failure we retry,
            # and by default it writes to stdout.
            logger=logging.getLogger(f"{__name__}.sdk"),
            log_level=logging.ERROR,
        )
        self.pacer = pacer or process_pacer()
        self.sleep = sleep
        self.max_depth = max_depth
        self.max_blocks = max_blocks

    @classmethod
    def from_settings(cls, settings, **overrides) -> NotionPages:
        """From Settings' notion_token, notion_base_url and notion_timeout_seconds."""
        return cls(
            settings.notion_token,
            base_url=settings.notion_base_url,
            timeout_seconds=settings.notion_timeout_seconds,
            **overrides,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> NotionPages:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the three things the importer asks --------------------------------

    def page(self, page: str) -> dict:
        """The page object (GET /v1/pages/{id}); `page` is a URL or an id."""
        page_id = parse_page_id(page)
        return self._call("page", page_id, lambda: self._client.pages.retrieve(page_id))

    def blocks(self, block: str) -> list[dict]:
        """Every block under `block` (a page is a block), in order, each
        block's own children under its "children" key, fetched page by page
        and level by level. A child_page's or child_database's children are
        other pages and are not fetched."""
        budget = [self.max_blocks]
        return self._children(parse_page_id(block), 1, budget)

    def update_properties(self, page: str, properties: dict) -> dict:
        """Set property values (PATCH /v1/pages/{id}); the updated page.

        Retried like a read: setting the same values twice leaves the page
        as setting them once does."""
        page_id = parse_page_id(page)
        return self._call(
            "page", page_id, lambda: self._client.pages.update(page_id, properties=properties)
        )

    # -- blocks, level by level --------------------------------------------

    def _children(self, block_id: str, depth: int, budget: list[int]) -> list[dict]:
        if depth > self.max_depth:
            raise NotionPageTooLarge(f"the page's blocks nest deeper than {self.max_depth} levels")
        children = list(self._child_list(block_id, budget))
        for child in children:
            if child.get("has_children") and child.get("type") not in OTHER_PAGES:
                child["children"] = self._children(_block_id(child), depth + 1, budget)
        return children

    def _child_list(self, block_id: str, budget: list[int]):
        cursor = None
        while True:
            answer = self._call("block", block_id, lambda: self._list_once(block_id, cursor))
            results = answer.get("results")
            if not isinstance(results, list):
                raise NotionError("Notion answered a list of blocks without results")
            for child in results:
                budget[0] -= 1
                if budget[0] < 0:
                    raise NotionPageTooLarge(f"the page has more than {self.max_blocks} blocks")
                yield child
            if not answer.get("has_more"):
                return
            next_cursor = answer.get("next_cursor")
            if not results or not next_cursor or next_cursor == cursor:
                raise NotionError("Notion said there were more blocks but gave no way to them")
            cursor = next_cursor

    def _list_once(self, block_id: str, cursor: str | None) -> dict:
        kwargs = {"page_size": PAGE_SIZE}
        if cursor is not None:
            kwargs["start_cursor"] = cursor
        return self._client.blocks.children.list(block_id, **kwargs)

    # -- one request: pace, try, retry -------------------------------------

    def _call(self, what: str, object_id: str, request: Callable[[], dict]) -> dict:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.pacer.wait()
            try:
                return request()
            except (HTTPResponseError, RequestTimeoutError, httpx.TransportError) as error:
                failed = _classify(error, what, object_id)
            if not failed.retryable:
                raise failed.error
            if attempt == MAX_ATTEMPTS:
                raise NotionUnavailable(
                    f"Notion did not answer after {MAX_ATTEMPTS} tries: {failed.error}",
                    status=failed.error.status,
                    code=failed.error.code,
                )
            wait = failed.wait_seconds
            if wait is None:
                wait = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
            elif wait > MAX_RETRY_AFTER_SECONDS:
                raise NotionUnavailable(
                    f"Notion is rate limiting us and asks to wait {wait:.0f} s; try again later",
                    status=failed.error.status,
                    code=failed.error.code,
                )
            log.warning(
                "notion request failed, retrying",
                extra={"notion_status": failed.error.status, "notion_code": failed.error.code,
                       "attempt": attempt, "wait_seconds": wait},
            )  # fmt: skip
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _classify(error: Exception, what: str, object_id: str) -> _Attempt:
    """The NotionError a failed try stands for, and whether to try again."""
    if isinstance(error, RequestTimeoutError):
        return _Attempt(NotionError("Notion did not answer in time", code="timeout"), retryable=True)
    if isinstance(error, httpx.TransportError):
        # The exception's text can hold the URL, never the token (a header).
        return _Attempt(NotionError(f"could not reach Notion ({type(error).__name__})", code="transport"), True)
    status = error.status
    code = error.code.value if isinstance(error.code, enum.Enum) else str(error.code)
    if status in RETRYABLE_STATUSES:
        failure = NotionError(f"Notion answered {status} {code}", status=status, code=code)
        return _Attempt(failure, retryable=True, wait_seconds=_retry_after(error.headers))
    # A refusal: the class callers tell apart, and what to tell the operator.
    refusals = {
        401: (
            NotionAuthError,
            "Notion refused the token (401 unauthorized): check NOTION_TOKEN, the integration's secret",
        ),
        403: (
            NotionAccessError,
            f"the Notion integration may not do this (403 {code}): give it the read content"
            " and update content capabilities",
        ),
        404: (
            NotionNotFound,
            f"Notion has no {what} {object_id}, or it is not shared with the integration"
            " (in Notion: the page's ••• menu, Connections, add the integration)",
        ),
    }
    default = (NotionRequestError, f"Notion refused the request ({status} {code}): {str(error)[:MAX_MESSAGE_CHARS]}")
    kind, message = refusals.get(status, default)
    return _Attempt(kind(message, status=status, code=code), retryable=False)


def _retry_after(headers) -> float | None:
    """Retry-After in seconds (Notion sends an integer), or None."""
    value = (headers or {}).get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not seconds >= 0 or seconds == float("inf"):  # NaN, negative or infinite
        return None
    return seconds


def _block_id(block: dict) -> str:
    """A child block's id, checked: it goes into the next request's path."""
    try:
        return parse_page_id(block.get("id"))
    except ValueError:
        raise NotionError("Notion answered a block without a valid id") from None
