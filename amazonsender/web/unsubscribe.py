"""The unsubscribe link: GET shows a button, only POST acts.

Mail scanners and link previewers fetch every URL in a message, so a GET that
unsubscribed would unsubscribe people who never asked. The button posts to
the same URL, and so does a mail client's RFC 8058 one-click request
(`List-Unsubscribe=One-Click`), which must get a 200 and never a redirect.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template, request, url_for

from .. import store
from ..db import single_statement
from ..links import BadToken, UnsubscribeTokens
from .errors import answer
from .pool import get_pool

log = logging.getLogger(__name__)

bp = Blueprint("unsubscribe", __name__)

UNSUBSCRIBE_TOKENS = "unsubscribe_tokens"
UNSUBSCRIBED_PAGE = "unsubscribed_page"

# The URL holds the reader's token: no cache keeps the page. (No Referer and
# the Content-Security-Policy come with every answer: http.register_security_headers.)
@bp.after_request
def no_caching(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


# App-wide, not just this blueprint's views: the error pages are rendered by
# errors.error_response, and a 405 or 404 under /unsubscribe belongs to no
# blueprint. These pages are the app's only templates.
@bp.app_context_processor
def newsletter_name():
    """The pages name the newsletter (NEWSLETTER_NAME) when it is set."""
    return {"newsletter_name": current_app.config["SETTINGS"].newsletter_name}


def the_newsletter() -> str:
    return current_app.config["SETTINGS"].newsletter_name or "our newsletter"


@bp.get("/unsubscribe")
def confirm():
    token = request.args.get("token", "")
    read_subscriber_id(token)
    # The button posts back to this URL with the token. url_for keeps a path
    # prefix the app may be mounted under (SCRIPT_NAME) and echoes no other
    # query parameter into the page.
    action = url_for("unsubscribe.unsubscribe", token=token)
    return render_template("unsubscribe.html", title=f"Unsubscribe from {the_newsletter()}", action=action)


@bp.post("/unsubscribe")
def unsubscribe():
    token = request.args.get("token") or request.form.get("token", "")
    subscriber_id = read_subscriber_id(token)
    # One UPDATE: no transaction around it.
    with single_statement(get_pool()) as conn:
        changed = store.unsubscribe(conn, subscriber_id)
    if changed:
        log.info("subscriber %s unsubscribed", subscriber_id)
    return unsubscribed_page()


def unsubscribed_page() -> str:
    """The same page for everybody, so it is rendered once per app."""
    page = current_app.extensions.get(UNSUBSCRIBED_PAGE)
    if page is None:
        page = current_app.extensions[UNSUBSCRIBED_PAGE] = render_template(
            "message.html",
            title="You are unsubscribed",
            message=f"You will not receive {the_newsletter()} any more. Sorry to see you go.",
        )
    return page


def read_subscriber_id(token: str):
    try:
        return unsubscribe_tokens().read(token)
    except BadToken as exc:
        raise answer(exc) from None


def unsubscribe_tokens() -> UnsubscribeTokens:
    """The app's token reader, made once for its settings."""
    settings = current_app.config["SETTINGS"]
    cached = current_app.extensions.get(UNSUBSCRIBE_TOKENS)
    if cached is None or cached[0] is not settings:
        cached = (settings, UnsubscribeTokens(settings.unsubscribe_secret, settings.unsubscribe_old_secrets))
        current_app.extensions[UNSUBSCRIBE_TOKENS] = cached
    return cached[1]
