"""AmazonSender: sends one newsletter to every active subscriber through
Amazon SES, exactly once, and keeps the list clean."""

from __future__ import annotations

import logging

from flask import Flask

from .config import Settings
from .logs import configure_logging

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, *, pool=None, transport=None, fetch_url=None) -> Flask:
    """Build the WSGI app. Tests pass their own settings, pool, transport and
    `fetch_url` (how SNS certificates and subscription URLs are fetched); in
    production they come from the environment."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)

    from . import api, db, ses, ses_events, sns, unsubscribe, web

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SETTINGS"] = settings
    db.init_app(app, pool or db.create_pool(settings.database_url, max_size=settings.db_pool_size))
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
    web.register_request_ids(app)
    web.register_body_limit(app)
    web.register_security_headers(app)
    web.register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(unsubscribe.bp)
    app.register_blueprint(ses_events.bp)
    return app


