"""`python -m amazonsender <command>`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from uuid import UUID

import click
from dotenv import load_dotenv

from . import store
from .config import ConfigError, Settings
from .content import ContentProblem, check_content
from .db import create_pool


PROGRESS_BAR_ROWS = 5000
MAX_LISTED_INVALID = 50


def use_local_database() -> None:
    """Under APP_ENV=local, start (or join) the embedded Postgres when
    DATABASE_URL is unset."""
    if os.environ.get("APP_ENV", "").lower() == "local":
        from .local import ensure_database_url

        ensure_database_url()


def load_settings() -> Settings:
    use_local_database()
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main():
    """AmazonSender: send one newsletter through Amazon SES, exactly once."""
    load_dotenv()


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply the numbered SQL files in sql/ that have not run yet (needs only
    DATABASE_URL)."""
    from .db import upgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = upgrade(database_url())
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def database_url() -> str:
    """DATABASE_URL (the embedded Postgres under APP_ENV=local): commands
    that only read or write the list need nothing else configured."""
    use_local_database()
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException("DATABASE_URL is missing: set it to the Postgres connection string")
    return url


@contextmanager
def database_pool():
    pool = create_pool(database_url(), max_size=2)
    try:
        yield pool
    finally:
        pool.close()


@main.group()
def mailout():
    """Send mailouts."""


@mailout.command("send")
@click.argument("mailout_id", type=click.UUID)
def mailout_send(mailout_id: UUID):
    """Claim a 'ready' mailout and send it now, like the webhook with wait."""
    from . import sender

    with running(load_settings()) as (settings, pool, transport):
        try:
            rate = sender.check_mailout_can_start(pool, transport, settings, mailout_id)
            claim = sender.claim_mailout(pool, mailout_id, rate_per_sec=rate)
        except sender.MailoutNotFound:
            raise click.ClickException(f"no mailout with id {mailout_id}") from None
        except (sender.MailoutNotReady, sender.MailoutInvalid, sender.AccountCannotSend, sender.SesUnavailable) as exc:
            raise click.ClickException(f"mailout {mailout_id}: {exc}") from None
        click.echo(f"mailout {mailout_id}: {claim.recipients} recipients queued, sending at {rate:g}/s...")
        summary = sender.send_claimed_mailout(pool, transport, settings, claim, progress=print_progress)
    finish_with(summary)


@mailout.command("resume")
@click.argument("mailout_id", type=click.UUID)
@click.option("--force", is_flag=True, help="Take over even if the heartbeat is fresh (only when that run is gone).")
def mailout_resume(mailout_id: UUID, force: bool):
    """Finish a mailout whose run ended early ('sending' with no live run,
    'failed' or 'paused'). Emails that were in flight when it stopped are
    marked unknown and never sent again."""
    from . import sender

    with running(load_settings()) as (settings, pool, transport):
        try:
            claim = sender.resume_mailout(pool, mailout_id, settings, force=force)
        except sender.MailoutNotFound:
            raise click.ClickException(f"no mailout with id {mailout_id}") from None
        except (sender.MailoutNotResumable, sender.MailoutInvalid, sender.RunnerAlive) as exc:
            raise click.ClickException(f"mailout {mailout_id}: {exc}") from None
        with pool.connection() as conn:
            queued = store.count_by_status(conn, mailout_id).get("queued", 0)
        try:
            rate = sender.pace_for(transport, queued, settings)
        except (sender.AccountCannotSend, sender.SesUnavailable) as exc:
            with pool.connection() as conn:
                store.finish_mailout(conn, mailout_id, claim.runner_id, "paused", f"not resumed: {exc}")
            raise click.ClickException(f"mailout {mailout_id}: {exc}") from None
        claim = replace(claim, rate_per_sec=rate)
        click.echo(
            f"mailout {mailout_id}: resuming; {queued} still queued, {claim.in_doubt_marked} were in flight"
            " when the last run stopped (marked unknown, not resent)"
        )
        summary = sender.send_claimed_mailout(pool, transport, settings, claim, progress=print_progress)
    finish_with(summary)


@mailout.command("status")
@click.argument("mailout_id", type=click.UUID)
def mailout_status(mailout_id: UUID):
    """Show a mailout's state, its ledger counts, and what to do next."""
    settings = load_settings()
    pool = create_pool(settings.database_url, max_size=2)
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


@contextmanager
def running(settings: Settings):
    """A pool and a transport for a synchronous send, with SIGTERM and
    Ctrl-C turned into an orderly stop: the email in flight finishes, the
    batch is recorded, the rest stays queued and the mailout pauses."""
    from . import configure_logging, sender
    from .ses import make_transport

    configure_logging(settings.log_level, settings.log_format)
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(
            signum, lambda signum, frame: sender.request_stop(signal.Signals(signum).name)
        )
    pool = create_pool(settings.database_url, max_size=2)
    try:
        yield settings, pool, make_transport(settings)
    finally:
        pool.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def print_progress(counts: dict) -> None:
    click.echo("  " + ", ".join(f"{name} {n}" for name, n in counts.items()), err=True)


def finish_with(summary) -> None:
    click.echo(json.dumps(summary.to_dict(), indent=2))
    if summary.status != "sent":
        sys.exit(1)


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


@mailout.command("test")
@click.argument("mailout_id", type=click.UUID)
@click.option("--to", "addresses", multiple=True, help="A test address (repeatable); default TEST_EMAILS.")
def mailout_test(mailout_id: UUID, addresses: tuple[str, ...]):
    """Send the mailout to test addresses, subject prefixed [TEST], without
    changing its state. Repeatable."""
    from . import sender

    settings = load_settings()
    recipients = list(addresses) or list(settings.test_emails)
    if not recipients:
        raise click.UsageError("no test recipients: set TEST_EMAILS or pass --to ADDRESS")
    bad = [a for a in recipients if not sender.is_one_test_address(a)]
    if bad:
        raise click.UsageError(f"not an email address: {bad[0]!r}")
    with running(settings) as (settings, pool, transport):
        try:
            results = sender.send_test(pool, transport, settings, mailout_id, recipients)
        except sender.MailoutNotFound:
            raise click.ClickException(f"no mailout with id {mailout_id}") from None
        except sender.MailoutInvalid as exc:
            raise click.ClickException(f"mailout {mailout_id}: {exc}") from None
    for result in results:
        click.echo(f"{result['status']:<6} {result['to']}  {result.get('ses_message_id') or result.get('error')}")
    if any(result["status"] != "sent" for result in results):
        sys.exit(1)


@main.group("subscribers")
def subscribers_group():
    """The list: import, export, count, unsubscribe, forget."""


def suppression_key(required: bool):
    """erasure.key_from_environment, its refusal as the command's error."""
    from .erasure import SuppressionKeyError, key_from_environment

    try:
        return key_from_environment(os.environ, required=required)
    except SuppressionKeyError as exc:
        raise click.ClickException(str(exc)) from None


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
def subscribers_import(csv_file: str):
    """Add the addresses of a CSV file (columns `email`, optional `name`) as
    active subscribers. Never reactivates an unsubscribed, bounced or
    complained address, and never adds an erased one (`subscribers forget`;
    checking the suppression list needs SUPPRESSION_SECRET or
    UNSUBSCRIBE_SECRET once it has entries). A cell that `subscribers
    export` wrote with a leading apostrophe (a formula character after it)
    is read without it, so an exported file imports as it was."""
    from . import subscribers

    with subscribers.open_csv(csv_file) as file:
        # The whole file is read once before the database is touched: one
        # that cannot be read (not UTF-8, a broken line far down) adds nothing.
        try:
            rows = subscribers.check_csv(file)
        except subscribers.ImportFileError as exc:
            raise click.ClickException(f"{csv_file}: {exc}; nothing was imported") from None
        file.seek(0)
        key = suppression_key(required=False)
        with database_pool() as pool:
            try:
                if rows >= PROGRESS_BAR_ROWS:
                    with click.progressbar(length=rows, label="importing", file=sys.stderr) as bar:
                        report = subscribers.import_checked_csv(pool, file, progress=bar.update, suppression_key=key)
                else:
                    report = subscribers.import_checked_csv(pool, file, suppression_key=key)
            except subscribers.SuppressionKeyError as exc:
                raise click.ClickException(f"{exc}; nothing was imported") from None
            except subscribers.ImportFileError as exc:
                # Only when the file changed since it was checked.
                raise click.ClickException(f"{csv_file} changed while it was imported: {exc}") from None
    for line, value, reason in report.invalid[:MAX_LISTED_INVALID]:
        click.echo(f"line {line}: {value!r}: {reason}", err=True)
    if len(report.invalid) > MAX_LISTED_INVALID:
        click.echo(f"... and {len(report.invalid) - MAX_LISTED_INVALID} more invalid rows", err=True)
    click.echo(
        f"added {report.added}, already there {report.already_there}, suppressed {report.suppressed}"
        f" (unsubscribed, bounced, complained or erased: left as they are), invalid {len(report.invalid)},"
        f" duplicates in the file {report.duplicates_in_file}"
    )


@subscribers_group.command("export")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "bounced", "complained"]))
def subscribers_export(status: str | None):
    """Write subscribers as CSV to standard output. Spreadsheet-safe: a cell
    beginning with =, +, -, @, a tab or a carriage return (a name such as
    `=HYPERLINK(...)`, an address such as `-ann@example.org`) is written
    with a leading apostrophe, so that a spreadsheet shows it as text and
    never runs it as a formula (OWASP's rule against CSV injection).
    `subscribers import` reads such cells without the apostrophe."""
    from . import subscribers

    with database_pool() as pool:
        subscribers.export_csv(pool, sys.stdout, status)


@subscribers_group.command("count")
def subscribers_count():
    """Subscribers per status."""
    from . import subscribers

    with database_pool() as pool:
        counts = subscribers.count_by_status(pool)
    for status, n in counts.items():
        click.echo(f"{status:<13} {n}")
    click.echo(f"{'total':<13} {sum(counts.values())}")


@subscribers_group.command("unsubscribe")
@click.argument("address")
def subscribers_unsubscribe(address: str):
    """Unsubscribe ADDRESS (any case) by hand, for a request that came by
    reply: what the unsubscribe link does. A bounced or complained address
    keeps its status, which stops every mailout already."""
    from . import subscribers

    if not address.strip():
        raise click.UsageError("ADDRESS must not be empty")
    with database_pool() as pool:
        found = subscribers.unsubscribe_address(pool, address)
    if found is None:
        raise click.ClickException(
            f"{address.strip()} is not on the list (in any case): nothing to unsubscribe."
            " Check the address the request came from; `subscribers export` lists them all"
        )
    stored, before = found
    if before == "active":
        click.echo(f"unsubscribed {stored} (it was active)")
    elif before == "unsubscribed":
        click.echo(f"{stored} was already unsubscribed: nothing changed")
    else:
        click.echo(f"{stored} is '{before}', which already stops every mailout: left as it is")


@subscribers_group.command("forget")
@click.argument("address")
def subscribers_forget(address: str):
    """Erase ADDRESS (any case) for good, as GDPR article 17 asks: its
    subscriber row goes; in the mailouts' ledger and the SES events the
    address is replaced by "forgotten:" and the start of its keyed hash, and
    the events' copies of the email headers (with the name) are removed; the
    counts and history stay. The hash (HMAC-SHA256 with a key from
    SUPPRESSION_SECRET, else UNSUBSCRIBE_SECRET) joins the suppression list,
    so `subscribers import` never adds the address again. An address that
    is not on the list is added to the suppression list all the same.
    Running it again changes nothing."""
    from . import erasure

    if not address.strip():
        raise click.UsageError("ADDRESS must not be empty")
    key = suppression_key(required=True)
    with database_pool() as pool:
        try:
            erased = erasure.forget_address(pool, address, key)
        except erasure.SuppressionKeyError as exc:
            raise click.ClickException(f"{exc}; nothing was erased") from None
    found = ", ".join(erased.subscribers) or "no subscriber"
    click.echo(
        f"erased {address.strip()}: {found} removed, {erased.ledger_rows} ledger rows and"
        f" {erased.events} SES events anonymised; "
        + ("added to the suppression list" if erased.newly_suppressed else "it was on the suppression list already")
    )


@main.command("dev")
def dev():
    """Run the service for local use (what `make run` calls): embedded Postgres
    when DATABASE_URL is unset, migrations, the .eml outbox when no AWS
    credentials are set, then gunicorn."""
    from .db import upgrade

    os.environ["APP_ENV"] = "local"
    settings = load_settings()
    applied = upgrade(settings.database_url)
    if applied:
        click.echo(f"applied migrations: {', '.join(applied)}")
    if settings.use_outbox:
        click.secho(
            f"*** NO AWS CREDENTIALS: emails are written to {os.path.abspath(settings.outbox_dir)}/*.eml,"
            " nothing is sent ***",
            fg="yellow",
            err=True,
        )
    click.echo(f"serving on http://localhost:{settings.port} (webhook secret: EXECUTOR_SHARED_SECRET)", err=True)
    # gunicorn runs as a child so that this process keeps the embedded
    # Postgres alive for exactly as long as the service runs.
    child = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"])
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: child.send_signal(signum))
    sys.exit(child.wait())
