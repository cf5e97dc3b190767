"""The app's database pool: the one place the database meets Flask."""

from __future__ import annotations

from flask import current_app
from psycopg_pool import ConnectionPool

POOL = "db_pool"


def init_pool(app, pool: ConnectionPool) -> None:
    app.extensions[POOL] = pool


def get_pool() -> ConnectionPool:
    """The pool of the app handling the current request."""
    return current_app.extensions[POOL]
