"""`mailout preview` of the sample Notion page, and GET /outbox/preview-<id>.html: shown by the local service, absent in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from amazonsender import create_app
from tests.support.notion_flow import newsletter_page
from tests.support.notion_pages import sample_page
from tests.support.notion_standin import NotionStandIn
from tests.support.settings import with_settings

MAILOUT_ID = "3f2c9a4e-0000-4000-8000-000000000000"


@pytest.fixture
def notion(invoke):
    with NotionStandIn() as standin:
        invoke.env.update(NOTION_TOKEN=standin.token, NOTION_BASE_URL=standin.url)
        yield standin


def test_the_sample_page_imported_then_previewed_is_an_html_file_of_its_content(invoke, notion, tmp_path):
    invoke.env["OUTBOX_DIR"] = str(tmp_path / "outbox")
    page_id = newsletter_page(notion, sample_page(), title="The June issue")
    created = invoke("mailout", "create", "--notion", page_id)
    assert created.exit_code == 0, created.output
    mailout_id = created.stdout.strip().splitlines()[0]

    result = invoke("mailout", "preview", mailout_id)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == tmp_path / "outbox" / f"preview-{mailout_id}.html"
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    for rendered in (
        "The Monthly Bulletin — June",  # heading_1
        "<strong",  # a bold annotation
        'href="https://example.com/releases/4.2"',  # a link
        "pip install amazonsender",  # inline code
        "Tickets for the meetup are free this year.",  # a callout
        "Highlights",
    ):
        assert rendered in html, rendered
    assert "max-width:600px" in html.replace(" ", "") or 'width="600"' in html
    # In production no service shows the file, and none is named; in local
    # mode, the URL where `make run` shows it.
    assert "/outbox/" not in result.stderr
    invoke.env["APP_ENV"] = "local"
    local = invoke("mailout", "preview", mailout_id)
    assert local.exit_code == 0, local.output
    assert f"{invoke.env['APP_BASE_URL']}/outbox/preview-{mailout_id}.html" in local.stderr


def local_app(settings, pool, transport, outbox: Path, env: str):
    return create_app(
        with_settings(settings, app_env=env, outbox_dir=str(outbox)), pool=pool, transport=transport
    )


def test_the_local_service_shows_a_preview_and_nothing_else_of_the_outbox(settings, pool, recording_transport, tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / f"preview-{MAILOUT_ID}.html").write_text("<p style=\"color:red\">June</p>", encoding="utf-8")
    (outbox / "outbox-1.eml").write_text("To: reader@example.org\n\nhi", encoding="utf-8")
    client = local_app(settings, pool, recording_transport, outbox, "local").test_client()

    shown = client.get(f"/outbox/preview-{MAILOUT_ID}.html")
    assert shown.status_code == 200 and shown.mimetype == "text/html"
    assert shown.get_data(as_text=True) == '<p style="color:red">June</p>'
    policy = shown.headers["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert shown.headers["X-Content-Type-Options"] == "nosniff"

    for name in ("outbox-1.eml", "preview-nope.html", f"preview-{MAILOUT_ID.upper()}.html",
                 f"preview-{MAILOUT_ID[:-1]}1.html", "..%2Fpyproject.toml"):  # fmt: skip
        assert client.get(f"/outbox/{name}").status_code == 404, name


def test_production_has_no_outbox_route(settings, pool, recording_transport, tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / f"preview-{MAILOUT_ID}.html").write_text("<p>June</p>", encoding="utf-8")
    app = local_app(settings, pool, recording_transport, outbox, "production")
    assert app.test_client().get(f"/outbox/preview-{MAILOUT_ID}.html").status_code == 404
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/outbox")]
