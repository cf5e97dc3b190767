"""A Notion button press on a page without a mailout id: the page imported as a mailout, then claimed and sent; a test of the page; its status written back.

Notion waits for the webhook's answer and pauses the automation when it
fails or times out, and reading a page of a few hundred blocks at Notion's
three requests a second takes seconds. So the request does only what is
quick and decides the answer (docs/notion.md, "What a press does"):

1. the page's mailout, if it has one: a retry of the event that pressed it
   gets the first answer again; a page being imported or past 'ready' is a
   409, with no request to Notion;
2. one Notion request, the page itself: a wrong token, a page not shared
   with the integration or a subject that cannot go out is answered now,
   and nothing is stored;
3. the mailout row, keyed by the page (a draft, marked as being imported,
   with the event id): two presses at once meet at its unique index;

then answers 202, and a background thread reads the blocks, stores the
body, makes the mailout ready, claims it and sends it like any other. An
import that fails leaves the draft with the reason in its error and on the
page ("Failed", "Send error"); the next press imports it again.
"""

from __future__ import annotations

import logging
from uuid import UUID

from flask import current_app, jsonify

from .. import sender
from ..content import ContentProblem
from ..notion import importer
from ..notion.api import NotionError, NotionPages
from ..notion.images import signed_images, stored_images
from ..notion.runs import PageReports
from ..notion.status import FAILED, SENDING, StatusUpdate, StatusWriter
from ..store import notion as notion_store
from .background import run_in_background
from .errors import ApiError, answer
from .pool import POOL, get_pool

log = logging.getLogger(__name__)

# app.extensions keys: a () -> NotionPages factory, and the StatusWriter.
PAGES = "notion_pages"
STATUS = "notion_status"

# Refused Notion requests and content that cannot go out: answered by problems.py.
IMPORT_PROBLEMS = (NotionError, ContentProblem)


def init_app(app, settings, notion_pages=None) -> None:
    """Notion's parts of the app, when NOTION_TOKEN is set: how a request
    gets a NotionPages (tests pass a factory with their own pacer) and the
    status writer."""
    if not settings.notion_token:
        app.extensions[PAGES] = app.extensions[STATUS] = None
        return
    make_pages = notion_pages or (lambda: NotionPages.from_settings(settings))
    app.extensions[PAGES] = make_pages
    app.extensions[STATUS] = StatusWriter(
        make_pages, status_property=settings.notion_status_property, mailout_property=settings.notion_mailout_property
    )


def press(settings, page_id: str, event_id: str | None, *, wait: bool):
    pool = get_pool()
    with pool.connection() as conn:
        known = notion_store.mailout_for_page(conn, page_id)
    if known is not None and (refused := replay_or_refuse(settings, known, page_id, event_id)):
        return refused
    with current_app.extensions[PAGES]() as notion:
        try:
            page = importer.read_page(notion, page_id, subject_property=settings.notion_subject_property)
        except IMPORT_PROBLEMS as exc:
            raise answer(exc) from None
    with pool.connection() as conn:
        mailout_id = notion_store.start_press(conn, page_id, page.subject, event_id)
        if mailout_id is None:
            known = notion_store.mailout_for_page(conn, page_id)
    if mailout_id is None:
        # Taken between our look and our INSERT: a press at the same moment.
        if known is None:
            raise ApiError(409, "the Notion page's mailout changed meanwhile; press again")
        if refused := replay_or_refuse(settings, known, page_id, event_id):
            return refused
        raise conflict(known, "importing")
    writer: StatusWriter = current_app.extensions[STATUS]
    writer.know_properties(page.id, page.properties)
    log.info(
        "notion page %s pressed: importing it as mailout %s", page_id, mailout_id,
        extra={"event": "notion_press", "mailout_id": str(mailout_id)},
    )  # fmt: skip
    job = ImportAndSend(pool, current_app.extensions["transport"], settings, writer, page, mailout_id, event_id)
    job.make_pages = current_app.extensions[PAGES]
    if wait:
        summary = job.run(in_thread=False)
        if summary is None:
            raise ApiError(422, f"the Notion page was not sent: {job.failure}", mailout_id=str(mailout_id))
        return jsonify(summary.to_dict()), 200
    run_in_background(current_app._get_current_object(), f"notion-{page_id}", job.run)
    return importing(settings, mailout_id, page_id, "importing")


def importing(settings, mailout_id: UUID, page_id: str, status: str, recipients: int | None = None):
    """The 202 of a press, and of every retry of the event that pressed."""
    return (
        jsonify(
            mailout_id=str(mailout_id),
            notion_page_id=page_id,
            status=status,
            recipients=recipients,
            status_url=f"{settings.app_base_url}/mailouts/{mailout_id}",
            message="importing the Notion page, then sending it; GET status_url (with the same secret) to follow it",
        ),
        202,
    )


def replay_or_refuse(settings, known: dict, page_id: str, event_id: str | None):
    """For a page that has a mailout: a retry of the event that pressed it
    gets its 202 again; a page being imported, sending or sent is a 409
    (raised). None: the mailout is a draft or ready, and may be pressed."""
    status = "importing" if known["importing"] else known["status"]
    if status in ("draft", "ready"):
        return None
    if event_id and known["claim_event_id"] == event_id:
        log.info(
            "notion page %s: a retry of the press that started mailout %s, answered as the first", page_id,
            known["id"], extra={"event": "claim_retried", "mailout_id": str(known["id"])},
        )  # fmt: skip
        return importing(settings, known["id"], page_id, status, known["recipients"])
    raise conflict(known, status)


def conflict(known: dict, status: str) -> ApiError:
    return ApiError(
        409,
        f"the Notion page is mailout {known['id']}, which is '{status}': a page is sent once"
        " (duplicate the page for a new mailout)",
        mailout_id=str(known["id"]),
        status=status,
    )


class ImportAndSend:
    """The press's work after its answer: read the blocks, store the body,
    claim, send, and keep the page's status."""

    def __init__(self, pool, transport, settings, writer: StatusWriter, page, mailout_id: UUID, event_id):
        self.pool, self.transport, self.settings, self.writer = pool, transport, settings, writer
        self.page, self.mailout_id, self.event_id = page, mailout_id, event_id
        self.make_pages = lambda: NotionPages.from_settings(settings)
        self.failure: str | None = None

    def run(self, in_thread: bool = True):
        claim = self.import_and_claim()
        if claim is None:
            return None
        finished = self.report_end
        if in_thread:
            sender.send_in_thread(self.pool, self.transport, self.settings, claim, what="notion send", finished=finished)
            return None
        summary = sender.send_claimed_mailout(self.pool, self.transport, self.settings, claim)
        finished(summary)
        return summary

    def import_and_claim(self) -> sender.Claim | None:
        try:
            with self.make_pages() as notion:
                images = stored_images(self.pool, self.settings.app_base_url)
                imported = importer.read_content(notion, self.page, images=images)
        except IMPORT_PROBLEMS as exc:
            return self.fail(f"the Notion page could not be imported: {exc}")
        except Exception as exc:  # noqa: BLE001 - the draft must not stay 'importing'
            log.exception("notion page %s: import crashed", self.page.id)
            return self.fail(f"the Notion page could not be imported ({type(exc).__name__})")
        if imported.skipped:
            log.info(
                "notion page %s: %d blocks left out or shown as links", self.page.id, len(imported.skipped),
                extra={"event": "notion_skipped", "mailout_id": str(self.mailout_id),
                       "skipped": [s.__dict__ for s in imported.skipped[:50]]},
            )  # fmt: skip
        with self.pool.connection() as conn:
            stored = notion_store.finish_import(conn, self.mailout_id, imported.subject, imported.body, "ready")
        if not stored:
            return self.fail("the mailout changed while the page was imported (deleted?)")
        try:
            rate = sender.check_mailout_can_start(self.pool, self.transport, self.settings, self.mailout_id)
            claim = sender.claim_mailout(self.pool, self.mailout_id, rate_per_sec=rate, event_id=self.event_id)
        except sender.CANNOT_START as exc:
            return self.fail(f"imported, but not sent: {exc}", stored=True)
        self.writer.post(StatusUpdate(self.page.id, SENDING, mailout_id=str(self.mailout_id)))
        return claim

    def fail(self, reason: str, *, stored: bool = False) -> None:
        self.failure = reason
        log.warning(
            "mailout %s (notion page %s): %s", self.mailout_id, self.page.id, reason,
            extra={"event": "notion_import_failed", "mailout_id": str(self.mailout_id)},
        )  # fmt: skip
        if not stored:
            with self.pool.connection() as conn:
                notion_store.fail_import(conn, self.mailout_id, reason)
        self.writer.post(StatusUpdate(self.page.id, FAILED, mailout_id=str(self.mailout_id), error=reason))
        return None

    def report_end(self, summary) -> None:
        PageReports(self.pool, self.writer).ended(self.mailout_id, summary)


def page_reports(app) -> PageReports | None:
    """The app's PageReports (a mailout's runs on its Notion page), or None
    when NOTION_TOKEN is unset: the webhook's sends, a person's pause and
    the auto-resume watcher (start_auto_resume) use it."""
    writer: StatusWriter | None = app.extensions.get(STATUS)
    if writer is None:
        return None
    return PageReports(app.extensions[POOL], writer)


def report_run(mailout_id: UUID):
    """For a claimed mailout sent by its id: 'Sending' on its Notion page,
    if it came from one, now, and the `finished` callback that writes its
    end. None when NOTION_TOKEN is unset."""
    reports = page_reports(current_app)
    if reports is None:
        return None
    reports.started(mailout_id)
    return lambda summary: reports.ended(mailout_id, summary)


def test_page(settings, page_id: str, addresses: list[str]):
    """`"test": true` for a page: its content as it is now, to the test
    addresses; nothing stored, nothing written to the page."""
    pool = get_pool()
    with current_app.extensions[PAGES]() as notion:
        try:
            imported = importer.import_page(
                notion, page_id, subject_property=settings.notion_subject_property, images=signed_images()
            )
        except IMPORT_PROBLEMS as exc:
            raise answer(exc) from None
    with pool.connection() as conn:
        known = notion_store.mailout_for_page(conn, page_id)
    mailout_id = known["id"] if known else UUID(int=0)
    results = sender.send_test_content(
        pool, current_app.extensions["transport"], settings, mailout_id, imported.subject, imported.body, addresses
    )
    return jsonify(
        notion_page_id=page_id,
        test=True,
        subject=imported.subject,
        skipped=[s.__dict__ for s in imported.skipped],
        results=results,
    ), 200
