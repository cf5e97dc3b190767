"""`db`: the database schema."""

from __future__ import annotations

import logging

import click

from .common import check_database, database_url


@click.group()
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply the numbered SQL files in sql/ that have not run yet (needs only
    DATABASE_URL)."""
    from ..db import upgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = database_url()
    check_database(url)
    applied = upgrade(url)
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")
