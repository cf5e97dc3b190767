"""`mailout create --notion PAGE` and `mailout preview ID`: a Notion page imported as a draft, and a mailout's email as a subscriber gets it, written to a file."""

from __future__ import annotations

import email
import email.policy
from html import escape
from pathlib import Path
from uuid import UUID

import click

from .. import store
from ..content import ContentProblem
from ..links import UnsubscribeLinks
from ..message import Footer, MessageBuilder
from ..notion import importer
from ..notion.api import NotionError, NotionPages
from ..notion.ids import page_id as parse_page_id
from ..notion.images import stored_images
from ..sender.errors import MailoutNotFound
from ..store import notion as notion_store
from .common import Problem, database_pool, load_settings

# Who the preview is addressed to: a name no list holds.
PREVIEW_ADDRESS = "preview@example.invalid"


def create_from_notion(page: str) -> None:
    """Import the page as a draft (or refresh the page's draft); print its
    id and the blocks left out."""
    settings = load_settings()
    if not settings.notion_token:
        raise click.UsageError("--notion needs NOTION_TOKEN, the Notion integration's secret (docs/notion.md)")
    try:
        page_id = parse_page_id(page)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with database_pool() as pool:
        try:
            with NotionPages.from_settings(settings) as notion:
                imported = importer.import_page(
                    notion, page_id, subject_property=settings.notion_subject_property,
                    images=stored_images(pool, settings.app_base_url),
                )
        except (NotionError, ContentProblem) as exc:
            raise Problem(exc) from None
        with pool.connection() as conn:
            saved = notion_store.save_imported(conn, page_id, imported.subject, imported.body)
            if saved is None:
                known = notion_store.mailout_for_page(conn, page_id)
                raise click.ClickException(
                    f"the Notion page is mailout {known['id']}, which is"
                    f" '{'importing' if known['importing'] else known['status']}': it is not changed"
                )
    mailout_id, created = saved
    click.echo(mailout_id)
    click.echo(f"{'created a draft' if created else 'updated the page’s mailout'}: {imported.subject}", err=True)
    for skipped in imported.skipped:
        click.echo(f"skipped {skipped.type or 'block'} {skipped.block_id}: {skipped.reason}", err=True)


@click.command("preview")
@click.argument("mailout_id", type=click.UUID)
def mailout_preview(mailout_id: UUID):
    """Write a mailout's email, as a subscriber gets it (HTML part, with the
    footer), to OUTBOX_DIR/preview-ID.html; prints the file's path. Any
    status; nothing is sent or changed. In local mode the service `make run`
    starts shows it at APP_BASE_URL/outbox/preview-ID.html (said on stderr).

    \b
    Example:
      python -m amazonsender mailout preview 3f2c9a4e-0000-4000-8000-000000000000
    """
    settings = load_settings()
    with database_pool() as pool, pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
    if mailout is None:
        raise Problem(MailoutNotFound(), mailout_id=mailout_id)
    builder = MessageBuilder(
        mailout_id=str(mailout_id),
        subject=mailout["subject"],
        body_html=mailout["body"],
        from_address=settings.ses_from_email,
        reply_to=settings.ses_reply_to,
        footer=Footer.from_settings(settings),
    )
    # The nil subscriber id: a link that works and unsubscribes nobody.
    url = UnsubscribeLinks.from_settings(settings).url(UUID(int=0))
    message = email.message_from_bytes(
        builder.build(to_email=PREVIEW_ADDRESS, to_name=None, unsubscribe_url=url).raw, policy=email.policy.default
    )
    html = message.get_body(("html",)).get_content()
    folder = Path(settings.outbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"preview-{mailout_id}.html"
    # The email's part is a fragment whose charset is in its MIME header; a
    # file opened in a browser needs it said in the page.
    page = f'<!doctype html>\n<meta charset="utf-8">\n<title>{escape(mailout["subject"])}</title>\n{html}'
    path.write_text(page, encoding="utf-8")
    click.echo(path)
    if settings.is_local:
        click.echo(f"with `make run` serving: {settings.app_base_url}/outbox/{path.name}", err=True)
