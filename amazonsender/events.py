"""What an SES event means for the list. No Flask in here.

SES publishes events in two formats, both accepted:
- identity notifications: `{"notificationType": "Bounce", "bounce": {...}, "mail": {...}}`
- configuration-set event publishing: `{"eventType": "Bounce", ..., "mail": {"tags": {...}}}`,
  where our `mailout_id` message tag comes back in `mail.tags`.

A status only ever moves away from 'active': no event reactivates anybody.

A Rendering Failure (event publishing only: SES accepted a templated email,
SendBulkEmail's, and could not render it) fails the recipient's ledger row
and leaves the subscriber alone: the template was at fault, not the address.

A ledger row left 'unknown' by a run that died (SES may or may not have its
email) is resolved by the first event with our mailout_id tag and its
address that shows what happened (`resolution`): Send, Delivery, Bounce,
Complaint, Reject, Rendering Failure or DeliveryDelay.
See docs/ses-events.md.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from uuid import UUID

from psycopg import Connection
from psycopg.types.json import Jsonb

from . import jsontext, store

log = logging.getLogger(__name__)

SOFT_BOUNCE_LIMIT = 3
# An address that email.utils.parseaddr returns unchanged: dot-separated
# atoms of letters, digits and _%+- on both sides of one @.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
MAILOUT_TAG = "mailout_id"
RENDERING_FAILURE = "Rendering Failure"

# What an in-doubt row becomes when SES publishes this event about it. A
# Bounce or a Complaint proves SES sent the email, like a Send: 'sent', as a
# row that was never in doubt would be (the bounce itself counts where it
# always does). A Reject and a Rendering Failure mean it never left SES.
RESOLVED_STATUS = {
    "Send": "sent",
    "DeliveryDelay": "sent",
    "Bounce": "sent",
    "Complaint": "sent",
    "Delivery": "delivered",
    "Reject": "failed",
    RENDERING_FAILURE: "failed",
}
# When several events about one in-doubt row are already stored (a resume
# resolves it from them), the lowest rank wins: SES handed it over
# (Delivery), attempted it (Bounce, Complaint: a rendering failure cannot
# undo those, see store/events.py), never sent it, or took it.
RESOLUTION_RANK = {
    "Delivery": 0,
    "Bounce": 1,
    "Complaint": 1,
    "Reject": 2,
    RENDERING_FAILURE: 2,
    "DeliveryDelay": 3,
    "Send": 3,
}
RESOLUTIONS = [(kind, status, RESOLUTION_RANK[kind]) for kind, status in RESOLVED_STATUS.items()]

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
    # A Rendering Failure's failure.errorMessage, or a Reject's reject.reason:
    # why SES did not send it.
    failure_message: str | None = None
    payload: dict | str | None = None
    # The JSON text the event was read from, stored as it came (the payload
    # need not be written out again); None when it was not JSON.
    payload_json: str | None = None


def parse_ses_event(text: str) -> SesEvent:
    """Read the SNS `Message` of an SES event. Anything else (a test message
    from the console, say) comes back as event type 'Unknown'; JSON nested
    deeper than jsontext.MAX_DEPTH raises jsontext.TooDeep.

    Every string in it is made storable first (jsontext.storable: NUL and
    lone surrogates as U+FFFD), so that all that follows reads what will be
    stored: a diagnosticCode is text a remote mail server wrote. An address
    or id that held one matches nothing (see _recipients), and the event is
    recorded and answered 200 like any other: it is signed, so it did come
    from SES, and what else it says (a real recipient's bounce) still holds,
    which a 400 would throw away with the rest."""
    try:
        body = jsontext.loads(text)
    except jsontext.TooDeep:
        raise
    except (ValueError, TypeError):
        return SesEvent("Unknown", payload=jsontext.storable(text))
    payload_json = text if isinstance(text, str) else None
    clean = jsontext.storable(body, text)
    if clean is not body:
        # The text still spells what was replaced: stored from the value.
        body, payload_json = clean, None
    if not isinstance(body, dict):
        return SesEvent("Unknown", payload=body, payload_json=payload_json)
    event_type = body.get("eventType") or body.get("notificationType")
    if not isinstance(event_type, str):
        return SesEvent("Unknown", payload=body, payload_json=payload_json)

    mail = _dict(body.get("mail"))
    event = SesEvent(event_type, payload=body, payload_json=payload_json)
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
    elif event_type == RENDERING_FAILURE:
        event.failure_message = _text(_dict(body.get("failure")).get("errorMessage"))
    elif event_type == "Reject":
        event.failure_message = _text(_dict(body.get("reject")).get("reason"))
    return event


def process_notification(conn: Connection, sns_message: dict, event: SesEvent | None = None) -> tuple[bool, str]:
    """Record the event and apply it, in one statement (see store.record_event).
    Returns (is_new, SES event type); is_new is False, and nothing changed,
    when this SNS MessageId was processed before. `event` is the Message
    already read by parse_ses_event, if the caller has read it. The view
    passes `sns_message` with its strings storable (jsontext.storable)."""
    if event is None:
        event = parse_ses_event(sns_message["Message"])
    effect, params = effect_of(event)
    params.update(resolution(event))
    is_new, repeat = store.record_event(
        conn,
        {
            "sns_message_id": sns_message["MessageId"],
            "sns_type": sns_message["Type"],
            "event_type": event.event_type,
            "addresses": event.addresses,
            "ses_message_id": event.ses_message_id,
            # Without a mailout tag, the mailout is the one whose ledger
            # holds this SES message id.
            "mailout_id": event.mailout_id,
            "bounce_type": event.bounce_type,
            # The same bounce published through both identity notifications
            # and a configuration set arrives as two SNS messages with one
            # feedbackId: applied once.
            "feedback_id": event.feedback_id,
            "payload": event.payload_json if event.payload_json is not None else Jsonb(event.payload),
            **params,
        },
        effect,
    )
    if is_new and repeat:
        log.info("SES %s %s was already applied (published twice); recorded only", event.event_type, event.feedback_id)
    return is_new, event.event_type


def record_confirmation(conn: Connection, sns_message: dict) -> bool:
    """Keep subscription (un)confirmations in the same table, minus the token."""
    payload = {key: sns_message.get(key) for key in ("Type", "TopicArn", "Timestamp", "Message")}
    is_new, _ = store.record_event(
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
    return is_new


def effect_of(event: SesEvent) -> tuple[str | None, dict]:
    """What the event does to the list: a key of store.EVENT_EFFECTS and its
    parameters, or (None, {}) when it changes nothing (no known recipient
    list, or an event type that only gets recorded)."""
    if not event.addresses:
        return None, {}
    lowered = [address.lower() for address in event.addresses]
    if event.event_type == "Bounce":
        if event.bounce_type == "Permanent":
            return "suppress", {
                "lowered": lowered,
                "status": "bounced",
                "reason": f"permanent bounce: {event.bounce_subtype or 'unspecified'}",
                "status_bounce_type": event.bounce_type,
                "status_bounce_subtype": event.bounce_subtype,
            }
        # Transient and Undetermined: a full mailbox or a busy server
        # deserves another try, but not forever.
        return "soft_bounce", {
            "lowered": lowered,
            "limit": SOFT_BOUNCE_LIMIT,
            "reason": f"{SOFT_BOUNCE_LIMIT} transient bounces in a row",
            "status_bounce_type": event.bounce_type,
            "status_bounce_subtype": event.bounce_subtype,
        }
    if event.event_type == "Complaint":
        return "suppress", {
            "lowered": lowered,
            "status": "complained",
            "reason": f"complaint: {event.complaint_type or 'unspecified'}",
            "status_bounce_type": None,
            "status_bounce_subtype": None,
        }
    if event.event_type == "Delivery":
        return "delivery", {"lowered": lowered, "delivered_id": event.ses_message_id or None}
    if event.event_type == RENDERING_FAILURE:
        reason = event.failure_message or "SES gave no reason"
        return "render_failed", {
            "lowered": lowered,
            "failed_id": event.ses_message_id or None,
            "error": f"SES could not render the email: {reason}",
        }
    return None, {}


def resolution(event: SesEvent) -> dict:
    """What an in-doubt ('unknown') row of the event's mailout and address
    becomes: `resolved_status` and `resolved_error` for store.record_event,
    or {} when the event says nothing about whether SES sent the email (or
    carries no mailout tag to find the row by)."""
    status = RESOLVED_STATUS.get(event.event_type)
    if status is None or event.mailout_id is None or not event.addresses:
        return {}
    error = None
    if event.event_type == RENDERING_FAILURE:
        error = f"SES could not render the email: {event.failure_message or 'SES gave no reason'}"
    elif event.event_type == "Reject":
        error = f"SES rejected the email: {event.failure_message or 'SES gave no reason'}"
    return {"resolved_status": status, "resolved_error": error}


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
            # A bare address, as SES writes nearly all of them, is its own
            # result; parseaddr (tens of microseconds) only for the rest.
            address = value if PLAIN_ADDRESS.fullmatch(value) else parseaddr(value)[1] or value.strip()
            # U+FFFD is what parse_ses_event made of a NUL or a lone
            # surrogate: SES never sent to such an address (it takes only
            # ASCII before the @), and a list that holds one, from an old
            # import read with errors="replace", must not be matched by it.
            if "@" in address and jsontext.REPLACEMENT not in address:
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
