"""The processes a benchmark run needs, each started in a session of its own
and killed with its children on the way out: the SES stand-in, gunicorn, and
a database of its own on the Postgres server, dropped at the end."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from amazonsender import db

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SHARED_SECRET = "bench-shared-secret-0123456789"
UNSUBSCRIBE_SECRET = "bench-unsubscribe-secret-0123456789"
FROM_ADDRESS = "Newsletter <news@example.test>"
APP_BASE_URL = "https://news.example.test"
START_TIMEOUT = 30.0
LOOPBACK = "127.0.0.1"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session and everything in
    its session; gunicorn's graceful stop is not what is measured."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# --- Postgres -------------------------------------------------------------


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgres_server(workdir: Path):
    """The URL of a maintenance database on the server to use:
    TEST_DATABASE_URL's server, else 127.0.0.1:5432, else embedded pgserver."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield make_conninfo(url, dbname=conninfo_to_dict(url).get("dbname") or "postgres")
        return
    if _reachable(LOCAL_SERVER_URL):
        yield LOCAL_SERVER_URL
        return
    import pgserver

    server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


class BenchDatabase:
    """A database made for this run on `server_url`'s server, migrated."""

    def __init__(self, server_url: str, name: str | None = None, migrations: Path | None = None):
        self.server_url = server_url
        self.migrations = migrations or db.MIGRATIONS_DIR
        self.name = name or f"amazonsender_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = make_conninfo(server_url, dbname=self.name)

    @classmethod
    def existing(cls, url: str) -> BenchDatabase:
        """A database made and migrated by someone else (the tests)."""
        params = conninfo_to_dict(url)
        database = cls(make_conninfo(url, dbname="postgres"), name=params.get("dbname"))
        database.url = url
        return database

    def create(self) -> BenchDatabase:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        db.upgrade(self.url, self.migrations)
        return self

    def drop(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def connect(self):
        return psycopg.connect(self.url, autocommit=True, **db.connect_kwargs())

    def server_version(self) -> str:
        with self.connect() as conn:
            return conn.execute("SELECT version() AS v").fetchone()["v"]

    # -- data ----------------------------------------------------------

    def reset(self, subscribers: int) -> None:
        """No mailouts, no events, and exactly `subscribers` active ones."""
        with self.connect() as conn:
            conn.execute("TRUNCATE send_logs, ses_events, mailouts")
            count = conn.execute("SELECT count(*) AS n FROM subscribers").fetchone()["n"]
            if count > subscribers:
                conn.execute("TRUNCATE subscribers CASCADE")
                count = 0
            conn.execute("UPDATE subscribers SET status = 'active', soft_bounces = 0 WHERE status <> 'active'")
            if count < subscribers:
                self.seed(conn, count + 1, subscribers)

    @staticmethod
    def seed(conn, first: int, last: int) -> None:
        """Subscribers number `first`..`last`, in one INSERT ... SELECT."""
        conn.execute(
            """
            INSERT INTO subscribers (email, status)
            SELECT 'reader' || g || '@example.test', 'active' FROM generate_series(%s::int, %s::int) AS g
            """,
            (first, last),
        )
        conn.execute("VACUUM ANALYZE subscribers")

    def add_mailout(self, subject="Our news this month", body: str | None = None) -> uuid.UUID:
        with self.connect() as conn:
            return conn.execute(
                "INSERT INTO mailouts (subject, body, status) VALUES (%s, %s, 'ready') RETURNING id",
                (subject, body or NEWSLETTER_HTML),
            ).fetchone()["id"]

    def mailout_status(self, mailout_id) -> str:
        with self.connect() as conn:
            return conn.execute("SELECT status FROM mailouts WHERE id = %s", (mailout_id,)).fetchone()["status"]

    def pause(self, mailout_id) -> bool:
        """What an operator can do: the run stops at its next batch."""
        with self.connect() as conn:
            cur = conn.execute(
                "UPDATE mailouts SET status = 'paused', error = 'paused by the benchmark' "
                "WHERE id = %s AND status = 'sending'",
                (mailout_id,),
            )
            return cur.rowcount == 1

    def ledger_rows(self, mailout_id) -> int:
        with self.connect() as conn:
            return conn.execute(
                "SELECT count(*) AS n FROM send_logs WHERE mailout_id = %s", (mailout_id,)
            ).fetchone()["n"]

    def ledger_counts(self, mailout_id) -> dict[str, int]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT status, count(*) AS n FROM send_logs WHERE mailout_id = %s GROUP BY status", (mailout_id,)
            ).fetchall()
            return {row["status"]: row["n"] for row in rows}


# A newsletter of a realistic size (about 3 KB of HTML).
NEWSLETTER_HTML = (
    "<h1>Our news this month</h1>"
    + "".join(
        f"<h2>Story {n}</h2><p>{'Lorem ipsum dolor sit amet, consectetur adipiscing elit. ' * 5}"
        f'<a href="https://example.test/story/{n}">Read more</a></p>'
        for n in range(1, 8)
    )
    + "<p>Thanks for reading.</p>"
)


# --- the SES stand-in -------------------------------------------------------


class StandIn:
    """bench/standin.py in a process of its own, and its control requests."""

    def __init__(self, latency_ms: float, log_dir: Path):
        self.log_path = log_dir / "standin.log"
        self.latency_ms = latency_ms
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> StandIn:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.standin", "--latency-ms", str(self.latency_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            kill_group(self.proc)
            raise RuntimeError(f"the stand-in did not start: {line!r}; see {self.log_path}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _call(self, method: str, path: str) -> dict:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=30)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"stand-in {method} {path}: {response.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def stats(self, times: bool = False) -> dict:
        return self._call("GET", "/_bench/stats" + ("?times=1" if times else ""))

    def destinations(self) -> dict[str, int]:
        """Every address the stand-in sent to since the last reset, and how many emails each got."""
        return self._call("GET", "/_bench/stats?destinations=1")["destinations"]

    def set_max_send_rate(self, rate: float) -> None:
        """GetAccount's MaxSendRate from now on (the service paces at the lower
        of it and RATE_LIMIT_PER_SEC; the default is out of the way)."""
        self._call("POST", f"/_bench/account?max_rate={rate}")

    def reset(self) -> None:
        self._call("POST", "/_bench/reset")

    def set_latency(self, ms: float) -> None:
        self._call("POST", f"/_bench/latency?ms={ms}")
        self.latency_ms = ms

    def client_env(self) -> dict[str, str]:
        """Fake credentials and this endpoint, and no way to find real ones."""
        return {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "standin-access-key",
            "AWS_SECRET_ACCESS_KEY": "standin-secret-key",
            "AWS_ENDPOINT_URL_SESV2": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


# --- gunicorn -----------------------------------------------------------------


def service_env(home: Path, database_url: str, standin: StandIn, **values) -> dict[str, str]:
    """Production settings (APP_ENV=production, gunicorn.conf.py's defaults)
    pointing at the bench database and the stand-in. Nothing of the
    developer's environment leaks in; PYTHON_DOTENV_DISABLED keeps .env out."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHON_DOTENV_DISABLED": "1",
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "EXECUTOR_SHARED_SECRET": SHARED_SECRET,
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "APP_BASE_URL": APP_BASE_URL,
        "SES_FROM_EMAIL": FROM_ADDRESS,
        "POSTAL_ADDRESS": "Bench Newsletter, 1 Main Street, Springfield",
        **standin.client_env(),
    }
    env.update({name: str(value) for name, value in values.items() if value is not None})
    return env


@dataclass
class Gunicorn:
    """`python -m gunicorn <app>` from the repository root (so it reads
    gunicorn.conf.py), its output in a log file."""

    env: dict
    log_dir: Path
    app: str = "wsgi:app"
    root: Path = ROOT
    proc: subprocess.Popen | None = None
    port: int = 0
    log_path: Path | None = None

    def start(self) -> Gunicorn:
        self.port = free_port()
        self.log_path = self.log_dir / f"gunicorn-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", self.app],
                # From the copy under test (BENCH_SERVICE_ROOT): its wsgi.py,
                # gunicorn.conf.py and amazonsender/ come first on the path.
                cwd=self.root,
                env={**self.env, **self._pythonpath(), "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _pythonpath(self) -> dict:
        """A service run from another copy still imports bench/ and tests/
        (bench.snsapp) from this repository, after its own amazonsender."""
        return {} if self.root == ROOT else {"PYTHONPATH": str(ROOT)}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        expected = int(self.env.get("WEB_CONCURRENCY", "2"))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200 and len(self.workers()) >= expected:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become healthy in {START_TIMEOUT}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else ""

    def workers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def post_json(self, path: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()


@contextmanager
def home_dir():
    with tempfile.TemporaryDirectory(prefix="amazonsender-bench-home-") as path:
        yield Path(path)


# --- process accounting ---------------------------------------------------------


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_backends() -> list[psutil.Process]:
    """Every postgres process on this machine (the bench's backends among
    them); only their CPU deltas over a run are used."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            found.append(process)
    return found


@dataclass
class Monitor:
    """Samples the RSS of gunicorn's workers every `interval` seconds and
    takes CPU snapshots of the workers, the stand-in and Postgres."""

    server: Gunicorn
    standin_pid: int | None = None
    interval: float = 0.05
    peak_rss: dict[int, int] = field(default_factory=dict)
    start_rss: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.workers = self.server.workers()

    def start(self) -> Monitor:
        for worker in self.workers:
            rss = worker.memory_info().rss
            self.start_rss[worker.pid] = rss
            self.peak_rss[worker.pid] = rss
        self._pg = postgres_backends()
        self._cpu0 = self.snapshot()
        self._thread = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def snapshot(self) -> dict[str, float]:
        standin = [psutil.Process(self.standin_pid)] if self.standin_pid else []
        pg_now = postgres_backends()
        known = {p.pid for p in self._pg}
        self._pg.extend(p for p in pg_now if p.pid not in known)
        return {
            "workers": cpu_seconds(self.workers),
            "standin": cpu_seconds(standin),
            "postgres": cpu_seconds(self._pg),
            "per_worker": {w.pid: cpu_seconds([w]) for w in self.workers},
        }

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for worker in self.workers:
                try:
                    rss = worker.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                if rss > self.peak_rss.get(worker.pid, 0):
                    self.peak_rss[worker.pid] = rss

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=5)
        cpu1 = self.snapshot()
        per_worker = {pid: cpu1["per_worker"][pid] - self._cpu0["per_worker"].get(pid, 0.0) for pid in cpu1["per_worker"]}
        busiest = max(per_worker, key=per_worker.get) if per_worker else None
        return {
            "cpu_workers": cpu1["workers"] - self._cpu0["workers"],
            "cpu_standin": cpu1["standin"] - self._cpu0["standin"],
            "cpu_postgres": cpu1["postgres"] - self._cpu0["postgres"],
            "busiest_worker": busiest,
            "peak_rss": max(self.peak_rss.values()) if self.peak_rss else 0,
            "peak_rss_busiest": self.peak_rss.get(busiest, 0),
            "start_rss_busiest": self.start_rss.get(busiest, 0),
        }
