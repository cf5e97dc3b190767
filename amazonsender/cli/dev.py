"""`dev`: the service for local use, what `make run` calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from .common import load_settings


@click.command("dev")
def dev():
    """Run the service for local use (what `make run` calls): embedded Postgres
    when DATABASE_URL is unset, migrations, the .eml outbox when no AWS
    credentials are set, then gunicorn."""
    from ..db import upgrade

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
