"""The test database: where Postgres is, databases cloned from the migrated
template, and arranging and reading the rows tests look at."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str | None

    def url(self, dbname: str) -> str:
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=dbname
        )


def server_from_url(url: str) -> PgServer:
    params = conninfo_to_dict(url)
    return PgServer(
        host=params.get("host") or "127.0.0.1",
        port=int(params.get("port") or 5432),
        user=params.get("user") or "postgres",
        password=params.get("password"),
    )


def reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def cloned_database(pg_server: PgServer, template: str, name: str):
    """A database cloned from the migrated template, dropped afterwards."""
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname=name,
        template_dbname=template,
    )
    janitor.drop()
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


def add_subscribers(conn, emails, status="active", names=None) -> list:
    names = names or {}
    ids = []
    for email in emails:
        row = conn.execute(
            "INSERT INTO subscribers (email, status, from_name) VALUES (%s, %s, %s) RETURNING id",
            (email, status, names.get(email)),
        ).fetchone()
        ids.append(row["id"])
    return ids


def add_mailout(conn, status="ready", subject="Our news", body="<h1>Hello</h1><p>News.</p>"):
    row = conn.execute(
        "INSERT INTO mailouts (subject, body, status) VALUES (%s, %s, %s) RETURNING id",
        (subject, body, status),
    ).fetchone()
    return row["id"]


def ledger(conn, mailout_id) -> dict[str, str]:
    rows = conn.execute("SELECT email, status FROM send_logs WHERE mailout_id = %s", (mailout_id,)).fetchall()
    return {row["email"]: row["status"] for row in rows}


def mailout_row(conn, mailout_id) -> dict:
    return conn.execute("SELECT * FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()
