"""`subscribers`: the list: import, export, count, unsubscribe, forget."""

from __future__ import annotations

import os
import sys

import click

from .common import database_pool

PROGRESS_BAR_ROWS = 5000
MAX_LISTED_INVALID = 50


@click.group("subscribers")
def subscribers_group():
    """The list: import, export, count, unsubscribe, forget.

    These need only DATABASE_URL (or APP_ENV=local).
    """


def suppression_key(required: bool):
    """erasure.key_from_environment, its refusal as the command's error."""
    from ..erasure import SuppressionKeyError, key_from_environment

    try:
        return key_from_environment(os.environ, required=required)
    except SuppressionKeyError as exc:
        raise click.ClickException(str(exc)) from None


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
def subscribers_import(csv_file: str):
    """Add the addresses of a CSV file (columns `email`, optional `name`) as
    active subscribers. Never reactivates an unsubscribed, bounced or
    complained address, and never adds an erased one (`subscribers forget`;
    checking the suppression list needs SUPPRESSION_SECRET or
    UNSUBSCRIBE_SECRET once it has entries). A cell that `subscribers
    export` wrote with a leading apostrophe (a formula character after it)
    is read without it, so an exported file imports as it was.

    \b
    Example (list.csv):
      email,name
      ann@example.org,Ann
      bob@example.org,
    """
    from .. import subscribers

    with subscribers.open_csv(csv_file) as file:
        # The whole file is read once before the database is touched: one
        # that cannot be read (not UTF-8, a broken line far down) adds nothing.
        try:
            rows = subscribers.check_csv(file)
        except subscribers.ImportFileError as exc:
            raise click.ClickException(f"{csv_file}: {exc}; nothing was imported") from None
        file.seek(0)
        key = suppression_key(required=False)
        with database_pool() as pool:
            try:
                if rows >= PROGRESS_BAR_ROWS:
                    with click.progressbar(length=rows, label="importing", file=sys.stderr) as bar:
                        report = subscribers.import_checked_csv(pool, file, progress=bar.update, suppression_key=key)
                else:
                    report = subscribers.import_checked_csv(pool, file, suppression_key=key)
            except subscribers.SuppressionKeyError as exc:
                raise click.ClickException(f"{exc}; nothing was imported") from None
            except subscribers.ImportFileError as exc:
                # Only when the file changed since it was checked.
                raise click.ClickException(f"{csv_file} changed while it was imported: {exc}") from None
    for line, value, reason in report.invalid[:MAX_LISTED_INVALID]:
        click.echo(f"line {line}: {value!r}: {reason}", err=True)
    if len(report.invalid) > MAX_LISTED_INVALID:
        click.echo(f"... and {len(report.invalid) - MAX_LISTED_INVALID} more invalid rows", err=True)
    click.echo(
        f"added {report.added}, already there {report.already_there}, suppressed {report.suppressed}"
        f" (unsubscribed, bounced, complained or erased: left as they are), invalid {len(report.invalid)},"
        f" duplicates in the file {report.duplicates_in_file}"
    )


@subscribers_group.command("export")
@click.option(
    "--status", type=click.Choice(["active", "unsubscribed", "bounced", "complained"]), help="Only these; default all."
)
def subscribers_export(status: str | None):
    """Write subscribers as CSV to standard output. Spreadsheet-safe: a cell
    beginning with =, +, -, @, a tab or a carriage return (a name such as
    `=HYPERLINK(...)`, an address such as `-ann@example.org`) is written
    with a leading apostrophe, so that a spreadsheet shows it as text and
    never runs it as a formula (OWASP's rule against CSV injection).
    `subscribers import` reads such cells without the apostrophe.

    \b
    Example:
      python -m amazonsender subscribers export --status active > active.csv
    """
    from .. import subscribers

    with database_pool() as pool:
        subscribers.export_csv(pool, sys.stdout, status)


@subscribers_group.command("count")
def subscribers_count():
    """Subscribers per status."""
    from .. import subscribers

    with database_pool() as pool:
        counts = subscribers.count_by_status(pool)
    for status, n in counts.items():
        click.echo(f"{status:<13} {n}")
    click.echo(f"{'total':<13} {sum(counts.values())}")


@subscribers_group.command("unsubscribe")
@click.argument("address")
def subscribers_unsubscribe(address: str):
    """Unsubscribe ADDRESS (any case) by hand, for a request that came by
    reply: what the unsubscribe link does. A bounced or complained address
    keeps its status, which stops every mailout already.

    \b
    Example:
      python -m amazonsender subscribers unsubscribe Ann@Example.org
    """
    from .. import subscribers

    if not address.strip():
        raise click.UsageError("ADDRESS must not be empty")
    with database_pool() as pool:
        found = subscribers.unsubscribe_address(pool, address)
    if found is None:
        raise click.ClickException(
            f"{address.strip()} is not on the list (in any case): nothing to unsubscribe."
            " Check the address the request came from; `subscribers export` lists them all"
        )
    stored, before = found
    if before == "active":
        click.echo(f"unsubscribed {stored} (it was active)")
    elif before == "unsubscribed":
        click.echo(f"{stored} was already unsubscribed: nothing changed")
    else:
        click.echo(f"{stored} is '{before}', which already stops every mailout: left as it is")


@subscribers_group.command("forget")
@click.argument("address")
def subscribers_forget(address: str):
    """Erase ADDRESS (any case) for good, as GDPR article 17 asks: its
    subscriber row goes; in the mailouts' ledger and the SES events the
    address is replaced by "forgotten:" and the start of its keyed hash, and
    the events' copies of the email headers (with the name) are removed; the
    counts and history stay. The hash (HMAC-SHA256 with a key from
    SUPPRESSION_SECRET, else UNSUBSCRIBE_SECRET) joins the suppression list,
    so `subscribers import` never adds the address again. An address that
    is not on the list is added to the suppression list all the same.
    Running it again changes nothing.

    \b
    Example:
      python -m amazonsender subscribers forget ann@example.org
    """
    from .. import erasure

    if not address.strip():
        raise click.UsageError("ADDRESS must not be empty")
    key = suppression_key(required=True)
    with database_pool() as pool:
        try:
            erased = erasure.forget_address(pool, address, key)
        except erasure.SuppressionKeyError as exc:
            raise click.ClickException(f"{exc}; nothing was erased") from None
    found = ", ".join(erased.subscribers) or "no subscriber"
    click.echo(
        f"erased {address.strip()}: {found} removed, {erased.ledger_rows} ledger rows and"
        f" {erased.events} SES events anonymised; "
        + ("added to the suppression list" if erased.newly_suppressed else "it was on the suppression list already")
    )

