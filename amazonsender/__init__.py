"""AmazonSender: sends one newsletter to every active subscriber through
Amazon SES, exactly once, and keeps the list clean."""

from __future__ import annotations

import logging

from flask import Flask

from .config import Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, *, pool=None, transport=None) -> Flask:
    """Build the WSGI app. Tests pass their own settings, pool and transport;
    in production all three come from the environment."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)

    from . import api, db, ses, unsubscribe, web

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SETTINGS"] = settings
    db.init_app(app, pool or db.create_pool(settings.database_url, max_size=settings.db_pool_size))
    app.extensions["transport"] = transport or ses.make_transport(settings)
    web.register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(unsubscribe.bp)
    return app


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level.upper())
