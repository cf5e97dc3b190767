"""`dev`: the service for local use, what `make run` calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from .common import check_database, load_settings


@click.command("dev")
def dev():
    """Run the service for local use (what `make run` calls).

    Starts the embedded Postgres in .local/ when DATABASE_URL is unset,
    applies the migrations, writes emails as .eml files to the outbox when
    no AWS credentials are set, then runs gunicorn on PORT (default 3000) or
    BIND. Its base URL is noted in .local/service.json while it runs, so
    that commands run in another terminal with APP_ENV=local make links to
    it (an APP_BASE_URL of their own still wins).

    \b
    Example:
      make run                 # the same as: APP_ENV=local python -m amazonsender dev
      PORT=8080 make run
    """
    from ..db import upgrade
    from ..local import forget_service, record_service

    os.environ["APP_ENV"] = "local"
    settings = load_settings(follow_service=False)
    check_database(settings.database_url)
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
    served = served_url(settings.port)
    if "APP_BASE_URL" not in os.environ and served:
        # The service's own links go where it listens, also under a BIND
        # whose port is not PORT.
        os.environ["APP_BASE_URL"] = served
    base_url = os.environ.get("APP_BASE_URL", settings.app_base_url).rstrip("/")
    click.echo(f"serving on {served or os.environ['BIND']} (webhook secret: EXECUTOR_SHARED_SECRET)", err=True)
    # gunicorn runs as a child so that this process keeps the embedded
    # Postgres alive for exactly as long as the service runs.
    child = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"])
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: child.send_signal(signum))
    record_service(base_url)
    try:
        code = child.wait()
    finally:
        forget_service()
    sys.exit(code)


def served_url(port: int) -> str | None:
    """Where gunicorn listens (gunicorn.conf.py reads BIND, else PORT on
    every interface), as a browser on this machine reaches it; None for a
    unix socket."""
    bind = os.environ.get("BIND")
    if bind is None:
        return f"http://localhost:{port}"
    entries = bind.replace(",", " ").split()
    if not entries or entries[0].startswith("unix:"):
        return None
    host, _, bound_port = entries[0].rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):
        host = "localhost"
    return f"http://{host}:{bound_port}"
