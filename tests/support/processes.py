"""Running the service as separate processes in tests: a clean environment,
a real `gunicorn wsgi:app`, and the `python -m amazonsender` command line.

Every process is started in a session (process group) of its own, so that a
test can signal or kill it with all of its children, and always does so in
its teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.settings import FROM_ADDRESS, ROOT, SHARED_SECRET, UNSUBSCRIBE_SECRET
from tests.support.ses_standin import SesStandIn

START_TIMEOUT = 20.0


def clean_env(home: Path, **values) -> dict[str, str]:
    """Only what a process needs to run, so the developer's own settings
    never leak in; PYTHON_DOTENV_DISABLED keeps a stray .env out too. HOME is
    the test's own directory: no ~/.aws of the developer, and gunicorn's
    control socket ($HOME/.gunicorn/gunicorn.ctl) is not shared between
    servers."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env["PYTHON_DOTENV_DISABLED"] = "1"
    env.update(values)
    return env


def service_env(home: Path, database_url: str, ses: SesStandIn, **values) -> dict[str, str]:
    """Production settings pointing at `database_url` and the stand-in;
    `values` add to them or override them (RATE_LIMIT_PER_SEC, BATCH_SIZE...)."""
    settings = {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "EXECUTOR_SHARED_SECRET": SHARED_SECRET,
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "APP_BASE_URL": "https://news.example.test",
        "SES_FROM_EMAIL": FROM_ADDRESS,
        "POSTAL_ADDRESS": "Example Newsletter, 1 Main Street, Springfield",
        "RATE_LIMIT_PER_SEC": "1000",
        "BATCH_SIZE": "7",
        **ses.client_env(),
    }
    settings.update(values)
    return clean_env(home, **settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """Kill a process and everything in its session (gunicorn's master and
    workers). No graceful stop: it is not under test, and gunicorn's gthread
    worker can deadlock in its quit handler (seen about one stop in eight),
    which would cost graceful_timeout."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def log(self, tail: int | None = 4000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text


@contextmanager
def run_gunicorn(
    env: dict, tmp_path: Path, ready_path: str = "/healthz", ready_status: int | None = 200, app: str = "wsgi:app"
):
    """Start gunicorn from the repository root and wait until `ready_path`
    answers `ready_status` (any status when None). `app` may be
    bench.snsapp:app, the production app that takes its SNS signing
    certificate from BENCH_SNS_CERT_FILE instead of the network. Its stdout and stderr go
    to one log file. It is killed with its workers on the way out, whatever
    state the test left it in."""
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until_serving(server, ready_path, ready_status)
        yield server
    finally:
        stop_process_group(proc)


def wait_until_serving(server: Server, path: str, status: int | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.proc.returncode}:\n{server.log()}")
        try:
            response = requests.get(server.url + path, timeout=5)
            if status is None or response.status_code == status:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not answer {path} with {status} in {START_TIMEOUT}s:\n{server.log()}")


def wait_for_status(server: Server, mailout_id, status="sent", timeout=15.0) -> dict:
    """Poll GET /mailouts/<id> until the mailout has `status`; its answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            f"{server.url}/mailouts/{mailout_id}", headers={"Authorization": f"Bearer {SHARED_SECRET}"}, timeout=5
        ).json()
        if answer["status"] == status:
            return answer
        assert time.monotonic() < deadline, f"still {answer} after {timeout}s:\n{server.log()}"
        time.sleep(0.05)


def start_send(server: Server, mailout_id) -> dict:
    """POST /send-mailout without wait: 202, the send goes on in a worker."""
    response = requests.post(
        f"{server.url}/send-mailout",
        json={"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET},
        timeout=30,
    )
    assert response.status_code == 202, (response.status_code, response.text, server.log())
    return response.json()


# --- the command line ----------------------------------------------------------


@contextmanager
def cli_process(*args: str, env: dict, tmp_path: Path):
    """`python -m amazonsender <args>` in a session of its own, its stdout and
    stderr in files (a pipe nobody reads could fill up and block it); killed
    with its group on the way out."""
    name = "-".join(args[:2]) or "cli"
    stdout_path = tmp_path / f"cli-{name}-{time.monotonic_ns()}.out"
    stderr_path = stdout_path.with_suffix(".err")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amazonsender", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    proc.stdout_path = stdout_path
    proc.stderr_path = stderr_path
    try:
        yield proc
    finally:
        stop_process_group(proc)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        """The JSON summary `mailout send` and `mailout resume` print last."""
        return json.loads(self.stdout[self.stdout.index("{") :])


def finished(proc: subprocess.Popen, timeout: float) -> CliResult:
    """Wait (bounded) for a `cli_process` to end; what it printed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{proc.args} still running after {timeout}s:\n{proc.stderr_path.read_text(errors='replace')[-4000:]}"
        )
    return CliResult(
        proc.returncode,
        proc.stdout_path.read_text(errors="replace"),
        proc.stderr_path.read_text(errors="replace"),
    )


def run_cli(*args: str, env: dict, tmp_path: Path, timeout: float = 60.0) -> CliResult:
    with cli_process(*args, env=env, tmp_path=tmp_path) as proc:
        return finished(proc, timeout)
