"""problems.py: one table says what each domain error means over HTTP and on the command line."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from amazonsender import problems
from amazonsender.sender import AccountCannotSend, MailoutNotFound, MailoutNotReady, RunnerAlive

MAILOUT = "8b6f7f6e-6a43-4c8e-9d0e-0c1a52c1d2a1"


def example(kind: type[Exception]) -> Exception:
    """An instance of each kind, whatever its constructor asks for."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(kind.__init__).parameters.values()
    arguments = [p.name for p in parameters if p.kind in positional and p.name != "self"]
    values = {"status": "sent", "message": "a message", "age_seconds": 3.0}
    return kind(*[values.get(name, "x") for name in arguments]) if arguments else kind("a reason")


@pytest.mark.parametrize("kind", list(problems.ANSWERS), ids=lambda kind: kind.__name__)
def test_every_error_in_the_table_has_an_http_answer_and_a_cli_message(kind):
    exc = example(kind)
    code, message, extra = problems.http_answer(exc, mailout_id=MAILOUT)
    assert 400 <= code < 600 and message and isinstance(extra, dict)
    text, exit_code = problems.cli_message(exc, mailout_id=MAILOUT)
    assert text and exit_code in (1, 2)
    # Without a context, placeholders stand in: never a KeyError.
    assert problems.http_answer(exc)[1] and problems.cli_message(exc)[0]


def test_the_webhook_and_the_command_line_say_the_same_about_a_draft():
    code, message, extra = problems.http_answer(MailoutNotReady("draft"), mailout_id=MAILOUT)
    assert (code, extra) == (409, {"status": "draft"})
    assert f"mailout ready {MAILOUT}" in message
    text, exit_code = problems.cli_message(MailoutNotReady("draft"), mailout_id=MAILOUT)
    assert f"mailout ready {MAILOUT}" in text and exit_code == 1


def test_answers_as_the_webhook_has_always_given_them():
    assert problems.http_answer(MailoutNotFound(MAILOUT), mailout_id=MAILOUT) == (
        404, f"no mailout with id {MAILOUT}", {}
    )
    assert problems.http_answer(MailoutNotReady("sent"), mailout_id=MAILOUT) == (
        409, f"mailout {MAILOUT} is 'sent', not 'ready'", {"status": "sent"}
    )
    assert problems.http_answer(AccountCannotSend("disabled")) == (409, "disabled", {"status": "ready"})


def test_the_command_line_messages_are_today_s():
    assert problems.cli_message(MailoutNotFound(MAILOUT), mailout_id=MAILOUT) == (f"no mailout with id {MAILOUT}", 1)
    text, _ = problems.cli_message(RunnerAlive(12), mailout_id=MAILOUT)
    assert text.startswith(f"mailout {MAILOUT}: the mailout is being sent by a live run")


def test_an_error_the_table_does_not_know_is_a_500_and_its_own_text():
    assert problems.http_answer(KeyError("x"))[0] == 500
    assert problems.cli_message(RuntimeError("boom")) == ("boom", 1)


def test_only_the_web_package_loads_flask():
    code = (
        "import sys, amazonsender, amazonsender.cli, amazonsender.problems, amazonsender.sender;"
        "print('flask' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
