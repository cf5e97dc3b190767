"""gunicorn settings, read when gunicorn starts from the repository root."""

import os
import re
import sys
import tempfile

from gunicorn.glogging import Logger

from amazonsender.logs import escape_controls

# Where to listen: BIND (host:port, or several separated by spaces or commas),
# else every interface on $PORT, which a container needs: Docker forwards the
# published port to the container's own address. deploy/amazonsender.service
# sets BIND=127.0.0.1:3000, so that on a VPS only nginx, on the same host,
# reaches gunicorn. Read from the real environment: .env is loaded later.
# A BIND that is set but blank, or an entry without a host (":3000", which
# gunicorn reads as every interface), is refused: a stray `BIND=` line in
# /etc/amazonsender.env must not quietly open gunicorn to the world.
_BIND_ENTRY = re.compile(r"unix:\S+|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}|[^\s:\[\],]+:[0-9]{1,5}", re.ASCII)


def _bind(value: str | None) -> list[str]:
    if value is None:
        return [f"0.0.0.0:{os.environ.get('PORT', '3000')}"]
    entries = value.replace(",", " ").split()
    bad = [entry for entry in entries if not _BIND_ENTRY.fullmatch(entry)]
    if not entries or bad:
        raise SystemExit(f"BIND must be host:port (several separated by commas), not {value!r}")
    return entries


bind = _bind(os.environ.get("BIND"))
# Threaded workers: the worker's heartbeat to the master runs in its own loop,
# so a request that sends a mailout synchronously (wait=true) or a send that
# goes on after a 202 is never killed by the worker timeout.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 30
accesslog = "-"
# The path without the query string: unsubscribe tokens stay out of the log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


class AccessLogger(Logger):
    """gunicorn's logger, computing only the fields access_log_format uses.
    gunicorn's own `atoms` also copies every request and response header and
    the environ for every request: 5–8 % of a worker's CPU under load
    (BENCHMARKS.md, section 5). The path is percent-decoded: its control
    characters are escaped, so that a request cannot forge a log line."""

    def atoms(self, resp, req, environ, request_time):
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": escape_controls(environ.get("PATH_INFO", "")),
            "s": status,
            "b": "-" if sent is None else str(sent),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }


logger_class = AccessLogger
# gunicorn 27 opens a control socket in $HOME/.gunicorn by default, shared by
# every gunicorn the user runs; we do not use gunicornc.
control_socket_disable = True


# Metrics from all workers: prometheus_client writes each process's values to
# files in this directory (fresh for every start), and /metrics adds them up.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="amazonsender-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """Check the settings once, in the master, before any worker starts, and
    refuse to start with one clear message listing every problem."""
    from dotenv import load_dotenv

    from amazonsender.config import ConfigError, Settings

    load_dotenv()
    try:
        Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)


# How long a stopping worker waits for its background sends to record their
# batch and pause (the email in flight finishes first); below
# graceful_timeout, after which the master kills the worker.
BACKGROUND_STOP_SECONDS = 25


def post_worker_init(worker):
    """On SIGTERM (a deploy, `docker stop`), tell every mailout this worker is
    sending to pause after the email in flight, then let gunicorn begin its
    own graceful shutdown. Then make log records lean and take the loaded
    app out of the garbage collector's sight."""
    import gc
    import signal

    from amazonsender.logs import lean_log_records
    from amazonsender.sender import request_stop

    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        request_stop("SIGTERM")
        if callable(gunicorn_handler):
            gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    lean_log_records()

    # Resume interrupted mailouts (a deploy, a crash): a daemon thread that
    # stops with the SIGTERM above. Here, not in create_app, so that only a
    # serving process watches.
    from amazonsender.web import start_auto_resume

    app = getattr(worker, "wsgi", None)
    if app is not None:
        start_auto_resume(app)

    # The app and the libraries it imported (some 100,000 objects) live as
    # long as the worker. A full collection walked them all, about 65 ms
    # during which every thread of the worker stood still: the slowest
    # /ses-events answers under load. Frozen, they are never walked again
    # and a full collection takes under a millisecond (BENCHMARKS.md,
    # section 5). Collect first, so that no garbage is frozen with them.
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """Sends started by a webhook or resumed by the watcher run in threads of
    their own, which would die with the process: wait for them to record
    their last batch."""
    import time

    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", {})
    threads = list(extensions.get("background_sends", []))
    watcher = extensions.get("auto_resume")
    if watcher is not None:
        threads += watcher.runs
    deadline = time.monotonic() + BACKGROUND_STOP_SECONDS
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
