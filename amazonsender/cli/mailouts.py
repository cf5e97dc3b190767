"""`mailout create/edit/delete/ready/list/status/pause`: a mailout's content and state, before and after it is sent."""

from __future__ import annotations

from uuid import UUID

import click

from .. import store
from ..content import ContentProblem, body_problem, check_content, subject_problem
from ..store import drafts
from ..sender.errors import MailoutNotFound, MailoutNotPausable
from ..sender.watch import verdict
from .common import Problem, database_pool, load_settings, open_pool


@click.group()
def mailout():
    """Mailouts: create, edit, test, send, resume and follow them.

    \b
    A mailout goes draft -> ready -> sending -> sent; a run that stops
    early leaves it paused or failed, and `mailout resume` finishes it.
    Only a draft or a ready mailout can be edited or deleted.
    """


@mailout.command("status")
@click.argument("mailout_id", type=click.UUID)
def mailout_status(mailout_id: UUID):
    """Show a mailout's state, its ledger counts, and what to do next.

    \b
    Example:
      python -m amazonsender mailout status 3f2c9a4e-0000-4000-8000-000000000000
    """
    settings = load_settings()
    pool = open_pool(settings.database_url)
    try:
        with pool.connection() as conn:
            mailout = store.get_mailout(conn, mailout_id)
            if mailout is None:
                raise Problem(MailoutNotFound(), mailout_id=mailout_id)
            counts = store.count_by_status(conn, mailout_id)
            progress = store.queue_progress(conn, mailout_id)
    finally:
        pool.close()
    age = mailout["heartbeat_age_seconds"]
    click.echo(f"mailout    {mailout_id}")
    click.echo(f"subject    {mailout['subject']}")
    click.echo(f"status     {mailout['status']}")
    click.echo(f"recipients {mailout['recipients'] if mailout['recipients'] is not None else '-'}")
    if progress and progress["queuing"]:
        by = "by the run that sends it" if mailout["status"] == "sending" else "its resume queues the rest"
        click.echo(f"queuing    recipients: {progress['queued_rows']} so far, {by}")
    for name in ("queued", "sending", "sent", "delivered", "failed", "skipped", "unknown"):
        if counts.get(name):
            click.echo(f"  {name:<9} {counts[name]}")
    if mailout.get("resolved_from_events"):
        click.echo(f"resolved   {mailout['resolved_from_events']} in-doubt emails, from SES's own events")
    click.echo(f"heartbeat  {f'{float(age):.0f} s ago' if age is not None else 'never'}")
    if mailout["error"]:
        click.echo(f"error      {mailout['error']}")
    if mailout["stop_reason"]:
        click.echo(f"stopped    {mailout['stop_reason']}")
    click.echo(f"next       {next_step(mailout, counts, settings)}")
    resumes = verdict(mailout, settings, mailout["db_now"])
    if resumes is not None:
        when = resumes.at.isoformat(timespec="seconds") if resumes.at else ""
        by_itself = f"yes, {'now' if resumes.at <= mailout['db_now'] else 'at ' + when}" if resumes.automatic else "no"
        click.echo(f"resumes by itself  {by_itself}: {resumes.why}")


@mailout.command("pause")
@click.argument("mailout_id", type=click.UUID)
def mailout_pause(mailout_id: UUID):
    """Pause a mailout under way until you resume it by hand.

    A run sending it (in any process) stops after the emails in flight and
    the rest stays queued; the service never resumes it by itself.
    `mailout resume ID` finishes it. A paused or failed mailout can be
    paused too, so that it no longer resumes by itself.

    \b
    Example:
      python -m amazonsender mailout pause 3f2c9a4e-0000-4000-8000-000000000000
    """
    from ..notion.runs import command_reports
    from ..sender.pause import pause_mailout

    settings = load_settings()
    pool = open_pool(settings.database_url)
    try:
        was = pause_mailout(pool, mailout_id)
        # Its Notion page, if it came from one, says Paused (at most a few
        # seconds; never an error of this command).
        with command_reports(settings, pool) as reports:
            reports.paused(mailout_id)
    except (MailoutNotFound, MailoutNotPausable) as exc:
        raise Problem(exc, mailout_id=mailout_id) from None
    finally:
        pool.close()
    click.echo(
        f"mailout {mailout_id}: paused (was '{was}'); a run sending it stops after the emails in flight."
        f" Resume with: python -m amazonsender mailout resume {mailout_id}"
    )


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
            f" ({in_doubt} in doubt: SES may or may not have sent them; an SES event about one resolves it,"
            f" see `mailout resume {mailout['id']} --resend-unconfirmed --help`)"
            if in_doubt
            else ""
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



BODY_OPTIONS = (
    click.option("--html", "html_file", type=click.File("rb"), help="The body, as an HTML file (UTF-8)."),
    click.option("--markdown", "markdown_file", type=click.File("rb"), help="The body, as Markdown (UTF-8)."),
)


def body_options(command):
    for option in reversed(BODY_OPTIONS):
        command = option(command)
    return command


@mailout.command("create")
@click.option("--subject", help="The email's subject.")
@body_options
@click.option("--notion", "notion_page", metavar="PAGE_URL_OR_ID",
              help="Import this Notion page as a draft: subject from its title, body from its blocks.")
@click.option("--ready", is_flag=True, help="Create it 'ready' to send instead of 'draft'.")
def mailout_create(subject: str | None, html_file, markdown_file, notion_page: str | None, ready: bool):
    """Create a mailout from an HTML or Markdown file, or from a Notion
    page (as a draft; again for the same page: its draft is updated);
    prints its id.

    \b
    Examples:
      python -m amazonsender mailout create --subject "May news" --markdown may.md
      python -m amazonsender mailout create --notion https://www.notion.so/May-news-<id>
    """
    if notion_page is not None:
        if subject is not None or html_file or markdown_file or ready:
            raise click.UsageError("--notion takes the subject and the body from the page: give it alone")
        from .notion import create_from_notion

        return create_from_notion(notion_page)
    if subject is None:
        raise click.UsageError("give --subject TEXT (or --notion PAGE)")
    if bool(html_file) == bool(markdown_file):
        raise click.UsageError("give exactly one of --html FILE or --markdown FILE")
    if not subject.strip():
        raise click.UsageError("--subject must not be empty")
    body = read_body(html_file, markdown_file)
    try:
        check_content(subject.strip(), body)
    except ContentProblem as exc:
        raise click.UsageError(str(exc)) from None
    with database_pool() as pool, pool.connection() as conn:
        mailout_id = store.create_mailout(conn, subject.strip(), body, "ready" if ready else "draft")
    click.echo(mailout_id)


@mailout.command("edit")
@click.argument("mailout_id", type=click.UUID)
@click.option("--subject", help="The new subject.")
@body_options
def mailout_edit(mailout_id: UUID, subject: str | None, html_file, markdown_file):
    """Change the subject and/or the body of a mailout that is still a
    draft or ready; refused once sending has started. A ready mailout
    stays ready. The new subject and body are checked as `mailout create`
    checks them.

    \b
    Examples:
      python -m amazonsender mailout edit ID --subject "May news (corrected)"
      python -m amazonsender mailout edit ID --markdown may.md
    """
    if subject is None and not html_file and not markdown_file:
        raise click.UsageError("give --subject TEXT, --html FILE or --markdown FILE (a subject and a body both work)")
    if html_file and markdown_file:
        raise click.UsageError("give at most one of --html FILE or --markdown FILE")
    if subject is not None and not subject.strip():
        raise click.UsageError("--subject must not be empty")
    subject = subject.strip() if subject is not None else None
    body = read_body(html_file, markdown_file) if html_file or markdown_file else None
    problem = (subject is not None and subject_problem(subject)) or (body is not None and body_problem(body))
    if problem:
        raise click.UsageError(problem)
    with database_pool() as pool, pool.connection() as conn:
        if not drafts.edit_mailout(conn, mailout_id, subject, body):
            raise unchangeable(conn, mailout_id, "edited")
    changed = [name for name, value in (("subject", subject), ("body", body)) if value is not None]
    click.echo(f"mailout {mailout_id}: {' and '.join(changed)} changed")


@mailout.command("delete")
@click.argument("mailout_id", type=click.UUID)
def mailout_delete(mailout_id: UUID):
    """Delete a mailout that is still a draft or ready. One that has begun
    sending stays, with its ledger: the record of who got what.

    \b
    Example:
      python -m amazonsender mailout delete ID
    """
    with database_pool() as pool, pool.connection() as conn:
        deleted = drafts.delete_mailout(conn, mailout_id)
        if deleted is None:
            raise unchangeable(conn, mailout_id, "deleted")
    click.echo(f"deleted mailout {mailout_id} ({deleted['status']}): {deleted['subject']}")


def unchangeable(conn, mailout_id: UUID, done: str) -> click.ClickException:
    """Why a mailout could not be edited or deleted."""
    mailout = store.get_mailout(conn, mailout_id)
    if mailout is None:
        return Problem(MailoutNotFound(), mailout_id=mailout_id)
    return click.ClickException(
        f"mailout {mailout_id} is '{mailout['status']}': only a draft or a ready mailout can be {done}"
        " (once sending has started, the mailout is what its recipients got)"
    )


def read_body(html_file, markdown_file) -> str:
    """The body from the one file given, Markdown made HTML; never empty."""
    if html_file:
        body = read_utf8(html_file)
    else:
        import markdown

        body = markdown.markdown(read_utf8(markdown_file), extensions=["extra", "sane_lists"])
    if not body.strip():
        raise click.UsageError("the body file is empty")
    return body


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
    """Mark a draft 'ready', so the webhook or `mailout send` can send it.

    Its subject and body are checked first, as `mailout create` checks them.

    \b
    Example:
      python -m amazonsender mailout ready 3f2c9a4e-0000-4000-8000-000000000000
    """
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
                raise Problem(MailoutNotFound(), mailout_id=mailout_id)
            raise click.ClickException(f"mailout {mailout_id} is '{mailout['status']}', not 'draft'")
    click.echo(f"mailout {mailout_id} is ready")


@mailout.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many to show.")
def mailout_list(limit: int):
    """The newest mailouts: id, state, recipients, created, subject.

    \b
    Example:
      python -m amazonsender mailout list --limit 5
    """
    with database_pool() as pool, pool.connection() as conn:
        rows = store.list_mailouts(conn, limit)
    for row in rows:
        click.echo(f"{row['id']}  {row['status']:<8}  {progress(row):>12}  {row['created_at']:%Y-%m-%d %H:%M}  "
                   f"{row['subject']}")


def progress(row: dict) -> str:
    """The recipients column: their number, and for a mailout under way how
    many have an outcome so far (`done/recipients`), read from the ledger
    so that it moves during the first batch too."""
    if row["recipients"] is None:
        return "-"
    counts = row.get("counts")
    if counts is None:
        return str(row["recipients"])
    done = sum(n for status, n in counts.items() if status not in ("queued", "sending"))
    return f"{done}/{row['recipients']}"

