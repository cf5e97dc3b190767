"""Status written back to a mailout's Notion page: Sending, then Sent, Paused or Failed, by a background writer that never holds up a send.

What is written, each only when the page has a property of that name and a
matching type (read from the page once; names it lacks are skipped, never
an error):

- NOTION_STATUS_PROPERTY (default "Status"), a `status` or `select`:
  the state's name. A `status` property takes only the options it has
  (Notion refuses others): add Sending, Sent, Paused and Failed to it
  (docs/notion.md). A `select` adds a missing option by itself.
- "Send error", rich text: why a run paused or failed ("" otherwise).
- "Sent", a number: the emails sent so far.
- "Sent at", a date: when the mailout ended 'sent'.
- NOTION_MAILOUT_PROPERTY, rich text (never a title: it is the page's
  name): the mailout's id.

Writes go through one queue and one thread per process, with NotionPages'
pacing, Retry-After and retries. A write that still fails is logged (never
the token) and dropped: the send goes on either way, and the page is only
a view of the mailout's state, which the database holds.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from .api import NotionError, NotionPages
from .properties import property_types, rich_text_value

log = logging.getLogger(__name__)

SENDING = "Sending"
SENT = "Sent"
PAUSED = "Paused"
FAILED = "Failed"
# The mailout's status at a run's end -> the page's status.
FINAL_STATES = {"sent": SENT, "paused": PAUSED, "failed": FAILED}

ERROR_PROPERTY = "Send error"
SENT_PROPERTY = "Sent"
SENT_AT_PROPERTY = "Sent at"

# Updates waiting; past this the newest are dropped (and logged): Notion
# being away must not make the process hold an unbounded backlog.
MAX_WAITING = 1000


@dataclass(frozen=True)
class StatusUpdate:
    """What to write to one page. None leaves a property as it is."""

    page_id: str
    state: str
    mailout_id: str | None = None
    error: str | None = None
    sent: int | None = None
    sent_at: datetime | None = None


def properties_for(types: dict[str, str], update: StatusUpdate, *, status_property: str, mailout_property: str) -> dict:
    """The PATCH body's properties: only names the page has, with the type
    each value needs."""
    wanted = {}
    if types.get(status_property) in ("status", "select"):
        wanted[status_property] = {types[status_property]: {"name": update.state}}
    if types.get(ERROR_PROPERTY) == "rich_text" and (update.error is not None or update.state in (SENDING, SENT)):
        wanted[ERROR_PROPERTY] = {"rich_text": rich_text_value(update.error or "") if update.error else []}
    if update.sent is not None and types.get(SENT_PROPERTY) == "number":
        wanted[SENT_PROPERTY] = {"number": update.sent}
    if update.sent_at is not None and types.get(SENT_AT_PROPERTY) == "date":
        wanted[SENT_AT_PROPERTY] = {"date": {"start": update.sent_at.astimezone(timezone.utc).isoformat()}}
    # Rich text only: a title holding the id would lose the page's name.
    if update.mailout_id is not None and types.get(mailout_property) == "rich_text":
        wanted[mailout_property] = {"rich_text": rich_text_value(update.mailout_id)}
    return wanted


class StatusWriter:
    """One background thread writing StatusUpdates in order; `post` never
    blocks and never raises."""

    def __init__(self, make_pages, *, status_property: str, mailout_property: str):
        self._make_pages = make_pages  # () -> NotionPages
        self.status_property = status_property
        self.mailout_property = mailout_property
        self._queue: queue.Queue[StatusUpdate | None] = queue.Queue(MAX_WAITING)
        self._types: dict[str, dict[str, str]] = {}  # page id -> {name: type}, read once
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings, **pages_overrides) -> StatusWriter:
        return cls(
            lambda: NotionPages.from_settings(settings, **pages_overrides),
            status_property=settings.notion_status_property,
            mailout_property=settings.notion_mailout_property,
        )

    def know_properties(self, page_id: str, properties: dict) -> None:
        """The page's properties as an import read them: saves a read."""
        with self._lock:
            self._types[page_id] = property_types(properties)

    def post(self, update: StatusUpdate) -> None:
        self._start()
        try:
            self._queue.put_nowait(update)
        except queue.Full:
            log.warning("notion status update dropped: too many waiting", extra={"event": "notion_status_dropped"})

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until every update posted so far is written or dropped (tests, a
        command's end), or `timeout` seconds; whether it got there."""
        tasks = self._queue
        with tasks.all_tasks_done:
            return tasks.all_tasks_done.wait_for(lambda: tasks.unfinished_tasks == 0, timeout)

    def close(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the updates posted so far, then
        let the thread end after them; whether all were written or dropped.
        A short-lived process (a command) ends this way: what is still
        waiting then is lost with the process, never holding it up."""
        done = self.wait_idle(timeout)
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
        if running:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass  # the daemon thread dies with the process
        return done

    def _start(self) -> None:
        # Started on first use, in the process that uses it: gunicorn forks
        # its workers after the app is built, and a thread does not survive a fork.
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="notion-status", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        pages = self._make_pages()
        try:
            while True:
                update = self._queue.get()
                if update is None:  # close()
                    self._queue.task_done()
                    return
                try:
                    self.write(pages, update)
                except NotionError as exc:
                    log.warning(
                        "notion status not written to page %s: %s", update.page_id, exc,
                        extra={"event": "notion_status_failed", "mailout_id": update.mailout_id},
                    )  # fmt: skip
                except Exception:  # noqa: BLE001 - the writer must outlive any one update
                    log.exception("notion status not written to page %s", update.page_id)
                finally:
                    self._queue.task_done()
        finally:
            pages.close()

    def write(self, pages: NotionPages, update: StatusUpdate) -> None:
        with self._lock:
            types = self._types.get(update.page_id)
        if types is None:
            types = property_types(pages.page(update.page_id).get("properties"))
            with self._lock:
                self._types[update.page_id] = types
        properties = properties_for(
            types, update, status_property=self.status_property, mailout_property=self.mailout_property
        )
        if properties:
            pages.update_properties(update.page_id, properties)
        log.info(
            "notion page %s: %s", update.page_id, update.state,
            extra={"event": "notion_status", "mailout_id": update.mailout_id},
        )  # fmt: skip


def final_update(page_id: str, mailout_id: str, status: str, error: str | None, sent: int) -> StatusUpdate:
    """The update at a run's end, from the mailout's status then."""
    state = FINAL_STATES.get(status, FAILED)
    return StatusUpdate(
        page_id,
        state,
        mailout_id=mailout_id,
        error=error if state != SENT else None,
        sent=sent,
        sent_at=datetime.now(timezone.utc) if state == SENT else None,
    )
