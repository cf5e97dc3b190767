"""`mailout create/ready/list/status`: a mailout's content and state, before and after it is sent."""

from __future__ import annotations

from uuid import UUID

import click

from .. import store
from ..content import ContentProblem, check_content
from .common import database_pool, load_settings, open_pool


@click.group()
def mailout():
    """Send mailouts."""


@mailout.command("status")
@click.argument("mailout_id", type=click.UUID)
def mailout_status(mailout_id: UUID):
    """Show a mailout's state, its ledger counts, and what to do next."""
    settings = load_settings()
    pool = open_pool(settings.database_url)
    try:
        with pool.connection() as conn:
            mailout = store.get_mailout(conn, mailout_id)
            if mailout is None:
                raise click.ClickException(f"no mailout with id {mailout_id}")
            counts = store.count_by_status(conn, mailout_id)
    finally:
        pool.close()
    age = mailout["heartbeat_age_seconds"]
    click.echo(f"mailout    {mailout_id}")
    click.echo(f"subject    {mailout['subject']}")
    click.echo(f"status     {mailout['status']}")
    click.echo(f"recipients {mailout['recipients'] if mailout['recipients'] is not None else '-'}")
    for name in ("queued", "sending", "sent", "delivered", "failed", "skipped", "unknown"):
        if counts.get(name):
            click.echo(f"  {name:<9} {counts[name]}")
    click.echo(f"heartbeat  {f'{float(age):.0f} s ago' if age is not None else 'never'}")
    if mailout["error"]:
        click.echo(f"error      {mailout['error']}")
    click.echo(f"next       {next_step(mailout, counts, settings)}")


def next_step(mailout: dict, counts: dict, settings) -> str:
    status = mailout["status"]
    resume = f"python -m amazonsender mailout resume {mailout['id']}"
    if status == "draft":
        return "set it 'ready' when it is, then trigger the webhook or `mailout send`"
    if status == "ready":
        return f"trigger the webhook or run: python -m amazonsender mailout send {mailout['id']}"
    if status == "sent":
        # 'sending' rows in a finished mailout are in doubt too (as in the
        # run's summary): SES may or may not have them.
        in_doubt = counts.get("unknown", 0) + counts.get("sending", 0)
        return "nothing: it is finished" + (
            f" ({in_doubt} in doubt: SES may or may not have sent them)" if in_doubt else ""
        )
    if status == "sending":
        if mailout["heartbeat_age_seconds"] is None:
            # No run ever wrote a heartbeat (set to 'sending' by hand): resume
            # takes it without --force, so there is nothing to wait for.
            return f"no run has written a heartbeat: {resume}"
        age = float(mailout["heartbeat_age_seconds"])
        if age < settings.heartbeat_stale_seconds:
            return "wait: a run is sending it now"
        return f"its run looks gone (no heartbeat for {age:.0f} s): {resume}"
    if status == "paused":
        return f"check the error above, then: {resume}"
    return f"fix the cause in the error above, then: {resume}"



@mailout.command("create")
@click.option("--subject", required=True, help="The email's subject.")
@click.option("--html", "html_file", type=click.File("rb"), help="The body, as an HTML file (UTF-8).")
@click.option("--markdown", "markdown_file", type=click.File("rb"), help="The body, as Markdown (UTF-8).")
@click.option("--ready", is_flag=True, help="Create it 'ready' to send instead of 'draft'.")
def mailout_create(subject: str, html_file, markdown_file, ready: bool):
    """Create a mailout from an HTML or Markdown file; prints its id."""
    if bool(html_file) == bool(markdown_file):
        raise click.UsageError("give exactly one of --html FILE or --markdown FILE")
    if not subject.strip():
        raise click.UsageError("--subject must not be empty")
    if html_file:
        body = read_utf8(html_file)
    else:
        import markdown

        body = markdown.markdown(read_utf8(markdown_file), extensions=["extra", "sane_lists"])
    if not body.strip():
        raise click.UsageError("the body file is empty")
    try:
        check_content(subject.strip(), body)
    except ContentProblem as exc:
        raise click.UsageError(str(exc)) from None
    with database_pool() as pool, pool.connection() as conn:
        mailout_id = store.create_mailout(conn, subject.strip(), body, "ready" if ready else "draft")
    click.echo(mailout_id)


def read_utf8(file) -> str:
    """A body file's text, without a UTF-8 BOM. Read as bytes and decoded
    here, so that a file in another encoding is named with its line rather
    than ending in a traceback."""
    data = file.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise click.ClickException(f"{file.name}: line {line} is not UTF-8: save the file as UTF-8") from None


@mailout.command("ready")
@click.argument("mailout_id", type=click.UUID)
def mailout_ready(mailout_id: UUID):
    """Mark a draft 'ready', so the webhook or `mailout send` can send it."""
    with database_pool() as pool, pool.connection() as conn:
        mailout = store.get_mailout(conn, mailout_id)
        if mailout is not None and mailout["status"] == "draft":
            try:
                check_content(mailout["subject"], mailout["body"])
            except ContentProblem as exc:
                raise click.ClickException(f"mailout {mailout_id} cannot be made ready: {exc}") from None
        if not store.mark_ready(conn, mailout_id):
            mailout = store.get_mailout(conn, mailout_id)
            if mailout is None:
                raise click.ClickException(f"no mailout with id {mailout_id}")
            raise click.ClickException(f"mailout {mailout_id} is '{mailout['status']}', not 'draft'")
    click.echo(f"mailout {mailout_id} is ready")


@mailout.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def mailout_list(limit: int):
    """The newest mailouts with their state."""
    with database_pool() as pool, pool.connection() as conn:
        rows = store.list_mailouts(conn, limit)
    for row in rows:
        recipients = "-" if row["recipients"] is None else row["recipients"]
        click.echo(f"{row['id']}  {row['status']:<8}  {recipients!s:>8}  {row['created_at']:%Y-%m-%d %H:%M}  "
                   f"{row['subject']}")

