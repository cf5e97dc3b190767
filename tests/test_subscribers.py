"""CSV import and export of subscribers."""

from __future__ import annotations

import csv
import io
import time

import pytest

from amazonsender import subscribers
from tests.support.db import add_subscribers


def run_import(pool, text: str):
    return subscribers.import_csv(pool, io.StringIO(text))


def statuses(conn) -> dict[str, str]:
    return {r["email"]: r["status"] for r in conn.execute("SELECT email, status FROM subscribers")}


def test_import_adds_new_addresses_as_active_with_names(pool, conn):
    report = run_import(pool, "email,name\nann@Example.ORG,Ann\nbob@example.org,\n")
    assert report.to_dict() == {"added": 2, "already_there": 0, "suppressed": 0, "duplicates_in_file": 0,
                                "invalid": 0}
    rows = {r["email"]: r for r in conn.execute("SELECT email, from_name, status FROM subscribers")}
    # The domain is lower-cased; the local part keeps its case.
    assert set(rows) == {"ann@example.org", "bob@example.org"}
    assert rows["ann@example.org"]["from_name"] == "Ann" and rows["bob@example.org"]["from_name"] is None
    assert {r["status"] for r in rows.values()} == {"active"}


def test_import_never_reactivates_and_counts_what_was_there(pool, conn):
    add_subscribers(conn, ["gone@example.org"], status="unsubscribed")
    add_subscribers(conn, ["bad@example.org"], status="bounced")
    add_subscribers(conn, ["angry@example.org"], status="complained")
    add_subscribers(conn, ["here@example.org"])
    report = run_import(
        pool,
        "email\nGONE@example.org\nbad@EXAMPLE.org\nangry@example.org\nhere@example.org\nnew@example.org\n",
    )
    assert (report.added, report.already_there, report.suppressed) == (1, 1, 3)
    assert statuses(conn) == {
        "gone@example.org": "unsubscribed",
        "bad@example.org": "bounced",
        "angry@example.org": "complained",
        "here@example.org": "active",
        "new@example.org": "active",
    }


def test_bad_rows_are_reported_with_line_numbers(pool, conn):
    text = "email,name\nok@example.org,A\nnot-an-address,B\n,C\nx@@example.org,D\nok@EXAMPLE.org,dup\n"
    report = run_import(pool, text)
    assert [(line, value) for line, value, _ in report.invalid] == [
        (3, "not-an-address"),
        (4, ""),
        (5, "x@@example.org"),
    ]
    assert all(reason for _, _, reason in report.invalid)
    assert report.added == 1 and report.duplicates_in_file == 1
    assert statuses(conn) == {"ok@example.org": "active"}


@pytest.mark.parametrize("text", ["name\nAnn\n", "", "mail,name\nx@y.org,Z\n"])
def test_a_file_without_an_email_column_is_refused(pool, conn, text):
    with pytest.raises(subscribers.ImportFileError, match="email"):
        run_import(pool, text)
    assert statuses(conn) == {}


def test_header_names_are_case_insensitive(pool, conn):
    run_import(pool, "Email,Name\nann@example.org,Ann\n")
    assert statuses(conn) == {"ann@example.org": "active"}


def test_a_big_file_imports_in_batches(pool, conn):
    rows = "\n".join(f"reader{i}@example.org,Reader {i}" for i in range(20_000))
    seen = []
    started = time.monotonic()
    report = subscribers.import_csv(pool, io.StringIO("email,name\n" + rows + "\n"), progress=seen.append)
    elapsed = time.monotonic() - started
    assert report.added == 20_000
    assert sum(seen) == 20_000 and len(seen) == 20_000 // subscribers.IMPORT_BATCH_ROWS
    assert conn.execute("SELECT count(*) AS n FROM subscribers").fetchone()["n"] == 20_000
    print(f"imported 20,000 rows in {elapsed:.2f} s")


# --- files that cannot be read as a whole ----------------------------------------------


def test_a_bad_line_after_several_batches_imports_nothing(pool, conn, tmp_path):
    path = tmp_path / "list.csv"
    rows = "".join(f"r{i}@example.org\n" for i in range(subscribers.IMPORT_BATCH_ROWS * 2 + 500))
    path.write_bytes(b"email\n" + rows.encode() + b"caf\xe9@example.org\nlast@example.org\n")
    with subscribers.open_csv(path) as file, pytest.raises(subscribers.ImportFileError) as caught:
        subscribers.import_csv(pool, file)
    assert str(caught.value) == "line 4502 is not UTF-8: save the file as UTF-8"
    assert statuses(conn) == {}


def test_a_file_opened_without_open_csv_is_refused_without_a_line(pool, conn, tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"email\nann@example.org\n\xff\n")
    with open(path, encoding="utf-8", newline="") as file, pytest.raises(subscribers.ImportFileError, match="UTF-8"):
        subscribers.import_csv(pool, file)
    assert statuses(conn) == {}


def test_a_file_without_line_breaks_is_refused_at_its_first_line(pool, conn, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email\n" + "x" * subscribers.MAX_LINE_CHARS)
    with subscribers.open_csv(path) as file, pytest.raises(subscribers.ImportFileError, match="line 2 is longer"):
        subscribers.import_csv(pool, file)
    assert statuses(conn) == {}


def test_a_long_field_is_reported_where_its_record_begins(pool, conn):
    text = 'email,name\nann@example.org,Ann\n\nbob@example.org,"Bob\n' + "z@example.org,Z\n" * 10_000
    with pytest.raises(subscribers.ImportFileError, match="^line 4: a field is longer than 131072 characters"):
        run_import(pool, text)
    assert statuses(conn) == {}


UNCLOSED = "a double quote opened on this line is not closed on it"


def test_an_unclosed_quote_is_named_at_its_line_and_merges_no_rows(pool, conn):
    # Short enough for csv's field limit: csv alone would import ann with
    # the lines after it as her name, and bob and cy never.
    text = 'email,name\nzed@example.org,Zed\nann@example.org,"Ann\nbob@example.org,Bob\ncy@example.org,Cy\n'
    with pytest.raises(subscribers.ImportFileError) as caught:
        run_import(pool, text)
    assert str(caught.value).startswith(f"line 3: {UNCLOSED}")
    assert "close or remove the quote" in str(caught.value)
    assert statuses(conn) == {}


@pytest.mark.parametrize(
    "text, line",
    [
        # Closed by a quote further down: the rows in between would be one field.
        ('email,name\nann@example.org,"Ann\nbob@example.org,Bob"\ncy@example.org,Cy\n', 2),
        # Open at the end of the file, CRLF line ends.
        ('email,name\r\nann@example.org,Ann\r\n\r\nbob@example.org,"Bob\r\n', 4),
        # In the email column.
        ('email,name\n"ann@example.org,Ann\nbob@example.org,Bob\n', 2),
        # In the header.
        ('"email,name\nann@example.org,Ann\n', 1),
    ],
    ids=["closed-later", "open-at-the-end-crlf", "email-column", "header"],
)
def test_a_field_that_spans_lines_is_refused_where_it_begins(pool, conn, text, line):
    with pytest.raises(subscribers.ImportFileError, match=f"^line {line}: {UNCLOSED}"):
        run_import(pool, text)
    assert statuses(conn) == {}


def test_quoted_fields_on_one_line_still_import(pool, conn):
    report = run_import(pool, 'email,name\n"ann@example.org","Lee, Ann ""The Boss"""\nbob@example.org,"Bob"\n')
    assert report.added == 2
    names = {r["email"]: r["from_name"] for r in conn.execute("SELECT email, from_name FROM subscribers")}
    assert names == {"ann@example.org": 'Lee, Ann "The Boss"', "bob@example.org": "Bob"}


def test_checking_a_big_file_keeps_no_rows(tmp_path):
    """The first pass holds a line and a row at a time: its memory does not
    grow with the file."""
    import tracemalloc

    path = tmp_path / "big.csv"
    with open(path, "w") as out:
        out.write("email,name\n")
        out.writelines(f"reader{i}@example.org,Reader {i}\n" for i in range(200_000))
    with subscribers.open_csv(path) as file:
        tracemalloc.start()
        try:
            assert subscribers.check_csv(file) == 200_000
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 256 * 1024, peak  # the file is about 8 MB


def test_export_writes_csv_optionally_filtered(pool, conn):
    add_subscribers(conn, ["a@example.org", "b@example.org"], names={"a@example.org": "Ann, Jr."})
    add_subscribers(conn, ["c@example.org"], status="bounced")
    out = io.StringIO()
    assert subscribers.export_csv(pool, out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["email"] for r in rows] == ["a@example.org", "b@example.org", "c@example.org"]
    assert rows[0]["name"] == "Ann, Jr." and rows[2]["status"] == "bounced"
    out = io.StringIO()
    assert subscribers.export_csv(pool, out, status="bounced") == 1
    assert "c@example.org" in out.getvalue() and "a@example.org" not in out.getvalue()


def test_count_by_status(pool, conn):
    add_subscribers(conn, ["a@example.org", "b@example.org"])
    add_subscribers(conn, ["c@example.org"], status="unsubscribed")
    assert subscribers.count_by_status(pool) == {"active": 2, "unsubscribed": 1}


# --- unsubscribe by address (a request by reply) ------------------------------------


def row_of(conn, address: str) -> dict:
    return conn.execute("SELECT * FROM subscribers WHERE lower(email) = lower(%s)", (address,)).fetchone()


def test_unsubscribe_address_unsubscribes_an_active_subscriber_in_any_case(pool, conn):
    add_subscribers(conn, ["Ann@Example.org", "bob@example.org"])
    assert subscribers.unsubscribe_address(pool, "  ann@EXAMPLE.ORG ") == ("Ann@Example.org", "active")
    ann = row_of(conn, "ann@example.org")
    assert ann["status"] == "unsubscribed" and ann["status_updated_at"] is not None
    bob = row_of(conn, "bob@example.org")
    assert bob["status"] == "active" and bob["status_updated_at"] is None


def test_unsubscribe_address_twice_changes_nothing_the_second_time(pool, conn):
    add_subscribers(conn, ["ann@example.org"])
    subscribers.unsubscribe_address(pool, "ann@example.org")
    before = row_of(conn, "ann@example.org")
    assert subscribers.unsubscribe_address(pool, "ann@example.org") == ("ann@example.org", "unsubscribed")
    assert row_of(conn, "ann@example.org") == before


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_unsubscribe_address_keeps_a_stronger_status(pool, conn, status):
    add_subscribers(conn, ["gone@example.org"], status=status)
    before = row_of(conn, "gone@example.org")
    assert subscribers.unsubscribe_address(pool, "Gone@example.org") == ("gone@example.org", status)
    assert row_of(conn, "gone@example.org") == before


def test_unsubscribe_address_not_on_the_list(pool, conn):
    add_subscribers(conn, ["ann@example.org"])
    assert subscribers.unsubscribe_address(pool, "nobody@example.org") is None
    assert subscribers.unsubscribe_address(pool, "ann@example") is None  # no partial matches
    assert row_of(conn, "ann@example.org")["status"] == "active"
