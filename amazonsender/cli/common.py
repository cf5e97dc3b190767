"""What every command shares: the settings, the database URL, a checked connection and a small pool."""

from __future__ import annotations

import os
from contextlib import contextmanager

import click
from psycopg_pool import ConnectionPool

from ..config import LOCAL, ConfigError, Settings
from ..db import DatabaseUnreachable, SchemaMissing, check_reachable, create_pool

MISSING_DATABASE_URL = (
    "DATABASE_URL is missing: set it to the Postgres connection string, or run with APP_ENV=local"
    " to use an embedded Postgres and development defaults (what `make run` does)"
)

# Parts of the example connection strings in .env.example and the docs.
PLACEHOLDERS = ("your-project-ref", "your-db-password", "://user:password@host")


class Problem(click.ClickException):
    """A domain error told the command-line way: problems.py's message and exit code."""

    def __init__(self, exc: Exception, **context):
        from ..problems import cli_message

        message, self.exit_code = cli_message(exc, **context)
        super().__init__(message)


def is_local() -> bool:
    return os.environ.get("APP_ENV", "").strip().lower() == LOCAL


def use_local_database() -> None:
    """Under APP_ENV=local, start (or join) the embedded Postgres when
    DATABASE_URL is unset."""
    if is_local():
        from ..local import ensure_database_url

        ensure_database_url()


def load_settings(*, follow_service: bool = True) -> Settings:
    """Every setting, checked. In local mode the links point where `make
    run` serves (its note in .local/) unless APP_BASE_URL is set."""
    use_local_database()
    env = dict(os.environ)
    if is_local() and follow_service:
        from ..local import running_service_url

        service_url = running_service_url()
        if service_url and "APP_BASE_URL" not in env:
            env["APP_BASE_URL"] = service_url
    if not is_local() and not env.get("DATABASE_URL", "").strip() and not env.get("SUPABASE_URL", "").strip():
        # Settings would list every missing setting; the one line that
        # matters to someone trying the service is how to run it locally.
        raise click.ClickException(MISSING_DATABASE_URL)
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def database_url() -> str:
    """DATABASE_URL (the embedded Postgres under APP_ENV=local): commands
    that only read or write the list need nothing else configured."""
    use_local_database()
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException(MISSING_DATABASE_URL)
    return url


def check_database(url: str, *, migrated: bool = False) -> None:
    """One line naming the host and the reason when the database cannot be
    reached, within seconds: not a pool's wait and a traceback. With
    `migrated`, also when it has no tables yet."""
    try:
        check_reachable(url, migrated=migrated)
    except SchemaMissing as exc:
        raise click.ClickException(
            f"the database at {exc} has no tables yet: run `python -m amazonsender db upgrade` first"
            " (`make run` does it too)"
        ) from None
    except DatabaseUnreachable as exc:
        hint = ""
        if any(example in url for example in PLACEHOLDERS):
            hint = (
                " (DATABASE_URL is still the example from .env.example: set your own, or remove it"
                " and use APP_ENV=local for an embedded Postgres)"
            )
        raise click.ClickException(f"cannot connect to the database at {exc}{hint}") from None


def open_pool(url: str, *, size: int = 2) -> ConnectionPool:
    """A pool for one command (two connections, unless it sends: a run's
    sending threads each mark and record their calls), once the database
    has answered."""
    check_database(url, migrated=True)
    return create_pool(url, max_size=size)


@contextmanager
def database_pool():
    pool = open_pool(database_url())
    try:
        yield pool
    finally:
        pool.close()
