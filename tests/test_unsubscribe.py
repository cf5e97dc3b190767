"""GET /unsubscribe shows a button and changes nothing; POST unsubscribes."""

from __future__ import annotations

import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import render_template

from amazonsender import create_app
from amazonsender.links import UnsubscribeTokens
from tests.support.db import add_subscribers
from tests.support.settings import with_settings

ONE_CLICK = {"data": "List-Unsubscribe=One-Click", "content_type": "application/x-www-form-urlencoded"}


class Page(HTMLParser):
    """The bits of a page the tests look at."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.buttons: list[dict] = []
        self.metas: list[dict] = []
        self.title = ""
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(attrs)
        elif tag in ("button", "input") and attrs.get("type", "submit") == "submit":
            self.buttons.append(attrs)
        elif tag == "meta":
            self.metas.append(attrs)
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def token_for(settings, subscriber_id) -> str:
    return UnsubscribeTokens(settings.unsubscribe_secret).make(subscriber_id)


def subscriber(conn, subscriber_id) -> dict:
    return conn.execute("SELECT * FROM subscribers WHERE id = %s", (subscriber_id,)).fetchone()


def all_subscribers(conn) -> list[dict]:
    return conn.execute("SELECT * FROM subscribers ORDER BY email").fetchall()


def assert_person_page(response):
    """Every page of the flow: HTML, readable on a phone, never cached or leaking its URL."""
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = Page(response.get_data(as_text=True))
    viewports = [meta for meta in page.metas if meta.get("name") == "viewport"]
    assert len(viewports) == 1 and "width=device-width" in viewports[0]["content"]
    return page


@pytest.fixture
def ann(conn):
    (ann_id,) = add_subscribers(conn, ["ann@example.org"], names={"ann@example.org": "Ann"})
    return ann_id


# --- GET -------------------------------------------------------------------


def test_get_shows_a_button_and_changes_nothing(client, conn, settings, ann):
    add_subscribers(conn, ["bob@example.org"])
    before = all_subscribers(conn)
    token = token_for(settings, ann)
    for _ in range(3):  # scanners and previewers fetch the link again and again
        response = client.get(f"/unsubscribe?token={token}")
        assert response.status_code == 200
        page = assert_person_page(response)
        assert len(page.forms) == 1
        assert page.forms[0]["method"].lower() == "post"
        assert len(page.buttons) == 1
    assert all_subscribers(conn) == before
    assert subscriber(conn, ann)["status"] == "active"
    assert subscriber(conn, ann)["status_updated_at"] is None


def test_head_changes_nothing(client, conn, settings, ann):
    assert client.head(f"/unsubscribe?token={token_for(settings, ann)}").status_code == 200
    assert subscriber(conn, ann)["status"] == "active"


def test_the_form_posts_back_to_the_same_url_with_the_token(client, conn, settings, ann):
    token = token_for(settings, ann)
    page = Page(client.get(f"/unsubscribe?token={token}").get_data(as_text=True))
    action = urlsplit(page.forms[0]["action"])
    assert action.path == "/unsubscribe"
    assert parse_qs(action.query) == {"token": [token]}
    # Pressing the button, as a browser would, unsubscribes.
    response = client.post(page.forms[0]["action"], data={}, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_the_form_keeps_a_path_prefix(client, settings, ann):
    token = token_for(settings, ann)
    response = client.get(f"/unsubscribe?token={token}", environ_overrides={"SCRIPT_NAME": "/mail"})
    action = urlsplit(Page(response.get_data(as_text=True)).forms[0]["action"])
    assert action.path == "/mail/unsubscribe"
    assert parse_qs(action.query) == {"token": [token]}


def test_other_query_parameters_are_not_echoed(client, settings, ann):
    token = token_for(settings, ann)
    response = client.get(f"/unsubscribe?token={token}&utm_source=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<script>" not in body and "alert(1)" not in body


# --- POST ------------------------------------------------------------------


def test_post_unsubscribes_with_a_confirmation_page(client, conn, settings, ann):
    (bob,) = add_subscribers(conn, ["bob@example.org"])
    response = client.post(f"/unsubscribe?token={token_for(settings, ann)}")
    assert response.status_code == 200
    assert "Location" not in response.headers
    page = assert_person_page(response)
    assert "unsubscribed" in page.title.lower()
    assert page.forms == []
    row = subscriber(conn, ann)
    assert row["status"] == "unsubscribed"
    assert row["status_updated_at"] is not None
    # Nobody else is touched.
    assert subscriber(conn, bob)["status"] == "active"
    assert subscriber(conn, bob)["status_updated_at"] is None


def test_rfc_8058_one_click_post(client, conn, settings, ann):
    response = client.post(f"/unsubscribe?token={token_for(settings, ann)}", **ONE_CLICK)
    assert response.status_code == 200
    assert not response.headers.get("Location")
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_one_click_post_as_multipart_form_data(client, conn, settings, ann):
    response = client.post(
        f"/unsubscribe?token={token_for(settings, ann)}",
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_the_token_may_come_in_the_form_body(client, conn, settings, ann):
    response = client.post("/unsubscribe", data={"token": token_for(settings, ann)})
    assert response.status_code == 200
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_repeat_post_is_idempotent(client, conn, settings, ann):
    url = f"/unsubscribe?token={token_for(settings, ann)}"
    first = client.post(url, **ONE_CLICK)
    when = subscriber(conn, ann)["status_updated_at"]
    second = client.post(url, **ONE_CLICK)
    third = client.post(url)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert second.get_data() == first.get_data()
    row = subscriber(conn, ann)
    assert row["status"] == "unsubscribed"
    assert row["status_updated_at"] == when


@pytest.mark.parametrize("status", ["bounced", "complained", "unsubscribed"])
def test_a_stronger_status_is_kept(client, conn, settings, status):
    (subscriber_id,) = add_subscribers(conn, ["gone@example.org"], status=status)
    before = subscriber(conn, subscriber_id)
    response = client.post(f"/unsubscribe?token={token_for(settings, subscriber_id)}", **ONE_CLICK)
    assert response.status_code == 200
    assert subscriber(conn, subscriber_id) == before


def test_unknown_subscriber_with_a_valid_token(client, conn, settings, ann):
    before = all_subscribers(conn)
    token = token_for(settings, uuid.uuid4())
    assert client.get(f"/unsubscribe?token={token}").status_code == 200
    response = client.post(f"/unsubscribe?token={token}", **ONE_CLICK)
    assert response.status_code == 200
    assert_person_page(response)
    assert all_subscribers(conn) == before


# --- bad tokens ------------------------------------------------------------


def bad_tokens(settings, subscriber_id) -> dict[str, str | None]:
    good = token_for(settings, subscriber_id)
    payload, signature = good.rsplit(".", 1)
    return {
        "missing": None,
        "empty": "",
        "garbage": "not-a-token",
        "truncated": good[:-4],
        "tampered signature": f"{payload}.{signature[::-1]}",
        "other secret": UnsubscribeTokens("some-other-secret-0123456789").make(subscriber_id),
        "html": '"><script>alert(1)</script>',
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "kind", ["missing", "empty", "garbage", "truncated", "tampered signature", "other secret", "html"]
)
def test_bad_token_gives_a_400_page_and_changes_nothing(client, conn, settings, ann, method, kind):
    before = all_subscribers(conn)
    token = bad_tokens(settings, ann)[kind]
    query = {} if token is None else {"token": token}
    if method == "GET":
        response = client.get("/unsubscribe", query_string=query)
    else:
        response = client.post("/unsubscribe", query_string=query, **ONE_CLICK)
    assert response.status_code == 400
    page = assert_person_page(response)
    assert page.forms == []
    body = response.get_data(as_text=True)
    assert "damaged" in body
    assert "<script>" not in body and "alert(1)" not in body
    assert all_subscribers(conn) == before


# --- rotation --------------------------------------------------------------


@pytest.fixture
def rotated_client(settings, pool, recording_transport):
    rotated = with_settings(
        settings,
        unsubscribe_secret="rotated-unsubscribe-secret-0123456789",
        unsubscribe_old_secrets=(settings.unsubscribe_secret,),
    )
    app = create_app(rotated, pool=pool, transport=recording_transport)
    app.config["TESTING"] = True
    return app.test_client()


def test_a_token_signed_with_an_old_secret_still_works(rotated_client, conn, settings, ann):
    old_token = token_for(settings, ann)
    assert rotated_client.get(f"/unsubscribe?token={old_token}").status_code == 200
    assert subscriber(conn, ann)["status"] == "active"
    assert rotated_client.post(f"/unsubscribe?token={old_token}", **ONE_CLICK).status_code == 200
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_a_new_token_works_after_rotation(rotated_client, conn, ann):
    new_token = UnsubscribeTokens("rotated-unsubscribe-secret-0123456789").make(ann)
    assert rotated_client.post(f"/unsubscribe?token={new_token}").status_code == 200
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_an_old_secret_no_longer_listed_is_refused(settings, pool, recording_transport, conn, ann):
    app = create_app(
        with_settings(settings, unsubscribe_secret="rotated-unsubscribe-secret-0123456789"),
        pool=pool,
        transport=recording_transport,
    )
    response = app.test_client().post(f"/unsubscribe?token={token_for(settings, ann)}", **ONE_CLICK)
    assert response.status_code == 400
    assert subscriber(conn, ann)["status"] == "active"


# --- the page --------------------------------------------------------------


def test_the_page_escapes_what_it_shows(app):
    # Nothing a visitor sends reaches the page unchecked (see the tests above),
    # so the templates are rendered directly with hostile values.
    with app.test_request_context("/"):
        html = render_template("unsubscribe.html", title="<b>T&C</b>", action='/unsubscribe?token=a"><x y="&z=1')
        message = render_template("message.html", title="<i>t</i>", message="<script>alert(1)</script>")
    assert "<b>" not in html and "&lt;b&gt;T&amp;C&lt;/b&gt;" in html
    assert Page(html).forms[0]["action"] == '/unsubscribe?token=a"><x y="&z=1'
    assert "<script>" not in message and "&lt;script&gt;" in message
    assert "<i>" not in message


def test_other_methods_get_an_html_page_not_json(client, settings, ann):
    response = client.put(f"/unsubscribe?token={token_for(settings, ann)}")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


# --- the newsletter's name (NEWSLETTER_NAME) --------------------------------

HOSTILE_NAME = "Zoë's <b>Weekly</b> & Co"
ESCAPED_NAME = "Zoë&#39;s &lt;b&gt;Weekly&lt;/b&gt; &amp; Co"


@pytest.fixture
def named_client(settings, pool, recording_transport):
    app = create_app(with_settings(settings, newsletter_name=HOSTILE_NAME), pool=pool, transport=recording_transport)
    app.config["TESTING"] = True
    return app.test_client()


def shows_the_name(response) -> bool:
    body = response.get_data(as_text=True)
    assert "<b>Weekly" not in body  # escaped by the template engine, never raw
    return ESCAPED_NAME in body


def test_the_confirmation_page_names_the_newsletter(named_client, conn, settings, ann):
    response = named_client.get(f"/unsubscribe?token={token_for(settings, ann)}")
    assert response.status_code == 200
    page = assert_person_page(response)
    assert page.title == f"Unsubscribe from {HOSTILE_NAME}"
    assert shows_the_name(response)
    assert f"stop receiving {ESCAPED_NAME}." in response.get_data(as_text=True)
    assert subscriber(conn, ann)["status"] == "active"


def test_the_result_page_names_the_newsletter(named_client, conn, settings, ann):
    response = named_client.post(f"/unsubscribe?token={token_for(settings, ann)}", **ONE_CLICK)
    assert response.status_code == 200
    assert shows_the_name(response)
    assert f"You will not receive {ESCAPED_NAME} any more" in response.get_data(as_text=True)
    assert subscriber(conn, ann)["status"] == "unsubscribed"


def test_the_error_pages_name_the_newsletter(named_client, settings, ann):
    bad = named_client.get("/unsubscribe?token=not-a-token")
    assert bad.status_code == 400 and "damaged" in bad.get_data(as_text=True)
    assert shows_the_name(bad)
    wrong_method = named_client.put(f"/unsubscribe?token={token_for(settings, ann)}")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "text/html"
    assert shows_the_name(wrong_method)


def test_without_a_name_the_pages_say_our_newsletter(client, settings, ann):
    token = token_for(settings, ann)
    confirm = client.get(f"/unsubscribe?token={token}")
    assert Page(confirm.get_data(as_text=True)).title == "Unsubscribe from our newsletter"
    assert "stop receiving our newsletter." in confirm.get_data(as_text=True)
    done = client.post(f"/unsubscribe?token={token}", **ONE_CLICK)
    assert "You will not receive our newsletter any more" in done.get_data(as_text=True)
    for response in (confirm, done, client.get("/unsubscribe?token=x")):
        assert 'class="newsletter"' not in response.get_data(as_text=True)
