"""`db`: the database schema."""

from __future__ import annotations

import logging

import click

from .common import database_url


@click.group()
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply the numbered SQL files in sql/ that have not run yet (needs only
    DATABASE_URL)."""
    from ..db import upgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = upgrade(database_url())
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")
