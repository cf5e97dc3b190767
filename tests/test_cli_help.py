"""`--help` on the group and on every command says what it does."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from amazonsender.cli import main


def commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


@pytest.mark.parametrize(("path", "command"), list(commands(main)), ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_every_command_explains_itself(path, command):
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="python -m amazonsender")

    assert result.exit_code == 0, result.output
    assert command.help and command.get_short_help_str(), path
    assert command.get_short_help_str().rstrip(".") in " ".join(result.output.split())
    if isinstance(command, click.Command) and not isinstance(command, click.Group) and command.params:
        # A command that takes arguments shows how it is called.
        assert "Example" in result.output, path


def test_the_group_shows_a_first_mailout_and_takes_h():
    result = CliRunner().invoke(main, ["-h"], prog_name="python -m amazonsender")

    assert result.exit_code == 0
    assert "APP_ENV=local" in result.output and "make run" in result.output
    assert "python -m amazonsender mailout create" in result.output
