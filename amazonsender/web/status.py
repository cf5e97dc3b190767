"""GET /mailouts/<id>: where a mailout stands, for whoever holds the webhook's secret."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .. import store
from .auth import require_secret
from ..sender.errors import MailoutNotFound
from .errors import answer
from .notion import parse_uuid
from .pool import get_pool

bp = Blueprint("status", __name__)


@bp.get("/mailouts/<mailout_id>")
def mailout_status(mailout_id: str):
    settings = current_app.config["SETTINGS"]
    require_secret(settings.executor_shared_secret, {})
    mailout_uuid = parse_uuid(mailout_id, "the mailout id in the URL")
    with get_pool().connection() as conn:
        mailout = store.get_mailout(conn, mailout_uuid)
        if mailout is None:
            raise answer(MailoutNotFound(str(mailout_uuid)), mailout_id=mailout_uuid)
        counts = store.count_by_status(conn, mailout_uuid)
        progress = store.queue_progress(conn, mailout_uuid)
        reputation = store.reputation(conn, mailout_uuid)
        rate = store.sent_last_minute(conn, mailout_uuid) / 60.0
    # With the recipients the run has still to queue (its snapshot's pages).
    queued = counts.get("queued", 0) + counts.get("sending", 0) + (progress["to_queue"] if progress else 0)
    sent = counts.get("sent", 0) + counts.get("delivered", 0)
    age = mailout["heartbeat_age_seconds"]
    return jsonify(
        mailout_id=str(mailout_uuid),
        status=mailout["status"],
        subject=mailout["subject"],
        recipients=mailout["recipients"],
        # While the run is still queuing recipients after the claim, page by
        # page: the rows queued so far (null once every recipient is queued).
        queuing=bool(progress and progress["queuing"]),
        queued_so_far=progress["queued_rows"] if progress and progress["queuing"] else None,
        counts=counts,
        sent=sent,
        remaining=queued,
        bounces=reputation["bounces"],
        complaints=reputation["complaints"],
        bounce_rate=round(reputation["bounces"] / sent, 4) if sent else None,
        complaint_rate=round(reputation["complaints"] / sent, 4) if sent else None,
        # Emails per second over the last minute, and the time left at that pace.
        rate_per_sec=round(rate, 2),
        eta_seconds=round(queued / rate) if rate and mailout["status"] == "sending" else None,
        started_at=iso(mailout["started_at"]),
        sent_at=iso(mailout["sent_at"]),
        heartbeat_at=iso(mailout["heartbeat_at"]),
        heartbeat_age_seconds=round(float(age), 1) if age is not None else None,
        error=mailout["error"],
    )


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None
