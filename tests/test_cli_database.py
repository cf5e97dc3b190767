"""The command line without a usable database: one line that says what to
do, at once or within seconds, never a long wait and a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from dotenv import dotenv_values

from tests.support.settings import ROOT
from tests.support.processes import clean_env, free_port


def cli(*args: str, env: dict, cwd=ROOT) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "amazonsender", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )
    return result, time.monotonic() - started


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("args", [("subscribers", "count"), ("db", "upgrade"), ("mailout", "send", uuid.uuid4())])
def test_a_missing_database_url_says_how_to_run_locally(tmp_path, args):
    result, _ = cli(*args, env=clean_env(tmp_path))

    message = one_line_error(result)
    assert "DATABASE_URL is missing" in message and "APP_ENV=local" in message


@pytest.mark.parametrize("args", [("subscribers", "count"), ("db", "upgrade"), ("mailout", "status", uuid.uuid4())])
def test_a_database_that_refuses_is_one_line_with_the_host(tmp_path, args):
    port = free_port()
    env = clean_env(tmp_path, DATABASE_URL=f"postgresql://user:secret-password@127.0.0.1:{port}/db",
                    EXECUTOR_SHARED_SECRET="s" * 20, UNSUBSCRIBE_SECRET="u" * 20, APP_BASE_URL="https://x.example.test",
                    SES_FROM_EMAIL="news@example.test", AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="AKIA",
                    AWS_SECRET_ACCESS_KEY="secret", POSTAL_ADDRESS="1 Main Street")

    result, seconds = cli(*args, env=env)

    message = one_line_error(result)
    assert f"cannot connect to the database at 127.0.0.1:{port}: Connection refused" in message
    assert "secret-password" not in message
    assert seconds < 10


def test_a_database_that_never_answers_gives_up_within_seconds(tmp_path):
    """A host that takes the connection and says nothing (or drops the
    packets) would hold the command for minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]

        result, seconds = cli("subscribers", "count", env=clean_env(tmp_path, DATABASE_URL=f"postgresql://u:p@127.0.0.1:{port}/db"))

    message = one_line_error(result)
    assert f"127.0.0.1:{port}: no answer within 5 s" in message
    assert 4 < seconds < 15


def test_make_run_with_the_placeholders_of_env_example_says_so_at_once(tmp_path):
    """`make run` (the `dev` command) with .env copied from .env.example and
    not filled in; here with the host made local, so nothing leaves the
    machine."""
    env = {name: value for name, value in dotenv_values(ROOT / ".env.example").items() if value is not None}
    port = free_port()
    env["DATABASE_URL"] = f"postgresql://postgres.your-project-ref:your-db-password@127.0.0.1:{port}/postgres"
    env.pop("BIND", None)

    result, seconds = cli("dev", env=clean_env(tmp_path, **env, PYTHONPATH=str(ROOT)), cwd=tmp_path)

    message = one_line_error(result)
    assert f"127.0.0.1:{port}: Connection refused" in message and ".env.example" in message
    assert "your-db-password" not in message
    assert seconds < 10
    assert not (tmp_path / ".local" / "service.json").exists()


def test_a_database_without_tables_says_to_run_db_upgrade(pg_server, tmp_path):
    name = f"amazonsender_bare_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        result, _ = cli("mailout", "list", env=clean_env(tmp_path, DATABASE_URL=pg_server.url(name)))
    finally:
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    message = one_line_error(result)
    assert "has no tables yet: run `python -m amazonsender db upgrade` first" in message
