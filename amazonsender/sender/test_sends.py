"""Test sends: the mailout to a few addresses, subject prefixed [TEST], outside its ledger.

Through the same message builder, links and transport as a run, without
touching the mailout's state; repeatable whatever its status.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr
from uuid import UUID

from psycopg_pool import ConnectionPool

from .. import store
from ..addresses import AddressError, bare_address, is_one_address, ses_address
from ..links import UnsubscribeLinks
from ..message import Footer, MessageBuilder
from ..transport import SendError, Transport
from .attempts import cannot_write
from .errors import MailoutNotFound
from .pacer import Pacer
from .preflight import sendable
from .stop import StopSignal, process_stop

log = logging.getLogger(__name__)

TEST_SUBJECT_PREFIX = "[TEST] "


def is_one_test_address(value: str) -> bool:
    """One address SES can send to, as `a@b.c` or `Name <a@b.c>`, and not
    two in one entry, which would get round the webhook's MAX_TEST_RECIPIENTS."""
    return is_one_address(value)


def test_key(address: str) -> str:
    """How a test address is found on the list: its address alone, as stored."""
    bare = bare_address(address)
    try:
        return ses_address(bare).lower()
    except AddressError:
        return bare.lower()


def send_test(
    pool: ConnectionPool,
    transport: Transport,
    settings,
    mailout_id: UUID,
    addresses: list[str],
    *,
    stop: StopSignal = process_stop,
) -> list[dict]:
    """Send the mailout to a few test addresses, subject prefixed [TEST],
    through the same message builder and transport, without touching the
    mailout's state or its ledger. Repeatable, whatever the status. Raises
    MailoutNotFound, or MailoutInvalid for a subject or body that cannot go out."""
    with pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is None:
            raise MailoutNotFound(str(mailout_id))
        sendable(mailout)
    return send_test_content(
        pool, transport, settings, mailout_id, mailout["subject"], mailout["body"], addresses, stop=stop
    )


def send_test_content(
    pool: ConnectionPool,
    transport: Transport,
    settings,
    mailout_id: UUID,
    subject: str,
    body: str,
    addresses: list[str],
    *,
    stop: StopSignal = process_stop,
) -> list[dict]:
    """send_test for content that is not (or not yet) a mailout's, such as a
    Notion page's as it is now; `mailout_id` only tags the messages. The
    caller has checked the subject and body (content.check_content)."""
    with pool.connection() as conn:
        subscribers = store.subscribers_by_email(conn, [test_key(address) for address in addresses])
    builder = MessageBuilder(
        mailout_id=str(mailout_id),
        subject=TEST_SUBJECT_PREFIX + subject,
        body_html=body,
        from_address=settings.ses_from_email,
        reply_to=settings.ses_reply_to,
        footer=Footer.from_settings(settings),
    )
    links = UnsubscribeLinks.from_settings(settings)
    pacer = Pacer(settings.rate_limit_per_sec, sleep=stop.wait)
    results = []
    for address in addresses:
        if stop.is_set():
            results.append({"to": address, "status": "failed", "error": f"not sent: {stop.reason}"})
            continue
        subscriber = subscribers.get(test_key(address))
        # A test address that is not on the list gets a link that works and
        # changes nothing (no subscriber has the nil id).
        subscriber_id = subscriber["id"] if subscriber else UUID(int=0)
        try:
            email = builder.build(
                to_email=bare_address(address),
                to_name=subscriber["from_name"] if subscriber else parseaddr(address)[0],
                unsubscribe_url=links.url(subscriber_id),
            )
        except Exception as exc:  # noqa: BLE001 - this address fails alone, with the reason
            results.append({"to": address, "status": "failed", "error": cannot_write(exc)})
            continue
        pacer.wait()
        try:
            results.append({"to": address, "status": "sent", "ses_message_id": transport.send(email)})
        except SendError as exc:
            results.append({"to": address, "status": "failed", "error": str(exc)})
    log.info(
        "mailout %s test-sent to %d addresses",
        mailout_id,
        len(addresses),
        extra={"event": "test_send", "mailout_id": str(mailout_id)},
    )
    return results
