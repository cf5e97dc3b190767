"""Getting a list in and out: CSV import and export. No Flask, no click.

It reads and writes the CSV; its SQL is in store/subscribers.py. Erasure
and the suppression list an import honours are in erasure.py.

An import only ever adds: an address already on the list keeps its status,
so an unsubscribed, bounced or complained address is never reactivated by a
re-import of an old spreadsheet, and an erased one (on the suppression list)
is never added again.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TextIO

from psycopg_pool import ConnectionPool

from . import store
from .addresses import AddressError, clean_name, normalize_address
from .erasure import SuppressionKey, SuppressionKeyError, check_suppression_key  # noqa: F401 - the import's API

IMPORT_BATCH_ROWS = 2000
EXPORT_COLUMNS = ("email", "name", "status", "status_updated_at", "created_at")


# csv's own limit on one field (131,072 characters) is kept, and a field over
# it is reported with its line: an address has at most 254 characters and a
# name is cut to MAX_NAME_CHARS, so such a field is nearly always a double
# quote left open, swallowing the lines after it. A higher limit would only
# hold more of them in memory before the error; the limit is also
# process-wide, so it is not ours to change for one command. (A shorter
# field that spans lines is refused too: see _records.)
# A line is read at most this long: a file with no line breaks (a binary one)
# never sits in memory whole.
MAX_LINE_CHARS = 1 << 20

# OWASP's rule against CSV injection: a cell a spreadsheet would read as a
# formula (it begins with =, +, -, @, tab or carriage return) is written
# with a leading apostrophe, which spreadsheets show as text and hide.
# Cells that already begin with apostrophes before such a character get one
# more, so that reading undoes exactly what writing did (unescape_cell): an
# exported file imports the same addresses and names, "-ann@x.org" included.
_FORMULA_CELL = re.compile(r"'*[=+\-@\t\r]")
# What a file read by open_csv holds only where it is not UTF-8: the lone
# surrogates surrogateescape makes of those bytes.
_NOT_UTF_8 = re.compile("[\ud800-\udfff]")
_UTF_16_BOMS = ("\udcff\udcfe", "\udcfe\udcff")


class ImportFileError(Exception):
    """The file cannot be imported at all (no `email` column, not CSV, not
    UTF-8 text, a double quote left open); the message says why, with the
    line where it can."""


@dataclass
class ImportReport:
    added: int = 0
    already_there: int = 0
    suppressed: int = 0
    duplicates_in_file: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, value, reason)

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "already_there": self.already_there,
            "suppressed": self.suppressed,
            "duplicates_in_file": self.duplicates_in_file,
            "invalid": len(self.invalid),
        }


def open_csv(path: str | os.PathLike) -> TextIO:
    """A CSV file opened for check_csv and import_csv: UTF-8, with or without
    a BOM. Bytes that are not UTF-8 are read as lone surrogates
    (surrogateescape) rather than failing in the decoder, somewhere in a block
    of 8 KB: _lines then names the line they are on."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def check_csv(file: TextIO) -> int:
    """Read the whole file as import_csv would, writing nothing and keeping
    no rows; ImportFileError if it cannot be read. Returns the number of
    records after the header."""
    reader, _, _ = _open_reader(file)
    return sum(1 for _ in _records(reader))


def read_rows(file: TextIO, report: ImportReport) -> Iterator[tuple[str, str | None]]:
    """Yield (address, name) for each valid, first-seen row; record the rest."""
    reader, email_column, name_column = _open_reader(file)
    seen = set()
    for row in _records(reader):
        line = reader.line_num
        raw = _field(row, email_column).strip()
        try:
            address = normalize_address(raw)
        except AddressError as exc:
            report.invalid.append((line, raw, str(exc)))
            continue
        key = address.lower()
        if key in seen:
            report.duplicates_in_file += 1
            continue
        seen.add(key)
        # Stored as text: controls and line breaks as spaces, at most
        # MAX_NAME_CHARS, so that what the list holds is what readers see.
        name = clean_name(_field(row, name_column)) if name_column is not None else ""
        yield address, name or None


def _open_reader(file: TextIO) -> tuple[Iterator[list[str]], int, int | None]:
    """A csv reader past the header, and the header's email and name columns
    (a name given twice: the last, as csv.DictReader would)."""
    reader = csv.reader(_lines(file))
    header = next(_records(reader), [])
    # A NUL in a name is cleaned like any control (clean_name), but in the
    # header it means the file is not text: UTF-16 without a BOM (a NUL
    # after every ASCII letter), or binary.
    if any("\x00" in name for name in header):
        raise ImportFileError(
            f"line {reader.line_num} contains a NUL character: the file is binary or UTF-16, not CSV text;"
            " save the file as CSV in UTF-8"
        )
    columns = {name.strip().lower(): i for i, name in enumerate(header) if name}
    if "email" not in columns:
        raise ImportFileError("the CSV file needs a header row with an 'email' column (and optionally 'name')")
    return reader, columns["email"], columns.get("name")


def _field(row: list[str], column: int) -> str:
    return unescape_cell(row[column]) if column < len(row) else ""


def escape_cell(value: str) -> str:
    """A cell as export writes it: see _FORMULA_CELL."""
    return "'" + value if _FORMULA_CELL.match(value) else value


def unescape_cell(value: str) -> str:
    """What escape_cell did, undone, after leading white space (which the
    import strips anyway). A cell that begins with an apostrophe before
    anything else ("'ann@x.org", a valid address) is read as it is."""
    stripped = value.lstrip()
    if stripped.startswith("'") and _FORMULA_CELL.match(stripped, 1):
        return stripped[1:]
    return value


def _records(reader) -> Iterator[list[str]]:
    """The reader's rows but blank lines; a csv.Error becomes ImportFileError
    naming the line where its record begins (where a double quote was left
    open, not where the field ran over the limit).

    A record is one line. csv reads a double quote left open as a field that
    runs on, through the lines after it, to the next double quote or the
    end of the file: those rows would be merged into one and never imported,
    without a word. So a record that spans lines, or that ends inside its
    quote at the end of the file (its last field holds the line end), is
    refused at the line where it begins. A name or an address holds no
    line break anyway (the import makes line breaks in names spaces)."""
    while True:
        # csv.reader reads one record per call, a blank line being one.
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(_csv_problem(start, exc)) from None
        if reader.line_num > start or (row and row[-1].endswith(("\n", "\r"))):
            raise ImportFileError(
                f"line {start}: a double quote opened on this line is not closed on it (a field cannot span lines,"
                " and the rows after it would be read into it): close or remove the quote"
            )
        if row:
            yield row


def _csv_problem(line: int, exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return (
            f"line {line}: a field is longer than {csv.field_size_limit()} characters"
            " (or a double quote opened there is never closed)"
        )
    return f"line {line} is not CSV: {exc}"


def _lines(file: TextIO) -> Iterator[str]:
    """The file's lines, for csv; ImportFileError at the first that is not
    UTF-8 or is longer than MAX_LINE_CHARS."""
    number = 0
    try:
        for line in iter(partial(file.readline, MAX_LINE_CHARS), ""):
            number += 1
            if len(line) >= MAX_LINE_CHARS:
                raise ImportFileError(f"line {number} is longer than {MAX_LINE_CHARS - 1} characters: not a CSV list")
            if _NOT_UTF_8.search(line):
                raise ImportFileError(_not_utf_8_problem(number, line))
            yield line
    except UnicodeDecodeError:
        # A file opened without open_csv's surrogateescape: the decoder reads
        # ahead in blocks, so the line is not known.
        raise ImportFileError(f"the file is not UTF-8 (after line {number}): save the file as UTF-8") from None


def _not_utf_8_problem(number: int, line: str) -> str:
    if number == 1 and line.startswith(_UTF_16_BOMS):
        return "the file is UTF-16, not UTF-8: save the file as UTF-8 (in Excel: CSV UTF-8)"
    return f"line {number} is not UTF-8: save the file as UTF-8"


def import_csv(
    pool: ConnectionPool,
    file: TextIO,
    *,
    progress: Callable[[int], None] | None = None,
    suppression_key: SuppressionKey | None = None,
) -> ImportReport:
    """Add the file's new addresses as 'active' subscribers, in batches. The
    file is read twice, so it must be seekable (open_csv's is): first by
    check_csv, so that a file that cannot be read as a whole (not UTF-8, a
    broken line 10,000 rows down) adds nothing, then to import it."""
    start = file.tell()
    check_csv(file)
    file.seek(start)
    return import_checked_csv(pool, file, progress=progress, suppression_key=suppression_key)


def import_checked_csv(
    pool: ConnectionPool,
    file: TextIO,
    *,
    progress: Callable[[int], None] | None = None,
    suppression_key: SuppressionKey | None = None,
) -> ImportReport:
    """import_csv's second pass, for a caller that has run check_csv on the
    file itself (the command line, to size its progress bar). Should the file
    change in between, ImportFileError may still come after some batches.
    SuppressionKeyError, before anything is added, when the suppression list
    has entries and `suppression_key` is not the key they were made with."""
    with pool.connection() as conn:
        key = suppression_key if check_suppression_key(conn, suppression_key) else None
    report = ImportReport()
    for batch in chunks(read_rows(file, report), IMPORT_BATCH_ROWS):
        with pool.connection() as conn:
            add_batch(conn, batch, report, key)
        if progress:
            progress(len(batch))
    return report


def add_batch(
    conn, batch: list[tuple[str, str | None]], report: ImportReport, key: SuppressionKey | None = None
) -> None:
    """Add one batch; with `key`, addresses on the suppression list are left
    out and counted as suppressed."""
    if key is not None:
        hashes = {address: key.hash(address) for address, _ in batch}
        erased = store.suppressed_hashes(conn, list(hashes.values()))
        if erased:
            batch = [(address, name) for address, name in batch if hashes[address] not in erased]
            report.suppressed += len(hashes) - len(batch)
            if not batch:
                return
    # Who is there already, and with which status, before this batch.
    existing = store.statuses_by_address(conn, [address for address, _ in batch])
    report.added += store.add_active_subscribers(conn, batch)
    for status in existing.values():
        if status == "active":
            report.already_there += 1
        else:
            report.suppressed += 1


def chunks(rows: Iterable, size: int) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def export_csv(pool: ConnectionPool, out: TextIO, status: str | None = None) -> int:
    """Write subscribers as CSV, streamed with a server-side cursor so a big
    list never sits in memory. Returns the number of rows. Every cell is
    spreadsheet-safe (escape_cell): a name such as `=HYPERLINK(...)` is
    written `'=HYPERLINK(...)`."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with pool.connection() as conn:
        for row in store.stream_subscribers(conn, status):
            cells = [
                row["email"],
                row["from_name"] or "",
                row["status"],
                row["status_updated_at"].isoformat() if row["status_updated_at"] else "",
                row["created_at"].isoformat(),
            ]
            writer.writerow([escape_cell(cell) for cell in cells])
            count += 1
    return count


def count_by_status(pool: ConnectionPool) -> dict[str, int]:
    with pool.connection() as conn:
        return store.count_subscribers_by_status(conn)


def unsubscribe_address(pool: ConnectionPool, address: str) -> tuple[str, str] | None:
    """Unsubscribe by address, for a request that came by reply or by hand.
    The address matches in any case, as the list's unique index does. The
    rule is the link's (store.unsubscribe): only an active subscriber
    changes, a bounced or complained one keeps its stronger status. Returns
    (the address as stored, its status before), or None when it is not on
    the list."""
    with pool.connection() as conn:
        row = store.lock_subscriber_by_address(conn, address.strip())
        if row is None:
            return None
        store.unsubscribe(conn, row["id"])
    return row["email"], row["status"]
