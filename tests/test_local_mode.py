"""Local mode from a newcomer's two terminals: `make run` (the `dev`
command) in one, the command line in the other. Links made in the second
point where the first serves, and no command prints warnings every time."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
import time

import psutil
import pytest
import requests

from amazonsender import local
from tests.support.db import add_mailout
from tests.support.settings import ROOT
from tests.support.processes import clean_env, free_port, stop_process_group


def local_env(home, **values) -> dict:
    """APP_ENV=local for a process run in `home`, a directory of its own (its
    .local/ and outbox/ are there), with the code from the repository."""
    return clean_env(home, APP_ENV="local", PYTHONPATH=str(ROOT), **values)


def cli(home, *args, **values) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amazonsender", *map(str, args)],
        cwd=home, env=local_env(home, **values), capture_output=True, text=True, timeout=120,
    )


def unsubscribe_link(outbox) -> str:
    [path] = outbox.glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    path.unlink()
    return message["List-Unsubscribe"].strip("<>")


@pytest.fixture
def make_run(tmp_path, database_url):
    """`dev` serving from tmp_path on a port that is not the default one."""
    for name in ("wsgi.py", "gunicorn.conf.py"):
        (tmp_path / name).symlink_to(ROOT / name)
    port = free_port()
    env = local_env(tmp_path, DATABASE_URL=database_url, PORT=str(port), WEB_CONCURRENCY="1", GUNICORN_THREADS="2")
    log = open(tmp_path / "dev.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "amazonsender", "dev"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(proc, port, tmp_path)
        yield proc, port
    finally:
        stop_process_group(proc)
        log.close()


def wait_until_serving(proc, port, home, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (home / "dev.log").read_text()
        try:
            if (home / ".local" / "service.json").exists() and requests.get(
                f"http://127.0.0.1:{port}/healthz", timeout=2
            ).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail((home / "dev.log").read_text())


def test_links_made_in_a_second_terminal_point_where_make_run_serves(make_run, conn, tmp_path, database_url):
    proc, port = make_run
    note = json.loads((tmp_path / ".local" / "service.json").read_text())
    assert note == {"base_url": f"http://localhost:{port}", "pid": proc.pid}
    mailout_id = add_mailout(conn)

    result = cli(tmp_path, "mailout", "test", mailout_id, "--to", "reader@example.org", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    assert unsubscribe_link(tmp_path / "outbox").startswith(f"http://localhost:{port}/unsubscribe?token=")

    # APP_BASE_URL set by hand still wins.
    result = cli(tmp_path, "mailout", "test", mailout_id, "--to", "reader@example.org", DATABASE_URL=database_url,
                 APP_BASE_URL="https://links.example.test")
    assert result.returncode == 0, result.stderr
    assert unsubscribe_link(tmp_path / "outbox").startswith("https://links.example.test/unsubscribe?token=")

    # Once the service is gone, so is its note.
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.wait(timeout=20)
    assert not (tmp_path / ".local" / "service.json").exists()
    result = cli(tmp_path, "mailout", "test", mailout_id, "--to", "reader@example.org", DATABASE_URL=database_url)
    assert unsubscribe_link(tmp_path / "outbox").startswith("http://localhost:3000/unsubscribe?token=")


def test_a_note_left_by_a_service_that_is_gone_is_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local.record_service("http://localhost:4321")
    assert local.running_service_url() == "http://localhost:4321"

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    local.SERVICE_FILE.write_text(json.dumps({"base_url": "http://localhost:4321", "pid": gone.pid}))
    assert local.running_service_url() is None
    local.forget_service()  # not ours: left alone
    assert local.SERVICE_FILE.exists()

    local.SERVICE_FILE.write_text("{not json")
    assert local.running_service_url() is None


def test_the_embedded_postgres_prints_nothing_on_every_call(tmp_path):
    """No DATABASE_URL: each command starts (or joins) the embedded Postgres
    in .local/pgdata, and stops it when it was the last to use it."""
    # clean_env leaves XDG_RUNTIME_DIR unset, as on a server without a login
    # session: what made platformdirs warn.
    upgrade = cli(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    for noise in ("XDG_RUNTIME_DIR", "Warning", "pg_ctl", "exiting", "server started", "server stopped"):
        assert noise not in upgrade.stderr, upgrade.stderr

    for _ in range(2):
        listed = cli(tmp_path, "mailout", "list")
        assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
