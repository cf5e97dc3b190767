"""`python -m amazonsender ...` run as an operator runs it: a subprocess with
nothing but its environment, against a real Postgres and the SES stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from amazonsender.db import MIGRATION_LOCK_ID, migration_files
from tests.support.db import add_mailout, add_subscribers, ledger
from tests.support.settings import ROOT
from tests.support.ses_standin import SesStandIn
from tests.support.processes import clean_env, service_env

ALL_MIGRATIONS = [path.name for path in migration_files()]


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amazonsender", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "amazonsender", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def empty_database_url(pg_server):
    """A database with nothing in it: not cloned from the migrated template."""
    name = f"amazonsender_empty_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, password=pg_server.password, dbname=name
    )
    janitor.init()
    yield pg_server.url(name)
    janitor.drop()


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        yield standin


def applied_versions(database_url) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_db_upgrade_applies_every_file_once(empty_database_url, tmp_path):
    assert "001_schema.sql" in ALL_MIGRATIONS
    env = clean_env(tmp_path, DATABASE_URL=empty_database_url)

    first = cli("db", "upgrade", env=env)
    second = cli("db", "upgrade", env=env)

    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied: {', '.join(ALL_MIGRATIONS)}"
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"
    assert applied_versions(empty_database_url) == ALL_MIGRATIONS
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("SELECT id, email, status FROM subscribers LIMIT 1")


def test_two_upgrades_at_once_both_succeed(empty_database_url, tmp_path):
    env = clean_env(tmp_path, DATABASE_URL=empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as holder:
        # Hold the migration lock so that both upgrades are surely running
        # and waiting at the same moment, then let them race for it.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        runs = [start_cli("db", "upgrade", env=env) for _ in range(2)]
        try:
            wait_for_lock_waiters(holder, 2, runs)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
        outputs = [run.communicate(timeout=60) for run in runs]

    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr
    assert sorted(stdout.strip() for stdout, _ in outputs) == [
        f"applied: {', '.join(ALL_MIGRATIONS)}",
        "database is up to date",
    ]
    assert applied_versions(empty_database_url) == ALL_MIGRATIONS


def wait_for_lock_waiters(conn, expected: int, runs, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        waiting = conn.execute(
            """
            SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND NOT granted AND objid = %s
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            (MIGRATION_LOCK_ID & 0xFFFFFFFF,),
        ).fetchone()[0]
        if waiting >= expected:
            return
        for run in runs:
            if run.poll() is not None:
                pytest.fail(f"an upgrade ended while the lock was held: {run.communicate()}")
        assert time.monotonic() < deadline, f"only {waiting} upgrade(s) waiting for the lock"
        time.sleep(0.05)


def summary_of(stdout: str) -> dict:
    """The JSON summary `mailout send` prints after its progress line."""
    return json.loads(stdout[stdout.index("{") :])


def test_mailout_send_sends_once_and_refuses_a_second_time(database_url, conn, ses, tmp_path):
    emails = [f"cli{i}@example.org" for i in range(12)]
    add_subscribers(conn, emails)
    add_subscribers(conn, ["left@example.org"], status="unsubscribed")
    mailout_id = add_mailout(conn)
    env = service_env(tmp_path, database_url, ses)

    first = cli("mailout", "send", str(mailout_id), env=env)

    assert first.returncode == 0, first.stderr
    summary = summary_of(first.stdout)
    assert summary["mailout_id"] == str(mailout_id)
    assert summary["status"] == "sent"
    assert (summary["recipients"], summary["sent"]) == (len(emails), len(emails))
    assert (summary["failed"], summary["skipped"], summary["queued"], summary["in_doubt"]) == (0, 0, 0, 0)
    addresses = [address for record in ses.sent for address in record.to_addresses]
    assert sorted(addresses) == sorted(emails)
    assert ledger(conn, mailout_id) == {email: "sent" for email in emails}

    requests_before = len(ses.requests)
    second = cli("mailout", "send", str(mailout_id), env=env)

    assert second.returncode != 0
    assert "'sent', not 'ready'" in second.stderr
    assert len(ses.requests) == requests_before


def test_mailout_send_unknown_id(database_url, ses, tmp_path):
    unknown = uuid.uuid4()

    result = cli("mailout", "send", str(unknown), env=service_env(tmp_path, database_url, ses))

    assert result.returncode != 0
    assert f"no mailout with id {unknown}" in result.stderr
    assert ses.requests == []


def test_mailout_send_rejects_an_id_that_is_not_a_uuid(database_url, ses, tmp_path):
    result = cli("mailout", "send", "not-a-uuid", env=service_env(tmp_path, database_url, ses))

    assert result.returncode != 0
    assert "not-a-uuid" in result.stderr and "UUID" in result.stderr
    assert ses.requests == []


def test_subscribers_unsubscribe_needs_only_the_database(database_url, conn, tmp_path):
    """The real command, in a process of its own: the exit status and the
    streams an operator's script would see."""
    add_subscribers(conn, ["Reply@Example.org"])
    add_subscribers(conn, ["bounced@example.org"], status="bounced")
    env = clean_env(tmp_path, DATABASE_URL=database_url)

    done = cli("subscribers", "unsubscribe", "reply@example.org", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "unsubscribed Reply@Example.org (it was active)\n", "")
    again = cli("subscribers", "unsubscribe", "REPLY@example.org", env=env)
    assert again.returncode == 0 and "was already unsubscribed" in again.stdout
    kept = cli("subscribers", "unsubscribe", "bounced@example.org", env=env)
    assert kept.returncode == 0 and "'bounced'" in kept.stdout
    unknown = cli("subscribers", "unsubscribe", "stranger@example.org", env=env)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "stranger@example.org is not on the list" in unknown.stderr
    rows = {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM subscribers")}
    assert rows == {"Reply@Example.org": "unsubscribed", "bounced@example.org": "bounced"}
