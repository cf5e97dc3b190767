"""`python -m amazonsender <command>`: the command line's main group; each group of commands lives in a module of its own."""

from __future__ import annotations

import click
from dotenv import load_dotenv

from . import database, dev, mailouts, notion, sending, subscribers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """AmazonSender: send one newsletter through Amazon SES, exactly once.

    Settings come from the environment and from a .env file at the
    repository root (see .env.example). With APP_ENV=local the commands
    need nothing configured: an embedded Postgres in .local/ when
    DATABASE_URL is unset, emails written to outbox/ as .eml files when no
    AWS keys are set, and links to the service `make run` started.

    \b
    A first mailout, locally (ID is what `mailout create` prints):
      make run                       # the service, in a terminal of its own
      export APP_ENV=local           # then, in another terminal:
      python -m amazonsender subscribers import list.csv
      python -m amazonsender mailout create --subject "May news" --markdown may.md
      python -m amazonsender mailout test ID --to you@example.org
      python -m amazonsender mailout ready ID
      python -m amazonsender mailout send ID

    Each command explains itself: python -m amazonsender COMMAND --help
    """
    load_dotenv()


main.add_command(database.db)
main.add_command(mailouts.mailout)
for command in (sending.mailout_send, sending.mailout_resume, sending.mailout_test, notion.mailout_preview):
    mailouts.mailout.add_command(command)
main.add_command(subscribers.subscribers_group)
main.add_command(dev.dev)
