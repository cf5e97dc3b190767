"""`db`: the database schema."""

from __future__ import annotations

import logging

import click

from .common import check_database, database_url


@click.group()
def db():
    """The database schema: `db upgrade`."""


@db.command("upgrade")
def db_upgrade():
    """Apply the numbered SQL files in sql/ that have not run yet.

    Needs only DATABASE_URL. Safe to run again, and from two places at
    once: each file is applied once, and a file that fails leaves the schema
    as it was. `make run` does this itself.

    \b
    Example:
      DATABASE_URL=postgresql://user:password@host:5432/postgres python -m amazonsender db upgrade
    """
    from ..db import upgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = database_url()
    check_database(url)
    applied = upgrade(url)
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")
