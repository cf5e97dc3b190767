"""POST /ses-events: where an Amazon SNS HTTPS subscription delivers SES
bounces, complaints, deliveries and rendering failures.

Answers: 200 processed or already seen; 400 malformed (JSON nested too
deeply included, in the body or in a signed Message) or badly signed; 403
topic not allowed (or none configured); 503 when a certificate or the
subscription URL cannot be fetched, so SNS tries again later. A NUL or a
lone surrogate in a signed message is no reason to refuse it: it is stored
as U+FFFD (jsontext.storable), see events.parse_ses_event.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, request

from .. import events, jsontext, metrics
from ..db import single_statement
from ..sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    CertificateUnavailable,
    InvalidMessage,
    TopicNotAllowed,
)
from .errors import ApiError, answer
from .pool import get_pool

log = logging.getLogger(__name__)

bp = Blueprint("ses_events", __name__)

# The two answers to a message that was processed, as jsonify writes them
# (the same for every message, so written once).
ANSWERS = {
    True: json.dumps({"status": "processed"}, separators=(",", ":")).encode() + b"\n",
    False: json.dumps({"status": "duplicate"}, separators=(",", ":")).encode() + b"\n",
}


@bp.post("/ses-events")
def receive():
    verifier = current_app.extensions["sns_verifier"]
    if not verifier.topics:
        log.error("SNS message refused: SNS_TOPIC_ARNS is not set, so no topic is trusted (see docs/ses-sns.md)")
        raise ApiError(403, "this endpoint trusts no SNS topic yet: set SNS_TOPIC_ARNS")

    # SNS posts JSON as text/plain: read the body whatever the content type.
    body = request.get_data(cache=True)
    try:
        message = read_json(body)
    except jsontext.TooDeep as exc:
        raise answer(exc, where="the body") from None
    except (ValueError, UnicodeError):
        raise ApiError(400, "the body is not JSON") from None
    try:
        verifier.verify(message)
    except InvalidMessage as exc:
        metrics.SNS_MESSAGES.labels("unverified", "refused").inc()
        log.warning("SNS message refused: %s", exc)
        raise answer(exc) from None
    except TopicNotAllowed as exc:
        metrics.SNS_MESSAGES.labels("unverified", "refused").inc()
        log.warning("SNS message refused: topic %s is not in SNS_TOPIC_ARNS", exc)
        raise answer(exc) from None
    except CertificateUnavailable as exc:
        log.warning("SNS signing certificate unavailable: %s", exc)
        raise answer(exc) from None

    kind = message["Type"]
    event = read_event(message) if kind == NOTIFICATION else None
    if kind == SUBSCRIPTION_CONFIRMATION:
        try:
            current_app.extensions["sns_fetch"](message["SubscribeURL"])
        except CertificateUnavailable as exc:
            log.warning("could not confirm the SNS subscription: %s", exc)
            raise ApiError(503, "could not confirm the subscription now; try again") from None
        log.info("confirmed the SNS subscription to %s", message["TopicArn"])

    # The envelope's strings as they can be stored (its MessageId, a
    # confirmation's Message), once it has been checked and used as it came.
    message = jsontext.storable(message, body)
    # What a message does is one statement: no transaction around it.
    with single_statement(get_pool()) as conn:
        if kind == NOTIFICATION:
            is_new, event_type = events.process_notification(conn, message, event)
        else:
            is_new, event_type = events.record_confirmation(conn, message), kind
    metrics.SNS_MESSAGES.labels(event_type, "processed" if is_new else "duplicate").inc()
    if kind != NOTIFICATION and kind != SUBSCRIPTION_CONFIRMATION:
        log.warning("SNS subscription to %s was removed (UnsubscribeConfirmation)", message["TopicArn"])
    return current_app.response_class(ANSWERS[is_new], status=200, mimetype="application/json")


def read_event(message: dict) -> events.SesEvent:
    """The SES event in a verified notification's Message, read before a
    database connection is taken. Message is signed, so only AWS (or someone
    who got SES to publish it) can send one that nests too deeply: it is
    refused like a malformed body, and nothing is recorded."""
    try:
        return events.parse_ses_event(message["Message"])
    except jsontext.TooDeep as exc:
        metrics.SNS_MESSAGES.labels("Unknown", "refused").inc()
        log.warning("SNS message %s refused: its Message %s", message["MessageId"], exc)
        raise answer(exc, where="the SES event in Message") from None


def read_json(body: bytes):
    """The parsed body; ValueError or UnicodeError unless it is JSON text.

    JSON escapes can spell an unpaired surrogate ("\\ud800"), which is not
    text: the signed string could not be encoded to check it, nor the
    payload stored. json.loads also lets UTF-8-encoded surrogates through
    (and reads UTF-16 and UTF-32). Only a body with a \\u escape, a 0xED
    byte (how UTF-8 begins U+D000 to U+DFFF) or not in UTF-8 can hold one:
    such a body is written out again to find out. A body nested too deeply
    is refused with jsontext.TooDeep, itself a ValueError."""
    message = jsontext.loads(body)
    if b"\\u" in body or b"\xed" in body or json.detect_encoding(body) != "utf-8":
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    return message
