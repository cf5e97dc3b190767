"""`python -m amazonsender <command>`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from uuid import UUID

import click
from dotenv import load_dotenv

from .config import ConfigError, Settings


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
    from . import configure_logging, sender
    from .db import create_pool
    from .ses import make_transport

    settings = load_settings()
    configure_logging(settings.log_level)
    pool = create_pool(settings.database_url, max_size=2)
    try:
        try:
            claim = sender.claim_mailout(pool, mailout_id)
        except sender.MailoutNotFound:
            raise click.ClickException(f"no mailout with id {mailout_id}") from None
        except (sender.MailoutNotReady, sender.MailoutInvalid) as exc:
            raise click.ClickException(f"mailout {mailout_id}: {exc}") from None
        click.echo(f"mailout {mailout_id}: {claim.recipients} recipients queued, sending...")
        summary = sender.send_claimed_mailout(pool, make_transport(settings), settings, claim)
    finally:
        pool.close()
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
