"""What the logs may hold (issue 12, items 4 and 5).

At LOG_LEVEL=debug botocore would log every SendEmail request: the raw email
in base64, with its body, its address and a working unsubscribe token. The
service keeps library loggers at INFO or above whatever LOG_LEVEL says, and
these tests read the logs of real processes (the command line and gunicorn,
with SES replaced by the stand-in) the way an attacker would: raw, and with
every base64-looking run decoded (and the quoted-printable inside it).

In text format a value from a request (a TopicArn, a path) cannot start a
log line of its own: control characters are escaped, one line per record.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import quopri
import re
import sys
import time

import pytest
import requests

from amazonsender import logs
from tests.support.db import add_mailout, add_subscribers
from tests.support.settings import SHARED_SECRET, UNSUBSCRIBE_SECRET
from tests.support.processes import run_cli, run_gunicorn, service_env, start_send, wait_for_status
from tests.support.ses_standin import SesStandIn
from tests.support.sns_signing import CERT_URL, TOPIC_ARN

BODY_MARKER = "Quokkaparade"
ADDRESS = "leaky.reader@example.org"
AWS_SECRET = "standin-secret-key"
INJECTED = "\nFAKE level=error forged"
# A log line starts with a time (our text format, gunicorn's error log), an
# address (gunicorn's access log) or "{" (our JSON format).
LINE_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|127\.0\.0\.1 |\{)")


@pytest.fixture
def ses():
    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        yield standin


# --- reading the logs as an attacker would -------------------------------------


BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")


def readings(text: str, depth: int = 3):
    """`text`, then what every base64-looking run in it decodes to (standard
    and URL-safe alphabets), and the quoted-printable decoding of each, down
    to `depth` levels (a MIME part in base64 inside the request body)."""
    yield text
    if depth == 0:
        return
    for run in set(BASE64_RUN.findall(text)):
        run = run.rstrip("=")
        run = run[: len(run) - len(run) % 4]
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                data = decode(run + "==")
            except (binascii.Error, ValueError):
                continue
            decoded = data.decode("utf-8", errors="replace")
            yield from readings(decoded, depth - 1)
            yield quopri.decodestring(data).decode("utf-8", errors="replace")


def exposed(text: str, secrets: dict[str, str]) -> set[str]:
    """The names of the `secrets` that `text` gives away, raw or decoded."""
    found = set()
    for reading in readings(text):
        found.update(name for name, value in secrets.items() if value in reading)
    return found


def test_the_reader_finds_what_a_debug_log_of_a_send_would_give_away():
    """The reading itself: the raw email, base64 in a botocore-like line,
    quoted-printable inside, gives away its body and token."""
    raw = (
        "To: a@example.org\r\nList-Unsubscribe: <https://x.test/unsubscribe?token=tok.en-1_2>\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + "x" * 70 + "Quokka=\r\nparade\r\n"
    )
    data = base64.b64encode(raw.encode()).decode()
    line = f"DEBUG botocore.endpoint: Making request with params: {{'body': b'{{\"Raw\": {{\"Data\": \"{data}\"}}}}'}}"
    secrets = {"body": BODY_MARKER, "token": "tok.en-1_2", "secret": SHARED_SECRET}
    assert exposed(line, secrets) == {"body", "token"}


def secrets_of(ses: SesStandIn) -> dict[str, str]:
    """What must never be in a log: the email's body and address, every
    unsubscribe token the stand-in received, and the three secrets."""
    secrets = {
        "body": BODY_MARKER,
        "address": ADDRESS,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "EXECUTOR_SHARED_SECRET": SHARED_SECRET,
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
    }
    assert ses.sent, "nothing was sent: the test would prove nothing"
    for i, record in enumerate(ses.sent):
        [token] = re.findall(r"token=([^>&\s]+)", record.message["List-Unsubscribe"])
        secrets[f"unsubscribe token {i}"] = token
    return secrets


def assert_one_line_per_record(log: str) -> None:
    lines = [line for line in log.splitlines() if line.strip()]
    strays = [line for line in lines if not LINE_START.match(line)]
    assert not strays, "lines that are not the start of a record:\n" + "\n".join(strays)


# --- item 4: no body, token or secret at LOG_LEVEL=debug ----------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("bulk", ["auto", "off"])  # SendBulkEmail, SendEmail (raw MIME in base64)
def test_mailout_send_at_debug_logs_no_body_token_or_secret(database_url, conn, ses, tmp_path, log_format, bulk):
    add_subscribers(conn, [ADDRESS, "second.reader@example.org"])
    mailout_id = add_mailout(conn, body=f"<h1>Hello</h1><p>{BODY_MARKER} news.</p>")
    env = service_env(tmp_path, database_url, ses, LOG_LEVEL="debug", LOG_FORMAT=log_format, SES_BULK_SEND=bulk)

    result = run_cli("mailout", "send", str(mailout_id), env=env, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    assert len(ses.sent) == 2
    output = result.stdout + "\n" + result.stderr
    assert exposed(output, secrets_of(ses)) == set(), output[-4000:]


def test_gunicorn_at_debug_logs_no_body_token_or_secret_and_one_line_per_record(database_url, conn, tmp_path):
    add_subscribers(conn, [ADDRESS, "second.reader@example.org"])
    mailout_id = add_mailout(conn, body=f"<h1>Hello</h1><p>{BODY_MARKER} news.</p>")
    with SesStandIn() as ses:
        ses.set_account(max_send_rate=10_000)
        env = service_env(
            tmp_path, database_url, ses, LOG_LEVEL="debug", LOG_FORMAT="text", SNS_TOPIC_ARNS=TOPIC_ARN
        )
        with run_gunicorn(env, tmp_path) as server:
            start_send(server, mailout_id)
            wait_for_status(server, mailout_id, "sent")
            send_forgeries(server.url)
            log = wait_for_log(server, "FAKE", count=2)

    assert exposed(log, secrets_of(ses)) == set(), log[-4000:]
    assert_one_line_per_record(log)
    # Both forged values did reach the log, escaped.
    assert "\\nFAKE level=error forged" in log
    assert log.count("FAKE") == log.count("\\nFAKE") >= 2


# --- item 5: one line per record -------------------------------------------------------


def send_forgeries(url: str) -> None:
    """A TopicArn (refused before any signature check, so no certificate is
    fetched) and a path, each with a newline and a forged record after it."""
    envelope = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:other" + INJECTED,
        "Message": "{}",
        "Timestamp": "2024-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "Signature": base64.b64encode(b"not a signature").decode(),
    }
    response = requests.post(url + "/ses-events", data=json.dumps(envelope), timeout=10)
    assert 400 <= response.status_code < 500, response.text
    response = requests.get(url + "/nowhere%0AFAKE%20level=error%20forged%1B[2J", timeout=10)
    assert response.status_code == 404


def wait_for_log(server, needle: str, count: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while server.log(tail=None).count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.log(tail=None)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_forged_topic_is_one_escaped_line_in_either_format(database_url, tmp_path, log_format):
    with SesStandIn() as ses:
        env = service_env(tmp_path, database_url, ses, LOG_FORMAT=log_format, SNS_TOPIC_ARNS=TOPIC_ARN)
        with run_gunicorn(env, tmp_path) as server:
            send_forgeries(server.url)
            log = wait_for_log(server, "FAKE", count=2)

    assert_one_line_per_record(log)
    [topic_line] = [line for line in log.splitlines() if "123456789012:other" in line]
    if log_format == "json":
        assert json.loads(topic_line)["message"].endswith("other" + INJECTED + " is not in SNS_TOPIC_ARNS")
    else:
        assert "other\\nFAKE level=error forged is not in SNS_TOPIC_ARNS" in topic_line
    # gunicorn's access log, in either format: the decoded path.
    [access_line] = [line for line in log.splitlines() if "/nowhere" in line]
    assert '"GET /nowhere\\nFAKE level=error forged\\x1b[2J" 404' in access_line


def record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("amazonsender.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def raised() -> tuple:
    try:
        raise ValueError("bad\nFAKE line\r\x1b[31m\x85\u2028\u2029")
    except ValueError:
        return sys.exc_info()


def test_the_text_formatter_escapes_controls_in_the_message_its_args_and_the_traceback():
    formatter = logs.TextFormatter()
    text = formatter.format(record("topic %s\tfrom %r", "a\nFAKE\r\x00\x1b\x7f\x9f\u2028\u2029\u202e", "b\n"))
    assert text.endswith(
        "amazonsender.test: topic a\\nFAKE\\r\\x00\\x1b\\x7f\\x9f\\u2028\\u2029\\u202e\\tfrom 'b\\n'"
    )
    assert text.splitlines() == [text]

    text = formatter.format(record("failed on %s", "x\ny", exc_info=raised()))
    assert text.splitlines() == [text]
    assert "failed on x\\ny\\nTraceback (most recent call last):\\n" in text
    assert "ValueError: bad\\nFAKE line\\r\\x1b[31m\\x85\\u2028\\u2029" in text
    # Printable text, quotes and backslashes are left as they are.
    assert formatter.format(record("caf\u00e9 \"q\" C:\\dir")).endswith('caf\u00e9 "q" C:\\dir')


def test_the_json_formatter_writes_one_line_that_reads_back_exactly():
    message = "a\nFAKE\r\x00\x1b\x7f\x85\u2028\u2029 caf\u00e9"
    text = logs.JsonFormatter().format(record("topic %s", message, exc_info=raised()))
    assert text.splitlines() == [text] and text.isascii()
    entry = json.loads(text)
    assert entry["message"] == "topic " + message
    assert entry["exception"].endswith("ValueError: bad\nFAKE line\r\x1b[31m\x85\u2028\u2029")


# --- item 4: which loggers follow LOG_LEVEL -----------------------------------------

LIBRARIES = ("botocore", "botocore.endpoint", "boto3", "urllib3", "s3transfer", "psycopg", "psycopg.pool",
             "werkzeug", "requests", "flask")


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("amazonsender").level)
    yield
    for handler in root.handlers:
        if handler not in saved[1]:
            root.removeHandler(handler)
    root.setLevel(saved[0])
    logging.getLogger("amazonsender").setLevel(saved[2])


def test_libraries_stay_at_info_and_our_loggers_follow_log_level(restore_logging):
    logs.configure_logging("debug", "text")
    assert logging.getLogger("amazonsender.sender").isEnabledFor(logging.DEBUG)
    for name in LIBRARIES:
        # INFO, or the higher level a library chose (psycopg's is WARNING).
        assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO, name

    logs.configure_logging("warning", "text")
    for name in ("amazonsender.sender", *LIBRARIES):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


def test_a_library_that_sets_its_own_debug_level_still_does_not_reach_our_handler(restore_logging, capsys):
    logs.configure_logging("debug", "text")
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_amazonsender", False)]
    passed = [
        handler.filter(logging.LogRecord(name, logging.DEBUG, __file__, 1, "body", (), None))
        for name in ("botocore.endpoint", "amazonsendering", "amazonsender", "amazonsender.ses")
    ]
    assert [bool(p) for p in passed] == [False, False, True, True]
    assert handler.filter(logging.LogRecord("botocore", logging.INFO, __file__, 1, "credentials", (), None))
