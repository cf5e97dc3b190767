"""The HTTP service: `create_app` builds the Flask app. This package is the only one that imports Flask.

Its modules: webhook.py (POST /send-mailout), notion.py (which mailout a
webhook body names), notion_press.py (a Notion page imported and sent),
background.py (work left running after an answer), status.py (GET /mailouts/<id>), ops.py (/metrics,
/openapi.json, /healthz), unsubscribe.py (the unsubscribe pages),
ses_events.py (POST /ses-events), media.py (GET /media/<sha256>.<ext>, the
images of mailouts), previews.py (GET /outbox/preview-<id>.html, local
mode only), auth.py (the shared secret), pool.py (the database pool),
http.py (body limit, security headers, request ids) and errors.py (every
error as a JSON answer or a page, after problems.py).
"""

from __future__ import annotations

import logging

from flask import Flask

from .. import db, ses, sns
from ..config import Settings
from ..logs import configure_logging
from . import errors, http, media, notion_press, ops, previews, ses_events, status, unsubscribe, webhook
from .pool import POOL, init_pool

MAX_BODY_BYTES = 64 * 1024


def create_app(
    settings: Settings | None = None, *, pool=None, transport=None, fetch_url=None, notion_pages=None
) -> Flask:
    """Build the WSGI app. Tests pass their own settings, pool, transport and
    `fetch_url` (how SNS certificates and subscription URLs are fetched) and
    `notion_pages` (a () -> NotionPages factory); in production they come
    from the environment."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SETTINGS"] = settings
    init_pool(app, pool or db.create_pool(settings.database_url, max_size=settings.db_pool_size))
    app.extensions["transport"] = transport or ses.make_transport(settings)
    app.extensions["sns_fetch"] = fetch_url or sns.fetch_url
    app.extensions["sns_verifier"] = sns.MessageVerifier(
        settings.sns_topic_arns, sns.CertificateCache(app.extensions["sns_fetch"])
    )
    if not settings.sns_topic_arns:
        logging.getLogger(__name__).warning(
            "SNS_TOPIC_ARNS is not set: /ses-events will refuse every message, so bounces and"
            " complaints are not processed"
        )
    notion_press.init_app(app, settings, notion_pages)
    http.register_request_ids(app)
    http.register_body_limit(app)
    http.register_security_headers(app)
    errors.register_error_handlers(app)
    for blueprint in (webhook.bp, status.bp, ops.bp, unsubscribe.bp, ses_events.bp, media.bp):
        app.register_blueprint(blueprint)
    if settings.is_local:
        app.register_blueprint(previews.bp)
    return app


def start_auto_resume(app: Flask):
    """Start this process's auto-resume watcher (sender/watch.py) on the
    app's pool, transport and settings, when AUTO_RESUME is on; gunicorn's
    worker calls it, create_app does not (in-process tests start their own).
    Its runs are written to their Notion pages as the webhook's are."""
    from ..sender.watch import start_watching

    watcher = start_watching(
        app.extensions[POOL], app.extensions["transport"], app.config["SETTINGS"],
        hooks=notion_press.page_reports(app),
    )  # fmt: skip
    app.extensions["auto_resume"] = watcher
    return watcher
