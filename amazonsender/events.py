"""What an SES event means for the list. No Flask in here.

SES publishes events in two formats, both accepted:
- identity notifications: `{"notificationType": "Bounce", "bounce": {...}, "mail": {...}}`
- configuration-set event publishing: `{"eventType": "Bounce", ..., "mail": {"tags": {...}}}`,
  where our `mailout_id` message tag comes back in `mail.tags`.

A status only ever moves away from 'active': no event reactivates anybody.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from email.utils import parseaddr
from uuid import UUID

from psycopg import Connection
from psycopg.types.json import Jsonb

from . import store

log = logging.getLogger(__name__)

SOFT_BOUNCE_LIMIT = 3
MAILOUT_TAG = "mailout_id"

# Where each event type keeps its recipients, and how an entry names one.
RECIPIENT_LISTS = {
    "Bounce": ("bounce", "bouncedRecipients"),
    "Complaint": ("complaint", "complainedRecipients"),
    "Delivery": ("delivery", "recipients"),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients"),
}


@dataclass
class SesEvent:
    event_type: str
    addresses: list[str] = field(default_factory=list)
    ses_message_id: str | None = None
    mailout_id: UUID | None = None
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    complaint_type: str | None = None
    feedback_id: str | None = None
    payload: dict | str | None = None


def parse_ses_event(text: str) -> SesEvent:
    """Read the SNS `Message` of an SES event. Anything else (a test message
    from the console, say) comes back as event type 'Unknown'."""
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return SesEvent("Unknown", payload=text)
    if not isinstance(body, dict):
        return SesEvent("Unknown", payload=body)
    event_type = body.get("eventType") or body.get("notificationType")
    if not isinstance(event_type, str):
        return SesEvent("Unknown", payload=body)

    mail = _dict(body.get("mail"))
    event = SesEvent(event_type, payload=body)
    message_id = mail.get("messageId")
    event.ses_message_id = message_id if isinstance(message_id, str) else None
    event.mailout_id = _mailout_tag(_dict(mail.get("tags")))
    event.addresses = _recipients(body, event_type, mail)

    if event_type == "Bounce":
        bounce = _dict(body.get("bounce"))
        event.bounce_type = _text(bounce.get("bounceType")) or "Undetermined"
        event.bounce_subtype = _text(bounce.get("bounceSubType"))
        event.feedback_id = _text(bounce.get("feedbackId"))
    elif event_type == "Complaint":
        complaint = _dict(body.get("complaint"))
        event.complaint_type = _text(complaint.get("complaintFeedbackType"))
        event.feedback_id = _text(complaint.get("feedbackId"))
    return event


def process_notification(conn: Connection, sns_message: dict) -> tuple[bool, str]:
    """Record the event and apply it, in the caller's transaction. Returns
    (is_new, SES event type); is_new is False, and nothing changed, when this
    SNS MessageId was processed before."""
    event = parse_ses_event(sns_message["Message"])
    if event.mailout_id is None and event.ses_message_id:
        event.mailout_id = store.mailout_of_message(conn, event.ses_message_id)
    # The same bounce published through both identity notifications and a
    # configuration set arrives as two SNS messages with one feedbackId.
    repeat = bool(event.feedback_id) and store.feedback_seen(conn, event.event_type, event.feedback_id)
    is_new = store.record_event(
        conn,
        {
            "sns_message_id": sns_message["MessageId"],
            "sns_type": sns_message["Type"],
            "event_type": event.event_type,
            "addresses": event.addresses,
            "ses_message_id": event.ses_message_id,
            "mailout_id": event.mailout_id,
            "bounce_type": event.bounce_type,
            "feedback_id": event.feedback_id,
            "payload": Jsonb(event.payload),
        },
    )
    if not is_new:
        return False, event.event_type
    if repeat:
        log.info("SES %s %s was already applied (published twice); recorded only", event.event_type, event.feedback_id)
    else:
        apply_event(conn, event)
    return True, event.event_type


def record_confirmation(conn: Connection, sns_message: dict) -> bool:
    """Keep subscription (un)confirmations in the same table, minus the token."""
    payload = {key: sns_message.get(key) for key in ("Type", "TopicArn", "Timestamp", "Message")}
    return store.record_event(
        conn,
        {
            "sns_message_id": sns_message["MessageId"],
            "sns_type": sns_message["Type"],
            "event_type": sns_message["Type"],
            "addresses": [],
            "ses_message_id": None,
            "mailout_id": None,
            "bounce_type": None,
            "feedback_id": None,
            "payload": Jsonb(payload),
        },
    )


def apply_event(conn: Connection, event: SesEvent) -> None:
    if not event.addresses:
        return
    if event.event_type == "Bounce":
        if event.bounce_type == "Permanent":
            store.suppress(
                conn,
                event.addresses,
                "bounced",
                f"permanent bounce: {event.bounce_subtype or 'unspecified'}",
                bounce_type=event.bounce_type,
                bounce_subtype=event.bounce_subtype,
            )
        else:
            # Transient and Undetermined: a full mailbox or a busy server
            # deserves another try, but not forever.
            store.count_soft_bounce(
                conn, event.addresses, SOFT_BOUNCE_LIMIT, event.bounce_type, event.bounce_subtype
            )
    elif event.event_type == "Complaint":
        store.suppress(conn, event.addresses, "complained", f"complaint: {event.complaint_type or 'unspecified'}")
    elif event.event_type == "Delivery":
        store.record_delivery(conn, event.addresses, event.ses_message_id)


def _recipients(body: dict, event_type: str, mail: dict) -> list[str]:
    if event_type in RECIPIENT_LISTS:
        section, key = RECIPIENT_LISTS[event_type]
        entries = _dict(body.get(section)).get(key)
    else:
        entries = mail.get("destination")
    addresses = []
    for entry in entries if isinstance(entries, list) else []:
        value = entry.get("emailAddress") if isinstance(entry, dict) else entry
        if isinstance(value, str):
            address = parseaddr(value)[1] or value.strip()
            if "@" in address:
                addresses.append(address)
    return addresses


def _mailout_tag(tags: dict) -> UUID | None:
    values = tags.get(MAILOUT_TAG)
    if isinstance(values, list) and values and isinstance(values[0], str):
        try:
            return UUID(values[0])
        except ValueError:
            return None
    return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None
