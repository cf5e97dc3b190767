"""`mailout send/resume/test`: the commands that send email, with Ctrl-C and SIGTERM as an orderly stop."""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from uuid import UUID

import click

from ..config import Settings
from .common import Problem, load_settings, open_pool


@click.command("send")
@click.argument("mailout_id", type=click.UUID)
def mailout_send(mailout_id: UUID):
    """Claim a 'ready' mailout and send it now, like the webhook with wait.

    Every active subscriber gets it once; progress goes to stderr, a JSON
    summary to stdout; the exit status is 0 only when it ends 'sent'.
    Ctrl-C or SIGTERM stops it in order: the email in flight finishes, the
    rest stays queued and the mailout pauses (then `mailout resume`).

    \b
    Example:
      python -m amazonsender mailout send 3f2c9a4e-0000-4000-8000-000000000000
    """
    from .. import sender

    with running(load_settings()) as (settings, pool, transport):
        try:
            rate = sender.check_mailout_can_start(pool, transport, settings, mailout_id)
            claim = sender.claim_mailout(pool, mailout_id, rate_per_sec=rate)
        except (
            sender.MailoutNotFound,
            sender.MailoutNotReady,
            sender.MailoutInvalid,
            sender.AccountCannotSend,
            sender.SesUnavailable,
        ) as exc:
            raise Problem(exc, mailout_id=mailout_id) from None
        click.echo(f"mailout {mailout_id}: {claim.recipients} recipients, queuing and sending at {rate:g}/s...")
        summary = send_reported(settings, pool, transport, claim)
    finish_with(summary)


@click.command("resume")
@click.argument("mailout_id", type=click.UUID)
@click.option("--force", is_flag=True, help="Take over even if the heartbeat is fresh (only when that run is gone).")
@click.option(
    "--resend-unconfirmed",
    is_flag=True,
    help="Also send again the in-doubt emails SES published no event about within RECONCILE_AFTER"
    " (a lost event means a duplicate).",
)
def mailout_resume(mailout_id: UUID, force: bool, resend_unconfirmed: bool):
    """Finish a mailout whose run ended early ('sending' with no live run,
    'failed' or 'paused'). Emails that were in flight when it stopped are
    marked unknown and never sent again, unless an SES event about one says
    what became of it (then it is resolved by itself).

    With --resend-unconfirmed (opt-in), in-doubt emails still without any
    SES event RECONCILE_AFTER (default 30 minutes) after they were sent go
    out again, 'sent' mailouts included; only when SES published Send events
    for the mailout's other emails, the proof that a missing event means a
    missing email. An event SES lost means that person gets it twice.

    \b
    Examples:
      python -m amazonsender mailout resume 3f2c9a4e-0000-4000-8000-000000000000
      python -m amazonsender mailout resume 3f2c9a4e-0000-4000-8000-000000000000 --resend-unconfirmed
    """
    from .. import sender

    with running(load_settings()) as (settings, pool, transport):
        try:
            if resend_unconfirmed:
                claim = resend(pool, mailout_id, settings, force)
            else:
                claim = sender.resume_mailout(pool, mailout_id, settings, force=force)
        except (
            sender.MailoutNotFound,
            sender.MailoutNotResumable,
            sender.MailoutInvalid,
            sender.RunnerAlive,
            sender.NoSendEvents,
            sender.NothingToResend,
        ) as exc:
            raise Problem(exc, mailout_id=mailout_id) from None
        try:
            claim, queued, to_queue = sender.pace_resumed(pool, transport, settings, claim)
        except (sender.AccountCannotSend, sender.SesUnavailable) as exc:
            raise Problem(exc, mailout_id=mailout_id) from None
        click.echo(
            f"mailout {mailout_id}: resuming; {queued} still queued"
            + (f" and about {to_queue} still to queue" if to_queue else "")
            + f", {claim.in_doubt_marked} were in flight"
            " when the last run stopped (marked unknown, not resent)"
        )
        summary = send_reported(settings, pool, transport, claim)
    finish_with(summary)


def send_reported(settings: Settings, pool, transport, claim):
    """Send the claimed mailout; a mailout from a Notion page has Sending
    written to the page as it starts and its end state after (docs/notion.md),
    in the background, the command waiting a few seconds at most for them."""
    from .. import sender
    from ..notion.runs import command_reports

    with command_reports(settings, pool) as reports:
        reports.started(claim.mailout_id)
        summary = None
        try:
            summary = sender.send_claimed_mailout(pool, transport, settings, claim, progress=print_progress)
        finally:
            reports.ended(claim.mailout_id, summary)
    return summary


def resend(pool, mailout_id: UUID, settings: Settings, force: bool):
    """`--resend-unconfirmed`: says plainly what it costs, then what it did."""
    from .. import sender

    click.echo(
        "--resend-unconfirmed: in-doubt emails with no SES event after RECONCILE_AFTER"
        f" ({settings.reconcile_after_seconds} s) go out again. If SES did send one and its event was lost,"
        " that recipient gets a duplicate.",
        err=True,
    )
    result = sender.resend_unconfirmed(pool, mailout_id, settings, force=force)
    click.echo(
        f"mailout {mailout_id}: {result.requeued} in-doubt emails queued to be sent again;"
        f" {result.still_unknown} stay unknown (an SES event names them, or they are too recent)"
    )
    return result.claim


@contextmanager
def running(settings: Settings):
    """A pool and a transport for a synchronous send, with SIGTERM and
    Ctrl-C turned into an orderly stop: the email in flight finishes, the
    batch is recorded, the rest stays queued and the mailout pauses."""
    from .. import configure_logging, sender
    from ..ses import make_transport

    configure_logging(settings.log_level, settings.log_format)
    pool = open_pool(settings.database_url, size=settings.db_pool_size)
    previous = {}

    def on_signal(signum, frame):
        # Ctrl-C is a person's stop, never resumed by the service on its own;
        # SIGTERM (a service manager's) is resumed by the next live process.
        code = sender.StopReason.OPERATOR if signum == signal.SIGINT else sender.StopReason.SHUTDOWN
        sender.request_stop(signal.Signals(signum).name, code)

    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
        yield settings, pool, make_transport(settings)
    finally:
        pool.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def print_progress(counts: dict) -> None:
    click.echo("  " + ", ".join(f"{name} {n}" for name, n in counts.items()), err=True)


def finish_with(summary) -> None:
    click.echo(json.dumps(summary.to_dict(), indent=2))
    if summary.status != "sent":
        sys.exit(1)


@click.command("test")
@click.argument("mailout_id", type=click.UUID)
@click.option("--to", "addresses", multiple=True, help="A test address (repeatable); default TEST_EMAILS.")
def mailout_test(mailout_id: UUID, addresses: tuple[str, ...]):
    """Send the mailout to test addresses, subject prefixed [TEST], without
    changing its state. Repeatable, in any state.

    \b
    Example:
      python -m amazonsender mailout test ID --to editor@example.org --to me@example.org
    """
    from .. import sender

    settings = load_settings()
    recipients = list(addresses) or list(settings.test_emails)
    if not recipients:
        raise click.UsageError("no test recipients: set TEST_EMAILS or pass --to ADDRESS")
    bad = [a for a in recipients if not sender.is_one_test_address(a)]
    if bad:
        raise click.UsageError(f"not an email address: {bad[0]!r}")
    with running(settings) as (settings, pool, transport):
        try:
            results = sender.send_test(pool, transport, settings, mailout_id, recipients)
        except (sender.MailoutNotFound, sender.MailoutInvalid) as exc:
            raise Problem(exc, mailout_id=mailout_id) from None
    for result in results:
        click.echo(f"{result['status']:<6} {result['to']}  {result.get('ses_message_id') or result.get('error')}")
    if any(result["status"] != "sent" for result in results):
        sys.exit(1)

