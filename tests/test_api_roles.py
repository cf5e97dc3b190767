"""Supabase's anon and authenticated roles can do nothing with our schema,
even when Supabase's default privileges grant them everything first; every
function has a fixed search_path."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row, tuple_row
from pytest_postgresql.janitor import DatabaseJanitor

from amazonsender import db
from tests.support.db import add_mailout, add_subscribers

API_ROLES = ("anon", "authenticated")


def create_api_roles(pg_server) -> None:
    """The two roles as Supabase creates them. Roles belong to the whole
    server and other test runs may be creating them at the same moment:
    created if missing, never dropped (they cannot log in)."""
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        for role in API_ROLES:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(role)))
            except (errors.DuplicateObject, errors.UniqueViolation):
                pass


@pytest.fixture
def supabase_database(pg_server):
    """A fresh database set up as a Supabase project is, before `db upgrade`."""
    create_api_roles(pg_server)
    name = f"amazonsender_supabase_{os.getpid()}"
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, password=pg_server.password, dbname=name
    )
    janitor.drop()
    janitor.init()
    url = pg_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        # Supabase's own setup (supabase/postgres, supabase/realtime's dev setup).
        conn.execute("GRANT USAGE ON SCHEMA public TO anon, authenticated")
        for kind in ("TABLES", "FUNCTIONS", "SEQUENCES"):
            conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} TO anon, authenticated")
            conn.execute(f"ALTER DEFAULT PRIVILEGES GRANT ALL ON {kind} TO anon, authenticated")
        # What the dashboard's table editor does with a table made before our upgrade.
        conn.execute("CREATE SEQUENCE leftover_seq")
    try:
        yield url
    finally:
        janitor.drop()


def objects(conn) -> dict[str, list[str]]:
    """Every table, sequence and function of the public schema."""
    conn = conn.cursor(row_factory=tuple_row)
    rows = conn.execute(
        """
        SELECT c.oid::regclass::text AS name, c.relkind FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        """
    ).fetchall()
    functions = conn.execute(
        "SELECT oid::regprocedure::text AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
    ).fetchall()
    return {
        "tables": [r[0] for r in rows if r[1] != "S"],
        "sequences": [r[0] for r in rows if r[1] == "S"],
        "functions": [r[0] for r in functions],
    }


def granted(conn, role: str) -> list[str]:
    found = objects(conn)
    conn = conn.cursor(row_factory=tuple_row)
    table_privileges = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
    result = [t for t in found["tables"]
              if conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, t, table_privileges)).fetchone()[0]]
    result += [s for s in found["sequences"]
               if conn.execute("SELECT has_sequence_privilege(%s, %s, 'USAGE, SELECT, UPDATE')",
                               (role, s)).fetchone()[0]]
    result += [f for f in found["functions"]
               if conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, f)).fetchone()[0]]
    return result


def test_supabase_api_roles_get_nothing_after_upgrade(supabase_database):
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE before_upgrade (x int)")
        assert "before_upgrade" in granted(conn, "anon")  # the setup does grant, as Supabase's does

    db.upgrade(supabase_database)
    # A later migration's table and function, created by the migrating role:
    # the default privileges no longer grant them, and the next upgrade's
    # revoke would catch what was granted by hand.
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE added_later (x int)")
        conn.execute("CREATE FUNCTION added_later_fn() RETURNS int LANGUAGE sql SET search_path = pg_catalog"
                     " AS 'SELECT 1'")
        conn.execute("CREATE TABLE granted_by_hand (x int)")
        conn.execute("GRANT ALL ON granted_by_hand TO anon")
    db.upgrade(supabase_database)

    with psycopg.connect(supabase_database, autocommit=True) as conn:
        found = objects(conn)
        assert {"subscribers", "mailouts", "send_logs", "ses_events", "schema_migrations", "suppressions",
                "media", "added_later", "granted_by_hand"} <= set(found["tables"])
        assert "revoke_api_roles(regnamespace)" in found["functions"]
        for role in API_ROLES:
            assert granted(conn, role) == [], role


@pytest.mark.parametrize("role", API_ROLES)
def test_the_api_roles_are_refused_when_they_try(supabase_database, role):
    db.upgrade(supabase_database)
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        add_subscribers(conn.cursor(row_factory=dict_row), ["ann@x.org"])
        add_mailout(conn.cursor(row_factory=dict_row))
        tables = objects(conn)["tables"]
        attempts = [f"SELECT count(*) FROM {t}" for t in tables]
        attempts += [f"TRUNCATE {t}" for t in tables]
        attempts += ["INSERT INTO subscribers (email) VALUES ('eve@x.org')",
                     "INSERT INTO schema_migrations (version) VALUES ('999_evil.sql')",
                     "DELETE FROM schema_migrations",
                     "UPDATE subscribers SET status = 'unsubscribed'",
                     "SELECT revoke_api_roles('public')"]
        for statement in attempts:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0


def test_upgrade_without_the_api_roles_is_a_no_op_for_them(conn):
    """An ordinary Postgres (the test template): the revoke ran and changed
    nothing but PUBLIC's EXECUTE on our functions."""
    functions = objects(conn)["functions"]
    assert functions
    for function in functions:
        assert not conn.execute(
            "SELECT has_function_privilege('public', %s, 'EXECUTE') AS x", (function,)
        ).fetchone()["x"], function


def test_every_function_has_a_fixed_search_path(conn):
    """A function a later migration adds without `SET search_path` fails
    here (the runner cannot choose one for it)."""
    rows = conn.execute(
        """
        SELECT p.oid::regprocedure::text AS name, p.prosecdef, p.proconfig
          FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
        """
    ).fetchall()
    assert {row["name"] for row in rows} >= {
        "send_logs_delete_with_mailouts()", "send_logs_forget_subscribers()",
        "refuse_id_change()", "revoke_api_roles(regnamespace)",
    }
    missing = [row["name"] for row in rows
               if not any(setting.startswith("search_path=pg_catalog") for setting in row["proconfig"] or [])]
    assert missing == []
    definers = {row["name"]: row["proconfig"] for row in rows if row["prosecdef"]}
    assert definers and all("pg_temp" in setting[-1] for setting in definers.values())


def test_send_log_ids_stay_version_7_without_the_function(conn):
    mailout_id = add_mailout(conn)
    row = conn.execute(
        "INSERT INTO send_logs (mailout_id, email) VALUES (%s, 'ann@x.org') RETURNING id", (mailout_id,)
    ).fetchone()
    assert row["id"].version == 7
    default = conn.execute(
        "SELECT pg_get_expr(adbin, adrelid) AS expr FROM pg_attrdef WHERE adrelid = 'send_logs'::regclass"
        " AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'send_logs'::regclass AND attname = 'id')"
    ).fetchone()["expr"]
    assert "time_ordered_uuid" not in default and "clock_timestamp" in default
