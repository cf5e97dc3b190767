"""The operator's command line: import, export, count, create, ready, list, test."""

from __future__ import annotations

import csv
import email
import email.policy
import io

from tests.conftest import add_mailout, add_subscribers, ledger, mailout_row
from tests.test_resume import invoke, standin  # noqa: F401 - fixtures


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
