"""The operator's command line: import, export, count, create, ready, list, test."""

from __future__ import annotations

import csv
import email
import email.policy
import io

import pytest

from amazonsender import store
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, take_rows


def test_import_reports_a_summary_and_bad_lines(invoke, conn, tmp_path):
    add_subscribers(conn, ["gone@example.org"], status="unsubscribed")
    path = tmp_path / "list.csv"
    path.write_text("email,name\nann@Example.org,Ann\nbroken,X\ngone@example.org,\nann@example.org,again\n")
    result = invoke("subscribers", "import", path)
    assert result.exit_code == 0, result.output
    assert "added 1, already there 0, suppressed 1" in result.output
    assert "invalid 1" in result.output and "duplicates in the file 1" in result.output
    assert "line 3: 'broken'" in result.output
    rows = {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM subscribers")}
    assert rows == {"ann@example.org": "active", "gone@example.org": "unsubscribed"}


def test_import_of_a_big_file_shows_progress(invoke, conn, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(6000)))
    result = invoke("subscribers", "import", path)
    assert result.exit_code == 0 and "added 6000" in result.output
    assert "importing" in result.output  # the progress bar's label


def test_import_without_an_email_column_fails_clearly(invoke, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name\nAnn\n")
    result = invoke("subscribers", "import", path)
    assert result.exit_code != 0 and "'email' column" in result.output


def test_export_and_count(invoke, conn):
    add_subscribers(conn, ["a@example.org", "b@example.org"])
    add_subscribers(conn, ["c@example.org"], status="bounced")
    result = invoke("subscribers", "export", "--status", "active")
    assert [r["email"] for r in csv.DictReader(io.StringIO(result.output))] == ["a@example.org", "b@example.org"]
    result = invoke("subscribers", "count")
    assert "active        2" in result.output and "bounced       1" in result.output and "total         3" in result.output


def test_create_from_markdown_then_ready_then_list(invoke, conn, tmp_path):
    source = tmp_path / "news.md"
    source.write_text("# Spring\n\nHello **readers**.\n\n- one\n- two\n")
    result = invoke("mailout", "create", "--subject", "Spring news", "--markdown", source)
    assert result.exit_code == 0, result.output
    mailout_id = result.output.strip()
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "draft" and "<h1>Spring</h1>" in row["body"] and "<strong>readers</strong>" in row["body"]
    assert invoke("mailout", "ready", mailout_id).exit_code == 0
    assert mailout_row(conn, mailout_id)["status"] == "ready"
    again = invoke("mailout", "ready", mailout_id)
    assert again.exit_code != 0 and "'ready', not 'draft'" in again.output
    listing = invoke("mailout", "list").output
    assert mailout_id in listing and "Spring news" in listing and "ready" in listing


def test_list_and_status_count_the_ledger_during_the_first_batch(invoke, pool, conn):
    add_subscribers(conn, [f"r{i}@example.org" for i in range(12)])
    draft = add_mailout(conn, status="draft")
    mailout_id = add_mailout(conn)
    claim_and_queue(pool, mailout_id)
    # What a run commits before its first email leaves: its first batch, taken.
    with pool.connection() as connection:
        taken, _ = take_rows(connection, mailout_id, 5)

    def listed() -> dict:
        with pool.connection() as connection:
            return {row["id"]: row for row in store.list_mailouts(connection, 20)}

    rows = listed()
    assert rows[mailout_id]["counts"] == {"queued": 7, "sending": 5} and rows[mailout_id]["recipients"] == 12
    assert rows[draft]["counts"] is None
    status = invoke("mailout", "status", mailout_id).output
    assert "  queued    7" in status and "  sending   5" in status
    # Outcomes show as soon as they are recorded.
    with pool.connection() as connection:
        store.record_outcomes(
            connection, mailout_id, [store.Outcome(row.log_id, "sent", f"msg-{i}") for i, row in enumerate(taken[:2])]
        )
    assert listed()[mailout_id]["counts"] == {"queued": 7, "sending": 3, "sent": 2}
    status = invoke("mailout", "status", mailout_id).output
    assert "  sending   3" in status and "  sent      2" in status
    listing = invoke("mailout", "list").output
    assert f"{mailout_id}  sending           2/12" in listing


def test_create_from_html_ready_at_once(invoke, conn, tmp_path):
    source = tmp_path / "news.html"
    source.write_text("<p>Hi</p>")
    mailout_id = invoke("mailout", "create", "--subject", "Hi", "--html", source, "--ready").output.strip()
    assert mailout_row(conn, mailout_id)["status"] == "ready"


def test_create_needs_exactly_one_body(invoke, tmp_path):
    source = tmp_path / "a.html"
    source.write_text("<p>x</p>")
    assert invoke("mailout", "create", "--subject", "S").exit_code != 0
    assert invoke("mailout", "create", "--subject", "S", "--html", source, "--markdown", source).exit_code != 0


def test_mailout_test_sends_to_given_addresses_without_changing_state(invoke, conn, standin):
    add_subscribers(conn, ["reader@example.org"])
    mailout_id = add_mailout(conn, status="draft", subject="Draft news")
    for _ in range(2):
        result = invoke("mailout", "test", mailout_id, "--to", "me@example.test", "--to", "you@example.test")
        assert result.exit_code == 0, result.output
    assert [r.to_addresses[0] for r in standin.sent] == ["me@example.test", "you@example.test"] * 2
    message = email.message_from_bytes(standin.sent[0].raw, policy=email.policy.default)
    assert message["Subject"] == "[TEST] Draft news"
    assert mailout_row(conn, mailout_id)["status"] == "draft" and ledger(conn, mailout_id) == {}


def test_mailout_test_without_recipients_says_what_to_do(invoke, conn):
    mailout_id = add_mailout(conn)
    result = invoke("mailout", "test", mailout_id)
    assert result.exit_code != 0 and "TEST_EMAILS" in result.output


def test_unsubscribe_by_hand_in_any_case(invoke, conn):
    add_subscribers(conn, ["Ann@Example.org", "bob@example.org"])
    result = invoke("subscribers", "unsubscribe", "ann@example.ORG")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "unsubscribed Ann@Example.org (it was active)"
    statuses = {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM subscribers")}
    assert statuses == {"Ann@Example.org": "unsubscribed", "bob@example.org": "active"}
    again = invoke("subscribers", "unsubscribe", "Ann@Example.org")
    assert again.exit_code == 0 and "already unsubscribed" in again.output


def test_unsubscribe_by_hand_keeps_a_bounce_or_complaint(invoke, conn):
    add_subscribers(conn, ["b@example.org"], status="bounced")
    add_subscribers(conn, ["c@example.org"], status="complained")
    for address, status in (("b@example.org", "bounced"), ("c@example.org", "complained")):
        result = invoke("subscribers", "unsubscribe", address)
        assert result.exit_code == 0, result.output
        assert f"'{status}'" in result.output and "left as it is" in result.output
    statuses = {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM subscribers")}
    assert statuses == {"b@example.org": "bounced", "c@example.org": "complained"}


def test_unsubscribe_by_hand_of_an_address_not_on_the_list_fails(invoke, conn):
    add_subscribers(conn, ["ann@example.org"])
    result = invoke("subscribers", "unsubscribe", "nobody@example.org")
    assert result.exit_code == 1
    assert "nobody@example.org is not on the list" in result.output
    assert invoke("subscribers", "unsubscribe", "  ").exit_code == 2  # a usage error
    assert conn.execute("SELECT status FROM subscribers").fetchone()["status"] == "active"


# --- files that cannot be read (the real command line, in a process of its own) ---------------

GOOD_ROWS = "".join(f"r{i}@example.org,Reader {i}\n" for i in range(4500))


def cli(tmp_path, database_url, *args):
    from tests.support.processes import clean_env, run_cli

    return run_cli(*map(str, args), env=clean_env(tmp_path, DATABASE_URL=database_url), tmp_path=tmp_path)


def fails_cleanly(result, *expected: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def subscriber_count(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM subscribers").fetchone()["n"]


def test_a_latin_1_row_after_two_batches_imports_nothing(conn, database_url, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(("email,name\n" + GOOD_ROWS).encode() + "zoë@example.org,Zoë\n".encode("latin-1"))
    fails_cleanly(cli(tmp_path, database_url, "subscribers", "import", path),
                  "line 4502 is not UTF-8: save the file as UTF-8")
    assert subscriber_count(conn) == 0


def test_a_field_over_the_csv_limit_imports_nothing(conn, database_url, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,name\n" + GOOD_ROWS + "late@example.org," + "x" * (csv.field_size_limit() + 1) + "\n")
    fails_cleanly(cli(tmp_path, database_url, "subscribers", "import", path),
                  f"line 4502: a field is longer than {csv.field_size_limit()} characters")
    assert subscriber_count(conn) == 0


def test_an_unclosed_quote_is_reported_at_the_line_where_it_opens(conn, database_url, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text('email,name\nann@example.org,"Ann\n' + GOOD_ROWS * 2)
    fails_cleanly(cli(tmp_path, database_url, "subscribers", "import", path), "line 2: a field is longer than")
    assert subscriber_count(conn) == 0


@pytest.mark.parametrize(
    "content, expected",
    [
        ("email,name\nann@example.org,Ann\n".encode("utf-16"), "UTF-16"),
        ("email,name\nann@example.org,Ann\n".encode("utf-16-le"), "line 1 contains a NUL character"),
        (bytes(range(256)) * 40, "line 1 contains a NUL character: the file is binary"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1 is not UTF-8"),
        (b"email\nann@example.org\n" + b"\xed\xa0\x80@example.org\n", "line 3 is not UTF-8"),
    ],
    ids=["utf-16", "utf-16-without-bom", "binary", "png", "encoded-surrogate"],
)
def test_a_file_that_is_not_utf_8_text_imports_nothing(conn, database_url, tmp_path, content, expected):
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    fails_cleanly(cli(tmp_path, database_url, "subscribers", "import", path), expected)
    assert subscriber_count(conn) == 0


def test_a_utf_8_file_with_a_bom_and_crlf_line_ends_imports(conn, database_url, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "email,name\r\nzoe@example.org,Zoë\r\nbroken,X\r\n".encode())
    result = cli(tmp_path, database_url, "subscribers", "import", path)
    assert result.returncode == 0, result.stderr
    assert "added 1" in result.stdout and "line 3: 'broken'" in result.stderr
    assert conn.execute("SELECT email, from_name FROM subscribers").fetchall() == [
        {"email": "zoe@example.org", "from_name": "Zoë"}
    ]


@pytest.mark.parametrize("option", ["--html", "--markdown"])
def test_create_from_a_file_that_is_not_utf_8_fails_cleanly(conn, database_url, tmp_path, option):
    source = tmp_path / "news.txt"
    source.write_bytes("<p>Hello</p>\n<p>Grüße</p>\n".encode("latin-1"))
    fails_cleanly(cli(tmp_path, database_url, "mailout", "create", "--subject", "S", option, source),
                  "line 2 is not UTF-8: save the file as UTF-8")
    assert conn.execute("SELECT count(*) AS n FROM mailouts").fetchone()["n"] == 0


def test_create_from_a_utf_8_file_with_a_bom_drops_the_bom(conn, database_url, tmp_path):
    source = tmp_path / "news.html"
    source.write_bytes(b"\xef\xbb\xbf" + "<p>Grüße</p>".encode())
    result = cli(tmp_path, database_url, "mailout", "create", "--subject", "S", "--html", source)
    assert result.returncode == 0, result.stderr
    assert mailout_row(conn, result.stdout.strip())["body"] == "<p>Grüße</p>"


def test_sending_a_draft_says_the_command_that_makes_it_ready(invoke, conn):
    draft = add_mailout(conn, status="draft")
    result = invoke("mailout", "send", str(draft))
    assert result.exit_code == 1
    assert f"mailout {draft}: mailout is 'draft', not 'ready'" in result.output
    assert f"make it ready first: python -m amazonsender mailout ready {draft}" in result.output
    assert mailout_row(conn, draft)["status"] == "draft"
