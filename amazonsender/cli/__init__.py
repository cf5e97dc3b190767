"""`python -m amazonsender <command>`: the command line's main group; each group of commands lives in a module of its own."""

from __future__ import annotations

import click
from dotenv import load_dotenv

from . import database, dev, mailouts, sending, subscribers


@click.group()
def main():
    """AmazonSender: send one newsletter through Amazon SES, exactly once."""
    load_dotenv()


main.add_command(database.db)
main.add_command(mailouts.mailout)
for command in (sending.mailout_send, sending.mailout_resume, sending.mailout_test):
    mailouts.mailout.add_command(command)
main.add_command(subscribers.subscribers_group)
main.add_command(dev.dev)
