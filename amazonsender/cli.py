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
from .db import create_pool


def load_settings() -> Settings:
    if os.environ.get("APP_ENV", "").lower() == "local":
        from .local import ensure_database_url

        ensure_database_url()
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
    if os.environ.get("APP_ENV", "").lower() == "local":
        from .local import ensure_database_url

        ensure_database_url()
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if not database_url:
        raise click.ClickException("DATABASE_URL is missing: set it to the Postgres connection string")
    applied = upgrade(database_url)
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


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
        except (sender.MailoutNotResumable, sender.RunnerAlive) as exc:
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
        return "nothing: it is finished" + (
            f" ({counts['unknown']} in doubt: SES may or may not have sent them)" if counts.get("unknown") else ""
        )
    if status == "sending":
        age = float(mailout["heartbeat_age_seconds"] or 0)
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
