"""`mailout edit` and `mailout delete`: only while a mailout is a draft or
ready, with the same content checks as `mailout create`, and never racing a
claim into sending a changed mailout."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from amazonsender import db, store
from amazonsender.cli import main
from amazonsender.store import drafts
from tests.support.db import add_mailout, add_subscribers, mailout_row


@pytest.fixture
def invoke(database_url):
    env = {"PYTHON_DOTENV_DISABLED": "1", "APP_ENV": "production", "DATABASE_URL": database_url}

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


@pytest.mark.parametrize("status", ["draft", "ready"])
def test_edit_changes_the_subject_and_the_body_of_a_draft_or_ready_mailout(invoke, conn, tmp_path, status):
    mailout_id = add_mailout(conn, status=status, subject="Old", body="<p>old</p>")
    source = tmp_path / "new.md"
    source.write_text("# New\n\nText.\n")

    result = invoke("mailout", "edit", mailout_id, "--subject", "  New subject ", "--markdown", source)

    assert result.exit_code == 0, result.output
    assert result.output == f"mailout {mailout_id}: subject and body changed\n"
    row = mailout_row(conn, mailout_id)
    assert (row["subject"], row["status"]) == ("New subject", status)
    assert "<h1>New</h1>" in row["body"]


def test_edit_of_the_subject_alone_keeps_the_body(invoke, conn):
    mailout_id = add_mailout(conn, status="draft", body="<p>kept</p>")

    result = invoke("mailout", "edit", mailout_id, "--subject", "Only this")

    assert result.exit_code == 0 and result.output == f"mailout {mailout_id}: subject changed\n"
    assert (mailout_row(conn, mailout_id)["subject"], mailout_row(conn, mailout_id)["body"]) == ("Only this", "<p>kept</p>")


def test_edit_of_the_body_alone_from_html(invoke, conn, tmp_path):
    mailout_id = add_mailout(conn, status="ready", subject="Kept")
    source = tmp_path / "new.html"
    source.write_bytes("\ufeff<p>Grüße</p>".encode())

    result = invoke("mailout", "edit", mailout_id, "--html", source)

    assert result.exit_code == 0 and result.output == f"mailout {mailout_id}: body changed\n"
    assert (mailout_row(conn, mailout_id)["subject"], mailout_row(conn, mailout_id)["body"]) == ("Kept", "<p>Grüße</p>")


@pytest.mark.parametrize("status", ["sending", "sent", "failed", "paused"])
def test_edit_and_delete_are_refused_once_sending_started(invoke, conn, status):
    mailout_id = add_mailout(conn, status=status, subject="As sent")

    edit = invoke("mailout", "edit", mailout_id, "--subject", "Changed")
    delete = invoke("mailout", "delete", mailout_id)

    for result, done in ((edit, "edited"), (delete, "deleted")):
        assert result.exit_code == 1
        assert f"mailout {mailout_id} is '{status}': only a draft or a ready mailout can be {done}" in result.output
    row = mailout_row(conn, mailout_id)
    assert (row["subject"], row["status"]) == ("As sent", status)


@pytest.mark.parametrize(
    ("args", "content", "expected"),
    [
        ((), None, "give --subject TEXT, --html FILE or --markdown FILE"),
        (("--subject", "  "), None, "--subject must not be empty"),
        (("--subject", "Two\nlines"), None, "a line break (LF) at character 4"),
        (("--markdown",), "   \n", "the body file is empty"),
        (("--html",), "<p>a\x00b</p>", "NUL character"),
    ],
)
def test_edit_checks_the_content_as_create_does(invoke, conn, tmp_path, args, content, expected):
    mailout_id = add_mailout(conn, status="draft", subject="Kept", body="<p>kept</p>")
    if content is not None:
        source = tmp_path / "body"
        source.write_text(content)
        args = (*args, source)

    result = invoke("mailout", "edit", mailout_id, *args)

    assert result.exit_code == 2, result.output  # a usage error
    assert expected in result.output
    row = mailout_row(conn, mailout_id)
    assert (row["subject"], row["body"]) == ("Kept", "<p>kept</p>")


def test_edit_takes_one_body_file_at_most(invoke, conn, tmp_path):
    mailout_id = add_mailout(conn, status="draft")
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "a.html").write_text("a")

    result = invoke("mailout", "edit", mailout_id, "--markdown", tmp_path / "a.md", "--html", tmp_path / "a.html")

    assert result.exit_code == 2 and "at most one of --html FILE or --markdown FILE" in result.output


def test_delete_removes_a_draft_or_ready_mailout(invoke, conn):
    draft = add_mailout(conn, status="draft", subject="Draft one")
    ready = add_mailout(conn, status="ready", subject="Ready one")

    for mailout_id, status, subject in ((draft, "draft", "Draft one"), (ready, "ready", "Ready one")):
        result = invoke("mailout", "delete", mailout_id)
        assert result.exit_code == 0, result.output
        assert result.output == f"deleted mailout {mailout_id} ({status}): {subject}\n"
        assert conn.execute("SELECT 1 FROM mailouts WHERE id = %s", (mailout_id,)).fetchone() is None


def test_edit_and_delete_of_an_unknown_mailout(invoke):
    unknown = uuid.uuid4()
    for args in (("edit", unknown, "--subject", "S"), ("delete", unknown)):
        result = invoke("mailout", *args)
        assert result.exit_code == 1 and f"no mailout with id {unknown}" in result.output


def test_a_mailout_with_ledger_rows_is_never_deleted(conn):
    """Cannot happen through the service (a claim leaves 'ready' as it
    writes the ledger); the statement refuses all the same."""
    mailout_id = add_mailout(conn, status="ready")
    conn.execute("INSERT INTO send_logs (mailout_id, email, status) VALUES (%s, 'a@example.org', 'sent')", (mailout_id,))

    assert drafts.delete_mailout(conn, mailout_id) is None
    assert mailout_row(conn, mailout_id)["status"] == "ready"


def test_an_edit_waiting_on_a_claim_changes_nothing(database_url, conn):
    """The claim holds the mailout's row until it commits; the edit and the
    delete that waited for it then find it 'sending' and leave it alone."""
    add_subscribers(conn, ["a@example.org"])
    mailout_id = add_mailout(conn, status="ready", subject="As claimed")
    results = {}
    with psycopg.connect(database_url, **db.connect_kwargs()) as claimer:
        assert store.claim_mailout(claimer, mailout_id, uuid.uuid4())

        def edit_and_delete():
            with psycopg.connect(database_url, autocommit=True, **db.connect_kwargs()) as other:
                results["edit"] = drafts.edit_mailout(other, mailout_id, "Changed", None)
                results["delete"] = drafts.delete_mailout(other, mailout_id)

        thread = threading.Thread(target=edit_and_delete)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), "the edit did not wait for the claim"
        claimer.commit()
        thread.join(timeout=10)

    assert results == {"edit": False, "delete": None}
    row = mailout_row(conn, mailout_id)
    assert (row["subject"], row["status"]) == ("As claimed", "sending")
