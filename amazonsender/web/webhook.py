"""The webhook that starts a mailout, its status, and the health check."""

from __future__ import annotations

import contextvars
import hmac
import logging
import threading
from pathlib import Path
from uuid import UUID

from flask import Blueprint, Response, current_app, jsonify, request

from . import jsontext, metrics, sender, store
from .db import get_pool
from .web import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

HEALTH_CHECK_SECONDS = 2.0
TRUE_WORDS = ("1", "true", "yes")
MAX_TEST_RECIPIENTS = 20
OPENAPI_DOCUMENT = Path(__file__).resolve().parent / "openapi.json"


@bp.post("/send-mailout")
def send_mailout():
    settings = current_app.config["SETTINGS"]
    payload, parse_error = read_json_body()
    require_secret(settings.executor_shared_secret, payload)
    if parse_error:
        raise ApiError(400, parse_error)
    mailout_id = extract_mailout_id(payload, settings.notion_mailout_property)
    if payload.get("test") is True or request.args.get("test", "").lower() in TRUE_WORDS:
        return test_send(settings, mailout_id, payload.get("to"))
    wait = payload.get("wait") is True or request.args.get("wait", "").lower() in TRUE_WORDS

    pool = get_pool()
    transport = current_app.extensions["transport"]
    try:
        rate = sender.check_mailout_can_start(pool, transport, settings, mailout_id)
        claim = sender.claim_mailout(pool, mailout_id, rate_per_sec=rate)
    except sender.MailoutNotFound:
        raise ApiError(404, f"no mailout with id {mailout_id}") from None
    except sender.MailoutNotReady as exc:
        raise ApiError(409, f"mailout {mailout_id} is '{exc.status}', not 'ready'", status=exc.status) from None
    except sender.MailoutInvalid as exc:
        raise ApiError(422, str(exc)) from None
    except sender.AccountCannotSend as exc:
        raise ApiError(409, str(exc), status="ready") from None
    except sender.SesUnavailable as exc:
        raise ApiError(503, str(exc)) from None

    if wait:
        summary = sender.send_claimed_mailout(pool, transport, settings, claim)
        return jsonify(summary.to_dict()), 200

    start_in_background(current_app._get_current_object(), pool, transport, settings, claim)
    return (
        jsonify(
            mailout_id=str(mailout_id),
            status="sending",
            recipients=claim.recipients,
            status_url=f"{settings.app_base_url}/mailouts/{mailout_id}",
            message="sending started; GET status_url (with the same secret) to follow it",
        ),
        202,
    )


def test_send(settings, mailout_id: UUID, to):
    """`"test": true`: the mailout to TEST_EMAILS (or the body's "to" list),
    subject prefixed [TEST]; its state and ledger stay as they are."""
    if to is None:
        addresses = list(settings.test_emails)
    elif isinstance(to, list) and all(isinstance(a, str) for a in to):
        addresses = [a.strip() for a in to if a.strip()]
    else:
        raise ApiError(400, '"to" must be a list of email addresses')
    bad = [a for a in addresses if not sender.is_one_test_address(a)]
    if bad:
        raise ApiError(400, f'not an email address in "to": {bad[0][:80]!r}')
    if not addresses:
        raise ApiError(400, 'no test recipients: set TEST_EMAILS or send "to": [addresses]')
    if len(addresses) > MAX_TEST_RECIPIENTS:
        raise ApiError(400, f"a test send goes to at most {MAX_TEST_RECIPIENTS} addresses")
    transport = current_app.extensions["transport"]
    try:
        results = sender.send_test(get_pool(), transport, settings, mailout_id, addresses)
    except sender.MailoutNotFound:
        raise ApiError(404, f"no mailout with id {mailout_id}") from None
    except sender.MailoutInvalid as exc:
        raise ApiError(422, str(exc)) from None
    return jsonify(mailout_id=str(mailout_id), test=True, results=results), 200


@bp.get("/mailouts/<mailout_id>")
def mailout_status(mailout_id: str):
    settings = current_app.config["SETTINGS"]
    require_secret(settings.executor_shared_secret, {})
    mailout_uuid = parse_uuid(mailout_id, "the mailout id in the URL")
    with get_pool().connection() as conn:
        mailout = store.get_mailout(conn, mailout_uuid)
        if mailout is None:
            raise ApiError(404, f"no mailout with id {mailout_uuid}")
        counts = store.count_by_status(conn, mailout_uuid)
        reputation = store.reputation(conn, mailout_uuid)
        rate = store.sent_last_minute(conn, mailout_uuid) / 60.0
    queued = counts.get("queued", 0) + counts.get("sending", 0)
    sent = counts.get("sent", 0) + counts.get("delivered", 0)
    age = mailout["heartbeat_age_seconds"]
    return jsonify(
        mailout_id=str(mailout_uuid),
        status=mailout["status"],
        subject=mailout["subject"],
        recipients=mailout["recipients"],
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


@bp.after_app_request
def count_webhook_answers(response):
    if request.path == "/send-mailout" and request.method == "POST":
        metrics.WEBHOOKS.labels(str(response.status_code)).inc()
    return response


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_document():
    return current_app.response_class(OPENAPI_DOCUMENT.read_bytes(), content_type="application/json")


@bp.get("/healthz")
def healthz():
    try:
        with get_pool().connection(timeout=HEALTH_CHECK_SECONDS) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        log.warning("health check: database unreachable", exc_info=True)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


def read_json_body() -> tuple[dict, str | None]:
    """Returns (payload, error). The body is read whatever its content type:
    callers such as Notion do not always send application/json."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}, "the request body is empty; send a JSON object"
    try:
        payload = jsontext.loads(raw)
    except jsontext.TooDeep as exc:
        return {}, f"the request body {exc}"
    except (ValueError, UnicodeDecodeError):
        return {}, "the request body is not valid JSON"
    if not isinstance(payload, dict):
        return {}, "the request body must be a JSON object"
    return payload, None


def require_secret(secret: str, payload: dict) -> None:
    """Accept `Authorization: Bearer <secret>` or the body's `auth_token`,
    compared in constant time."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, presented = header.partition(" ")
        presented = presented.strip() if scheme.lower() == "bearer" else ""
    else:
        presented = payload.get("auth_token")
    if not isinstance(presented, str) or not presented:
        raise ApiError(401, "missing secret: send 'Authorization: Bearer <secret>' or 'auth_token'")
    # surrogatepass: JSON can carry an unpaired surrogate ("\ud800"), which
    # plain UTF-8 refuses to encode; such a token is simply wrong.
    if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")):
        raise ApiError(401, "wrong secret")


def is_notion_body(payload: dict) -> bool:
    return "mailout_id" not in payload and isinstance(payload.get("data"), dict)


def extract_mailout_id(payload: dict, notion_property: str) -> UUID:
    if not is_notion_body(payload):
        value = payload.get("mailout_id")
        if value is None:
            raise ApiError(400, "mailout_id is missing from the body")
        return parse_uuid(value, "mailout_id")

    what = f"Notion property '{notion_property}'"
    properties = payload["data"].get("properties")
    if not isinstance(properties, dict):
        raise ApiError(400, f"the Notion page has no properties, so {what} is missing")
    if notion_property not in properties:
        raise ApiError(400, f"{what} is missing from the page (set NOTION_MAILOUT_PROPERTY to its name)")
    value = notion_property_text(properties[notion_property])
    if value is None:
        raise ApiError(400, f"{what} must be text, a title or a formula that gives text")
    return parse_uuid(value, what)


def notion_property_text(prop) -> str | None:
    """The text of a Notion page property, for the kinds a mailout id can be
    kept in: rich_text, title, a formula giving a string, or a plain string."""
    if isinstance(prop, str):
        return prop
    if not isinstance(prop, dict):
        return None
    kind = prop.get("type")
    if kind in ("rich_text", "title") and isinstance(prop.get(kind), list):
        return "".join(rich_text_piece(piece) for piece in prop[kind])
    if kind == "formula" and isinstance(prop.get("formula"), dict):
        formula = prop["formula"]
        if formula.get("type") == "string" and isinstance(formula.get("string"), str):
            return formula["string"]
        return None
    if kind in ("url", "email", "phone_number") and isinstance(prop.get(kind), str):
        return prop[kind]
    return None


def rich_text_piece(piece) -> str:
    if not isinstance(piece, dict):
        return ""
    if isinstance(piece.get("plain_text"), str):
        return piece["plain_text"]
    text = piece.get("text")
    if isinstance(text, dict) and isinstance(text.get("content"), str):
        return text["content"]
    return ""


def parse_uuid(value, what: str) -> UUID:
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a string holding a UUID")
    if not value.strip():
        raise ApiError(400, f"{what} is empty")
    try:
        return UUID(value.strip())
    except ValueError:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ApiError(400, f"{what} is not a UUID: {shown!r}") from None


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def start_in_background(app, pool, transport, settings, claim: sender.Claim) -> threading.Thread:
    """Send in this worker process after the 202 has gone out. The claim and
    the snapshot are committed already, so the mailout's state is safe in the
    database whatever happens to this thread."""

    def run():
        try:
            summary = sender.send_claimed_mailout(pool, transport, settings, claim)
            log.info(
                "mailout %s finished: %s",
                claim.mailout_id,
                summary.status,
                extra={"event": "finished", "mailout_id": str(claim.mailout_id), "counts": summary.to_dict()},
            )
        except Exception:  # noqa: BLE001 - a thread's error must reach the log
            log.exception("mailout %s: background send crashed", claim.mailout_id)

    # A copy of the request's context carries its request id into the logs.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(run,), name=f"mailout-{claim.mailout_id}", daemon=True
    )
    running = [t for t in app.extensions.get("background_sends", []) if t.is_alive()]
    app.extensions["background_sends"] = [*running, thread]
    thread.start()
    return thread
