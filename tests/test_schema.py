"""The schema keeps the specification's promises: its columns are enough to
insert a row, one address is one subscriber, one ledger row per recipient,
and nothing is readable through Supabase's anon key."""

from psycopg import sql
import pytest
from psycopg import errors

from tests.conftest import add_mailout, add_subscribers

# The columns the specification names for each table.
SPEC_COLUMNS = {
    "subscribers": {
        "id", "email", "status", "bounce_type", "bounce_subtype", "status_updated_at", "from_name", "created_at",
    },
    "mailouts": {"id", "subject", "body", "status", "created_at", "sent_at"},
    "send_logs": {"id", "mailout_id", "email", "status", "error_message", "created_at"},
}  # fmt: skip


def test_emails_are_unique_whatever_their_case(conn):
    add_subscribers(conn, ["ann@x.org"])

    with pytest.raises(errors.UniqueViolation):
        add_subscribers(conn, ["Ann@X.org"])


def test_a_subscriber_row_with_only_the_specification_columns(conn):
    row = conn.execute(
        """
        INSERT INTO subscribers (email, status, bounce_type, bounce_subtype, status_updated_at, from_name)
        VALUES ('bo@x.org', 'bounced', 'Permanent', 'General', now(), 'Bo')
        RETURNING id, created_at
        """
    ).fetchone()

    assert row["id"] is not None and row["created_at"] is not None


def test_a_mailout_row_with_only_the_specification_columns(conn):
    row = conn.execute(
        """
        INSERT INTO mailouts (subject, body, status, sent_at)
        VALUES ('Hello', '<p>Hi</p>', 'sent', now())
        RETURNING id, created_at
        """
    ).fetchone()

    assert row["id"] is not None and row["created_at"] is not None


def test_a_send_log_row_with_only_the_specification_columns(conn):
    mailout_id = add_mailout(conn)
    row = conn.execute(
        """
        INSERT INTO send_logs (mailout_id, email, status, error_message)
        VALUES (%s, 'ann@x.org', 'failed', 'MessageRejected')
        RETURNING id, created_at
        """,
        (mailout_id,),
    ).fetchone()

    assert row["id"] is not None and row["created_at"] is not None


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_every_column_beyond_the_specification_is_optional(conn, table):
    """Whatever columns are added later, a writer that knows only the
    specification must still be able to insert."""
    columns = conn.execute(
        """
        SELECT column_name, is_nullable, column_default
          FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = %s
        """,
        (table,),
    ).fetchall()
    names = {column["column_name"] for column in columns}
    assert SPEC_COLUMNS[table] <= names
    required = {
        column["column_name"]
        for column in columns
        if column["is_nullable"] == "NO" and column["column_default"] is None
    }
    assert required <= SPEC_COLUMNS[table]


def test_one_send_log_row_per_mailout_and_email(conn):
    mailout_id = add_mailout(conn)
    insert = "INSERT INTO send_logs (mailout_id, email) VALUES (%s, %s)"
    conn.execute(insert, (mailout_id, "ann@x.org"))
    conn.execute(insert, (add_mailout(conn), "ann@x.org"))  # another mailout: fine

    with pytest.raises(errors.UniqueViolation):
        conn.execute(insert, (mailout_id, "ann@x.org"))


def public_tables(conn) -> dict[str, bool]:
    rows = conn.execute(
        """
        SELECT relname, relrowsecurity FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
        """
    ).fetchall()
    return {row["relname"]: row["relrowsecurity"] for row in rows}


def test_row_level_security_is_on_for_every_table(conn):
    tables = public_tables(conn)

    assert {"subscribers", "mailouts", "send_logs", "schema_migrations"} <= set(tables)
    assert [name for name, secured in tables.items() if not secured] == []


def test_a_role_that_is_not_the_owner_reads_nothing(conn):
    """What Supabase's anon key would see: SELECT is granted (as Supabase
    does by default), yet RLS without policies hides every row."""
    subscriber_id = add_subscribers(conn, ["ann@x.org"])[0]
    mailout_id = add_mailout(conn)
    conn.execute("INSERT INTO send_logs (mailout_id, email, subscriber_id) VALUES (%s, 'ann@x.org', %s)",
                 (mailout_id, subscriber_id))
    tables = sorted(public_tables(conn))

    # Roles belong to the whole server: create it inside a transaction that
    # is rolled back, so nothing is left behind.
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE ROLE anon_test NOLOGIN")
        conn.execute("GRANT USAGE ON SCHEMA public TO anon_test")
        conn.execute("GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO anon_test")
        owner_counts = {table: count_rows(conn, table) for table in tables}
        conn.execute("SET LOCAL ROLE anon_test")
        anon_counts = {table: count_rows(conn, table) for table in tables}
        changed = conn.execute("UPDATE subscribers SET status = 'unsubscribed'").rowcount

    assert all(owner_counts[table] > 0 for table in ("subscribers", "mailouts", "send_logs", "schema_migrations"))
    assert anon_counts == {table: 0 for table in tables}
    assert changed == 0
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "active"
    assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'anon_test'").fetchone() is None


def count_rows(conn, table: str) -> int:
    query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
    return conn.execute(query).fetchone()["n"]
