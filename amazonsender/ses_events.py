"""POST /ses-events: where an Amazon SNS HTTPS subscription delivers SES
bounces, complaints and deliveries.

Answers: 200 processed or already seen; 400 malformed or badly signed; 403
topic not allowed (or none configured); 503 when a certificate or the
subscription URL cannot be fetched, so SNS tries again later.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request

from . import events, metrics
from .db import get_pool
from .sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    CertificateUnavailable,
    InvalidMessage,
    TopicNotAllowed,
)
from .web import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("ses_events", __name__)


@bp.post("/ses-events")
def receive():
    verifier = current_app.extensions["sns_verifier"]
    if not verifier.topics:
        log.error("SNS message refused: SNS_TOPIC_ARNS is not set, so no topic is trusted (see README)")
        raise ApiError(403, "this endpoint trusts no SNS topic yet: set SNS_TOPIC_ARNS")

    # SNS posts JSON as text/plain: read the body whatever the content type.
    try:
        message = json.loads(request.get_data())
        # JSON escapes can spell an unpaired surrogate ("\ud800"), which is
        # not text: the signed string could not be encoded to check it.
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError):
        raise ApiError(400, "the body is not JSON") from None
    try:
        verifier.verify(message)
    except InvalidMessage as exc:
        metrics.SNS_MESSAGES.labels("unverified", "refused").inc()
        log.warning("SNS message refused: %s", exc)
        raise ApiError(400, f"invalid SNS message: {exc}") from None
    except TopicNotAllowed as exc:
        metrics.SNS_MESSAGES.labels("unverified", "refused").inc()
        log.warning("SNS message refused: topic %s is not in SNS_TOPIC_ARNS", exc)
        raise ApiError(403, "this topic is not allowed") from None
    except CertificateUnavailable as exc:
        log.warning("SNS signing certificate unavailable: %s", exc)
        raise ApiError(503, "the signing certificate cannot be fetched now; try again") from None

    kind = message["Type"]
    if kind == SUBSCRIPTION_CONFIRMATION:
        try:
            current_app.extensions["sns_fetch"](message["SubscribeURL"])
        except CertificateUnavailable as exc:
            log.warning("could not confirm the SNS subscription: %s", exc)
            raise ApiError(503, "could not confirm the subscription now; try again") from None
        log.info("confirmed the SNS subscription to %s", message["TopicArn"])

    with get_pool().connection() as conn:
        if kind == NOTIFICATION:
            is_new, event_type = events.process_notification(conn, message)
        else:
            is_new, event_type = events.record_confirmation(conn, message), kind
    metrics.SNS_MESSAGES.labels(event_type, "processed" if is_new else "duplicate").inc()
    if kind != NOTIFICATION and kind != SUBSCRIPTION_CONFIRMATION:
        log.warning("SNS subscription to %s was removed (UnsubscribeConfirmation)", message["TopicArn"])
    return jsonify(status="processed" if is_new else "duplicate"), 200
