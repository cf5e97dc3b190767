"""The schema keeps the specification's promises: its columns are enough to
insert a row, one address is one subscriber, one ledger row per recipient,
and nothing is readable through Supabase's anon key."""

import threading
import time
import uuid

import psycopg
from psycopg import sql
import pytest
from psycopg import errors

from amazonsender import db, sender, store
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import queue_everyone

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


def test_the_same_address_twice_in_one_mailout_is_refused_byte_for_byte(conn):
    """The unique index compares bytes ("C" collation), which refuses
    exactly what the database's collation refused: equal addresses."""
    mailout_id = add_mailout(conn)
    insert = "INSERT INTO send_logs (mailout_id, email) VALUES (%s, %s)"
    conn.execute(insert, (mailout_id, "zoë@x.org"))
    conn.execute(insert, (mailout_id, "zoe@x.org"))

    with pytest.raises(errors.UniqueViolation):
        conn.execute(insert, (mailout_id, "zoë@x.org"))
    with pytest.raises(errors.UniqueViolation):
        conn.execute(
            "INSERT INTO send_logs (mailout_id, email) VALUES (%s, 'a@x.org'), (%s, 'a@x.org')",
            (mailout_id, mailout_id),
        )


def test_send_log_ids_are_version_7_uuids_in_time_order(conn):
    mailout_id = add_mailout(conn)
    insert = "INSERT INTO send_logs (mailout_id, email) VALUES (%s, %s) RETURNING id, created_at"
    first = conn.execute(insert, (mailout_id, "ann@x.org")).fetchone()
    time.sleep(0.005)
    second = conn.execute(insert, (mailout_id, "bo@x.org")).fetchone()

    assert first["id"].version == 7 and second["id"].version == 7
    assert first["id"] < second["id"]
    assert conn.execute("SELECT %s::uuid < %s::uuid AS ordered", (first["id"], second["id"])).fetchone()["ordered"]
    # The first 48 bits are the Unix time in milliseconds.
    milliseconds = first["id"].int >> 80
    assert abs(milliseconds / 1000 - first["created_at"].timestamp()) < 5


def test_deleting_a_mailout_deletes_its_ledger(conn):
    """What ON DELETE CASCADE did, now a trigger on mailouts."""
    gone, kept, also_gone = add_mailout(conn), add_mailout(conn), add_mailout(conn)
    insert = "INSERT INTO send_logs (mailout_id, email) VALUES (%s, %s)"
    for mailout_id in (gone, kept, also_gone):
        conn.execute(insert, (mailout_id, "ann@x.org"))
        conn.execute(insert, (mailout_id, "bo@x.org"))

    conn.execute("DELETE FROM mailouts WHERE id = ANY(%s)", ([gone, also_gone],))

    rows = conn.execute("SELECT DISTINCT mailout_id FROM send_logs").fetchall()
    assert [row["mailout_id"] for row in rows] == [kept]
    conn.execute("TRUNCATE mailouts CASCADE")
    assert conn.execute("SELECT count(*) AS n FROM send_logs").fetchone()["n"] == 0


def test_deleting_a_subscriber_keeps_its_ledger_rows_without_it(conn):
    """What ON DELETE SET NULL did, now a trigger on subscribers."""
    ann, bo, cy = add_subscribers(conn, ["ann@x.org", "bo@x.org", "cy@x.org"])
    mailout_id = add_mailout(conn)
    for subscriber_id, email in ((ann, "ann@x.org"), (bo, "bo@x.org"), (cy, "cy@x.org")):
        conn.execute(
            "INSERT INTO send_logs (mailout_id, subscriber_id, email) VALUES (%s, %s, %s)",
            (mailout_id, subscriber_id, email),
        )

    conn.execute("DELETE FROM subscribers WHERE id = ANY(%s)", ([ann, bo],))

    assert ledger_subscribers(conn, mailout_id) == {"ann@x.org": None, "bo@x.org": None, "cy@x.org": cy}
    conn.execute("TRUNCATE subscribers")
    assert ledger_subscribers(conn, mailout_id) == {"ann@x.org": None, "bo@x.org": None, "cy@x.org": None}


def test_ids_of_mailouts_and_subscribers_never_change(conn):
    subscriber_id = add_subscribers(conn, ["ann@x.org"])[0]
    mailout_id = add_mailout(conn)

    with pytest.raises(errors.ForeignKeyViolation):
        conn.execute("UPDATE mailouts SET id = gen_random_uuid() WHERE id = %s", (mailout_id,))
    with pytest.raises(errors.ForeignKeyViolation):
        conn.execute("UPDATE subscribers SET id = gen_random_uuid() WHERE id = %s", (subscriber_id,))
    conn.execute("UPDATE mailouts SET id = id, subject = 'Other' WHERE id = %s", (mailout_id,))


def test_a_subscriber_deleted_during_a_page_is_forgotten_once_the_page_commits(database_url, conn):
    """The snapshot's pages do not lock subscribers (the foreign key did):
    the DELETE's trigger waits for the page under way, then sees its rows."""
    ann, bo = add_subscribers(conn, ["ann@x.org", "bo@x.org"])
    mailout_id = add_mailout(conn)
    runner_id = uuid.uuid4()
    deleted = threading.Event()

    def delete_ann():
        with psycopg.connect(database_url, autocommit=True) as deleter:
            deleter.execute("DELETE FROM subscribers WHERE id = %s", (ann,))
        deleted.set()

    with psycopg.connect(database_url, **db.connect_kwargs()) as claimer:
        assert store.claim_mailout(claimer, mailout_id, runner_id)
        assert store.start_queuing(claimer, mailout_id) == 2
        claimer.commit()
        assert store.queue_page(claimer, mailout_id, runner_id, 10) == store.QueuePage(2, 0, True)
        thread = threading.Thread(target=delete_ann)
        thread.start()
        assert not deleted.wait(0.5)
        claimer.commit()
    thread.join(10)

    assert deleted.is_set()
    assert ledger_subscribers(conn, mailout_id) == {"ann@x.org": None, "bo@x.org": bo}


def test_a_page_waits_for_a_subscriber_delete_under_way_and_the_claim_does_not(database_url, pool, conn):
    ann, bo = add_subscribers(conn, ["ann@x.org", "bo@x.org"])
    mailout_id = add_mailout(conn)

    with psycopg.connect(database_url) as deleter:
        deleter.execute("DELETE FROM subscribers WHERE id = %s", (ann,))
        claim = sender.claim_mailout(pool, mailout_id)
        thread = threading.Thread(target=lambda: queue_everyone(pool, claim))
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()
        deleter.commit()
    thread.join(10)

    # Counted at the claim, when the DELETE had not committed; then the rows.
    assert claim.recipients == 2
    assert mailout_row(conn, mailout_id)["recipients"] == 1
    assert ledger_subscribers(conn, mailout_id) == {"bo@x.org": bo}
    assert ledger(conn, mailout_id) == {"bo@x.org": "queued"}


def ledger_subscribers(conn, mailout_id) -> dict:
    rows = conn.execute("SELECT email, subscriber_id FROM send_logs WHERE mailout_id = %s", (mailout_id,)).fetchall()
    return {row["email"]: row["subscriber_id"] for row in rows}


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
