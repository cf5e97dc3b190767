"""A mailout's runs told to its Notion page, whoever runs them: Sending as a run starts, its end state when it ends, Paused when a person pauses it.

Every path that sends uses the same PageReports: the webhook's send (a
press, or a mailout sent by its id), the service's automatic resume (the web
layer hands it to the watcher as its RunHooks, so the sender never imports
Notion), and the commands `mailout send`, `mailout resume` and `mailout
pause` (`command_reports`: the same background writer, waited for at most
COMMAND_WAIT_SECONDS when the command ends).

A mailout with no `notion_page_id`, or a process without NOTION_TOKEN, is
skipped in silence. Nothing here raises to its caller: a report that fails
is logged and dropped, and the send goes on as it would have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from .. import store
from ..store import notion as notion_store
from .status import FINAL_STATES, PAUSED, SENDING, StatusUpdate, StatusWriter, final_update

log = logging.getLogger(__name__)

# How long a command waits at its end for its page updates: Notion being
# slow or away must not hold a person's terminal (NotionPages' own retries
# could wait minutes on Retry-After).
COMMAND_WAIT_SECONDS = 15.0

CRASHED = "the send stopped on an internal error; see the service log"


class PageReports:
    """RunHooks (sender/watch.py) that write a mailout's state to its page
    through a StatusWriter; each method never raises."""

    def __init__(self, pool, writer: StatusWriter):
        self.pool = pool
        self.writer = writer

    def started(self, mailout_id: UUID) -> None:
        """A run of the mailout is starting: Sending."""
        self._post(mailout_id, lambda page_id, conn: StatusUpdate(page_id, SENDING, mailout_id=str(mailout_id)))

    def ended(self, mailout_id: UUID, summary=None) -> None:
        """A run ended with `summary` (sender.Summary), or without one (it
        crashed, or never began): Sent, Paused or Failed, from the summary
        or else from the mailout's row."""

        def update(page_id: str, conn) -> StatusUpdate:
            sent = store.count_sent(conn, mailout_id)
            if summary is not None:
                return final_update(page_id, str(mailout_id), summary.status, summary.error, sent)
            row = store.get_mailout(conn, mailout_id) or {}
            if row.get("status") in FINAL_STATES:
                return final_update(page_id, str(mailout_id), row["status"], row.get("error"), sent)
            return final_update(page_id, str(mailout_id), "failed", CRASHED, sent)

        self._post(mailout_id, update)

    def paused(self, mailout_id: UUID) -> None:
        """A person paused the mailout: Paused, with the row's reason."""

        def update(page_id: str, conn) -> StatusUpdate:
            row = store.get_mailout(conn, mailout_id) or {}
            return StatusUpdate(page_id, PAUSED, mailout_id=str(mailout_id), error=row.get("error") or "paused")

        self._post(mailout_id, update)

    def _post(self, mailout_id: UUID, make_update) -> None:
        try:
            with self.pool.connection() as conn:
                page_id = notion_store.notion_page_of(conn, mailout_id)
                if page_id is None:
                    return
                update = make_update(page_id, conn)
            self.writer.post(update)
        except Exception:  # noqa: BLE001 - a report must never touch the send
            log.exception("mailout %s: its Notion page's status was not written", mailout_id)


class NoReports:
    """PageReports' stand-in when NOTION_TOKEN is unset: does nothing."""

    def started(self, mailout_id: UUID) -> None:
        pass

    def ended(self, mailout_id: UUID, summary=None) -> None:
        pass

    def paused(self, mailout_id: UUID) -> None:
        pass


@contextmanager
def command_reports(settings, pool, *, wait_seconds: float = COMMAND_WAIT_SECONDS, make_writer=None) -> Iterator:
    """PageReports for one command, or NoReports without NOTION_TOKEN.
    Updates are written by a background thread (Sending never holds up the
    send), and the command waits at most `wait_seconds` at the end for them;
    what is not written by then is logged and dropped."""
    if not settings.notion_token:
        yield NoReports()
        return
    writer = make_writer() if make_writer else StatusWriter.from_settings(settings)
    try:
        yield PageReports(pool, writer)
    finally:
        if not writer.close(wait_seconds):
            log.warning(
                "Notion page status not written within %.0f s; the mailout's state is in the database"
                " (`mailout status ID`)", wait_seconds, extra={"event": "notion_status_failed"},
            )  # fmt: skip

