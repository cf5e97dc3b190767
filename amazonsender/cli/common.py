"""What every command shares: the settings, the database URL and a small pool."""

from __future__ import annotations

import os
from contextlib import contextmanager

import click

from ..config import ConfigError, Settings
from ..db import create_pool


def use_local_database() -> None:
    """Under APP_ENV=local, start (or join) the embedded Postgres when
    DATABASE_URL is unset."""
    if os.environ.get("APP_ENV", "").lower() == "local":
        from ..local import ensure_database_url

        ensure_database_url()


def load_settings() -> Settings:
    use_local_database()
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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
