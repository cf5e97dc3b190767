"""POST /send-mailout: the webhook that starts a mailout, or sends it to test addresses."""

from __future__ import annotations

import logging
import threading
from uuid import UUID

from flask import Blueprint, current_app, jsonify, request

from .. import jsontext, metrics, sender, store
from . import notion_press
from .auth import require_secret
from .background import run_in_background
from .errors import ApiError, answer
from .notion import extract_event_id, extract_mailout_id, page_to_import
from .pool import get_pool

log = logging.getLogger(__name__)

bp = Blueprint("webhook", __name__)

TRUE_WORDS = ("1", "true", "yes")
MAX_TEST_RECIPIENTS = 20


@bp.post("/send-mailout")
def send_mailout():
    settings = current_app.config["SETTINGS"]
    payload, parse_error = read_json_body()
    require_secret(settings.executor_shared_secret, payload)
    if parse_error:
        raise ApiError(400, parse_error)
    test = payload.get("test") is True or request.args.get("test", "").lower() in TRUE_WORDS
    wait = payload.get("wait") is True or request.args.get("wait", "").lower() in TRUE_WORDS
    event_id = extract_event_id(payload)
    page_id = page_to_import(payload, settings.notion_mailout_property) if settings.notion_token else None
    if page_id is not None:
        if test:
            return notion_press.test_page(settings, page_id, test_addresses(settings, payload.get("to")))
        return notion_press.press(settings, page_id, event_id, wait=wait)
    mailout_id = extract_mailout_id(payload, settings.notion_mailout_property)
    if test:
        return test_send(settings, mailout_id, payload.get("to"))

    pool = get_pool()
    transport = current_app.extensions["transport"]
    try:
        rate = sender.check_mailout_can_start(pool, transport, settings, mailout_id)
        claim = sender.claim_mailout(pool, mailout_id, rate_per_sec=rate, event_id=event_id)
    except sender.MailoutNotReady as exc:
        replay = event_id and retried_claim(pool, settings, mailout_id, event_id)
        if replay:
            return replay
        raise answer(exc, mailout_id=mailout_id) from None
    except sender.CANNOT_START as exc:
        raise answer(exc, mailout_id=mailout_id) from None

    finished = notion_press.report_run(claim.mailout_id)
    if wait:
        summary = sender.send_claimed_mailout(pool, transport, settings, claim)
        if finished:
            finished(summary)
        return jsonify(summary.to_dict()), 200

    start_in_background(current_app._get_current_object(), pool, transport, settings, claim, finished)
    return sending_started(settings, mailout_id, claim.recipients)


def sending_started(settings, mailout_id: UUID, recipients: int | None):
    """The 202 of a claimed mailout, and of every retry of the request that
    claimed it."""
    return (
        jsonify(
            mailout_id=str(mailout_id),
            status="sending",
            recipients=recipients,
            status_url=f"{settings.app_base_url}/mailouts/{mailout_id}",
            message="sending started; GET status_url (with the same secret) to follow it",
        ),
        202,
    )


def retried_claim(pool, settings, mailout_id: UUID, event_id: str):
    """Notion retries a webhook that failed or timed out, with the same
    source.event_id, and pauses the automation when the retries fail too.
    If that very event claimed the mailout, the first request went through:
    answered as it was (whatever the run has done since), not with a 409.
    Any other request for a claimed mailout gets its 409 (None here)."""
    with pool.connection() as conn:
        claimed = store.claimed_by_event(conn, mailout_id, event_id)
    if claimed is None:
        return None
    log.info(
        "mailout %s: a retry of the request that claimed it, answered as the first",
        mailout_id,
        extra={"event": "claim_retried", "mailout_id": str(mailout_id)},
    )
    return sending_started(settings, mailout_id, claimed["recipients"])


def test_send(settings, mailout_id: UUID, to):
    """`"test": true`: the mailout to TEST_EMAILS (or the body's "to" list),
    subject prefixed [TEST]; its state and ledger stay as they are."""
    addresses = test_addresses(settings, to)
    transport = current_app.extensions["transport"]
    try:
        results = sender.send_test(get_pool(), transport, settings, mailout_id, addresses)
    except (sender.MailoutNotFound, sender.MailoutInvalid) as exc:
        raise answer(exc, mailout_id=mailout_id) from None
    return jsonify(mailout_id=str(mailout_id), test=True, results=results), 200


def test_addresses(settings, to) -> list[str]:
    """Where a test goes: the body's "to" list, else TEST_EMAILS; checked."""
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
    return addresses


@bp.after_app_request
def count_webhook_answers(response):
    if request.path == "/send-mailout" and request.method == "POST":
        metrics.WEBHOOKS.labels(str(response.status_code)).inc()
    return response


def read_json_body() -> tuple[dict, str | None]:
    """Returns (payload, error). The body is read whatever its content type:
    callers such as Notion do not always send application/json."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}, "the request body is empty; send a JSON object"
    try:
        payload = jsontext.loads(raw)
    except jsontext.TooDeep as exc:
        return {}, answer(exc, where="the request body").message
    except (ValueError, UnicodeDecodeError):
        return {}, "the request body is not valid JSON"
    if not isinstance(payload, dict):
        return {}, "the request body must be a JSON object"
    return payload, None


def start_in_background(app, pool, transport, settings, claim: sender.Claim, finished=None) -> threading.Thread:
    """Queue and send in this worker process after the 202 has gone out. The
    claim is committed already and each page of the snapshot commits with its
    cursor, so the mailout's state is safe in the database whatever happens
    to this thread: a resume goes on from there. `finished`: see
    sender.send_in_thread."""

    def run():
        sender.send_in_thread(pool, transport, settings, claim, what="background send", finished=finished)

    return run_in_background(app, f"mailout-{claim.mailout_id}", run)
