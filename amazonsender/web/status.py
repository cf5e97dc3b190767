"""GET /mailouts/<id> and POST /mailouts/<id>/pause: where a mailout stands, and a person's pause, for whoever holds the webhook's secret."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .. import store
from .auth import require_secret
from ..sender.errors import MailoutNotFound, MailoutNotPausable
from ..sender.pause import pause_mailout
from ..sender.watch import verdict
from . import notion_press
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
    resumes = verdict(mailout, settings, mailout["db_now"])
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
        # In-doubt rows ('unknown') that an SES event resolved since.
        resolved_from_events=mailout["resolved_from_events"],
        # Why its last run stopped (a word of sender/stop.py's StopReason),
        # and whether it resumes by itself: null when it is not interrupted.
        stop_reason=mailout["stop_reason"],
        auto_resume=resumes.to_dict() if resumes else None,
        auto_resume_attempts=mailout["auto_resume_attempts"],
    )


@bp.post("/mailouts/<mailout_id>/pause")
def pause(mailout_id: str):
    """A person's pause: never resumed by itself; `mailout resume` resumes it."""
    settings = current_app.config["SETTINGS"]
    require_secret(settings.executor_shared_secret, {})
    mailout_uuid = parse_uuid(mailout_id, "the mailout id in the URL")
    try:
        was = pause_mailout(get_pool(), mailout_uuid)
    except (MailoutNotFound, MailoutNotPausable) as exc:
        raise answer(exc, mailout_id=mailout_uuid) from None
    reports = notion_press.page_reports(current_app)
    if reports is not None:
        reports.paused(mailout_uuid)
    return jsonify(
        mailout_id=str(mailout_uuid),
        status="paused",
        was=was,
        stop_reason="operator",
        message="paused; a run sending it stops after the emails in flight. Resume by hand:"
        f" python -m amazonsender mailout resume {mailout_uuid}",
    )


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None
