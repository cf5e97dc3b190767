"""Getting a list in and out: CSV import and export. No Flask, no click.

An import only ever adds: an address already on the list keeps its status,
so an unsubscribed, bounced or complained address is never reactivated by a
re-import of an old spreadsheet.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from psycopg_pool import ConnectionPool

from .addresses import AddressError, clean_name, normalize_address

IMPORT_BATCH_ROWS = 2000
EXPORT_COLUMNS = ("email", "name", "status", "status_updated_at", "created_at")


class ImportFileError(Exception):
    """The file cannot be imported at all (no `email` column, not CSV)."""


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


def read_rows(file: TextIO, report: ImportReport) -> Iterator[tuple[str, str | None]]:
    """Yield (address, name) for each valid, first-seen row; record the rest."""
    reader = csv.DictReader(file)
    columns = {name.strip().lower(): name for name in (reader.fieldnames or []) if name}
    if "email" not in columns:
        raise ImportFileError("the CSV file needs a header row with an 'email' column (and optionally 'name')")
    email_column, name_column = columns["email"], columns.get("name")
    seen = set()
    for row in reader:
        line = reader.line_num
        raw = (row.get(email_column) or "").strip()
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
        name = clean_name(row.get(name_column)) if name_column else ""
        yield address, name or None


def import_csv(
    pool: ConnectionPool, file: TextIO, *, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Add the file's new addresses as 'active' subscribers, in batches."""
    report = ImportReport()
    for batch in chunks(read_rows(file, report), IMPORT_BATCH_ROWS):
        with pool.connection() as conn:
            add_batch(conn, batch, report)
        if progress:
            progress(len(batch))
    return report


def add_batch(conn, batch: list[tuple[str, str | None]], report: ImportReport) -> None:
    addresses = [address for address, _ in batch]
    # Who is there already, and with which status, before this batch.
    rows = conn.execute(
        "SELECT lower(email) AS address, status FROM subscribers WHERE lower(email) = ANY(%s)",
        ([a.lower() for a in addresses],),
    ).fetchall()
    existing = {row["address"]: row["status"] for row in rows}
    # One statement per batch; the unique index on lower(email) turns a
    # race with another import into "already there", never an error.
    cur = conn.execute(
        """
        INSERT INTO subscribers (email, from_name, status)
        SELECT address, name, 'active' FROM unnest(%s::text[], %s::text[]) AS new (address, name)
        ON CONFLICT ((lower(email))) DO NOTHING
        """,
        (addresses, [name for _, name in batch]),
    )
    report.added += cur.rowcount
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
    list never sits in memory. Returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with pool.connection() as conn:
        with conn.cursor(name="subscribers_export") as cursor:
            cursor.execute(
                """
                SELECT email, from_name, status, status_updated_at, created_at FROM subscribers
                 WHERE %(status)s::text IS NULL OR status = %(status)s
                 ORDER BY created_at, email
                """,
                {"status": status},
            )
            for row in cursor:
                writer.writerow(
                    [
                        row["email"],
                        row["from_name"] or "",
                        row["status"],
                        row["status_updated_at"].isoformat() if row["status_updated_at"] else "",
                        row["created_at"].isoformat(),
                    ]
                )
                count += 1
    return count


def count_by_status(pool: ConnectionPool) -> dict[str, int]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM subscribers GROUP BY status ORDER BY status")
        return {row["status"]: row["n"] for row in rows}


def unsubscribe_address(pool: ConnectionPool, address: str) -> tuple[str, str] | None:
    """Unsubscribe by address, for a request that came by reply or by hand.
    The address matches in any case, as the list's unique index does. The
    rule is the link's (store.unsubscribe): only an active subscriber
    changes, a bounced or complained one keeps its stronger status. Returns
    (the address as stored, its status before), or None when it is not on
    the list."""
    from . import store

    with pool.connection() as conn:
        # FOR UPDATE: the status reported is the one the update saw, even if
        # an SES event arrives for the same address meanwhile.
        row = conn.execute(
            "SELECT id, email, status FROM subscribers WHERE lower(email) = lower(%s) FOR UPDATE",
            (address.strip(),),
        ).fetchone()
        if row is None:
            return None
        store.unsubscribe(conn, row["id"])
    return row["email"], row["status"]
