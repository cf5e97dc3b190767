"""`python -m bench` (`make bench`): run every section, print the table."""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from contextlib import ExitStack

from . import capacity, endpoints, profiling, sending, sweep
from .context import Context, service_supports_concurrency
from .options import Options
from .options import ROOT
from .report import Row, describe_code, format_table, machine, rows_as_dicts
from .service import BenchDatabase, StandIn, home_dir, postgres_server

METHOD = """\
method:
  service   `python -m gunicorn wsgi:app` from the repository root (gunicorn.conf.py: gthread,
            WEB_CONCURRENCY workers x GUNICORN_THREADS threads), APP_ENV=production, a database of
            its own on the Postgres server (dropped at the end); a fresh gunicorn per run
  SES       bench/standin.py in its own process: asyncio, TCP_NODELAY, keep-alive, a fixed latency
            before each answer; it keeps the receive time (CLOCK_MONOTONIC) of every email
  send      POST /send-mailout (202, the send goes on in the worker); followed at the stand-in until
            done, or paused with `UPDATE mailouts SET status='paused'` at a count or time cap
  rate      (emails - 1) / (last receive - first receive); "most in 1 s": largest count in any
            window [t, t + 1 s) over the receive times
  CPU       user+system of the gunicorn workers (psutil) from the webhook to the end, / emails
  memory    RSS of the worker that sent, sampled every 50 ms from the webhook to the end
  bare loop boto3 sesv2 send_email, N threads sharing one client, same Config as the service,
            same stand-in, from this process
  HTTP      gunicorn bench.snsapp:app (create_app() with only the SNS certificate fetcher
            replaced by one that reads the benchmark's own certificate: no network); distinct
            signed Delivery notifications and distinct unsubscribe tokens, by wrk (or a Python
            generator) over keep-alive connections on loopback
  409s      N POST /send-mailout on pre-opened connections released by one barrier
  sweep     the service's defaults (no SEND_CONCURRENCY, no BATCH_SIZE) at RATE_LIMIT_PER_SEC 500
            (GetAccount MaxSendRate 1,000) per SES latency and at 10,000; steady pace = emails in
            [first + warm-up, first + BENCH_SWEEP_SECONDS) / that span; kill -9: SIGKILL to gunicorn's
            master and workers mid-send, rows 'sending'/'unknown' counted, the service started again
            (HEARTBEAT_STALE_SECONDS lowered) resumes by itself; every address counted at the stand-in
"""


def wait_for_quiet(limit: float = 30.0, threshold: float = 25.0) -> float:
    """Wait (bounded) until the machine is nearly idle before a section, as
    other work on the two cores (a test run) skews every number here.
    Returns the last one-second CPU use of the whole machine, in percent."""
    import psutil

    deadline = time.monotonic() + limit
    busy = psutil.cpu_percent(interval=1.0)
    while busy > threshold and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
    return busy


def main() -> int:
    options = Options.from_env()
    options.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    rows: list[Row] = []
    raw: dict = {}
    failures = 0
    with ExitStack() as stack:
        server_url = stack.enter_context(postgres_server(options.out))
        database = BenchDatabase(server_url, migrations=options.service_root / "sql").create()
        stack.callback(database.drop)
        info = machine(database.server_version())
        info["code"] = describe_code(options.service_root, ROOT)
        print("machine:")
        for name, value in info.items():
            print(f"  {name:9} {value}")
        print(METHOD)
        supported = service_supports_concurrency(options.service_root)
        print(
            f"options: {'quick' if options.quick else 'full'}; SEND_CONCURRENCY={options.concurrency}"
            f" ({'read by this build' if supported else 'NOT read by this build: one email at a time'});"
            f" SES latency {options.ses_latency_ms:g} ms; load tool {options.load_tool};"
            f" sections {', '.join(options.sections)}; logs in {options.out}\n",
            flush=True,
        )
        standin = stack.enter_context(StandIn(options.ses_latency_ms, options.out))
        home = stack.enter_context(home_dir())
        ctx = Context(options, database, standin, home, options.out, rows, raw)
        sections = {
            "capacity": capacity.capacity,
            "pacing": sending.pacing,
            "throughput": sending.throughput,
            "webhooks": endpoints.webhooks,
            "http": endpoints.http_endpoints,
            "sizes": sending.sizes,
            "sweep": sweep.sweep,
        }
        for name, function in sections.items():
            if name not in options.sections:
                continue
            busy = wait_for_quiet()
            print(f"== {name} (machine {busy:.0f}% busy before it)", flush=True)
            raw.setdefault("busy_before", {})[name] = busy
            if busy > 25:
                rows.append(Row(name, f"WARNING: the machine was {busy:.0f}% busy before this section",
                                "other processes may have skewed it"))
            started = time.monotonic()
            try:
                function(ctx)
                if name == "throughput" and options.profile:
                    profiling.profile(ctx)
            except Exception as exc:  # noqa: BLE001 - one section's failure must not lose the rest
                failures += 1
                traceback.print_exc()
                rows.append(Row(name, f"{name} FAILED", f"{type(exc).__name__}: {str(exc)[:200]}"))
            raw.setdefault("section_seconds", {})[name] = round(time.monotonic() - started, 1)
    total = time.monotonic() - began
    print()
    print(format_table(rows))
    print(f"\nbench took {total:.0f} s; details in {options.out / 'results.json'}")
    (options.out / "results.json").write_text(
        json.dumps(
            {"machine": info, "options": {k: str(v) for k, v in vars(options).items()}, "rows": rows_as_dicts(rows),
             "raw": raw, "seconds": round(total, 1)},
            indent=2,
            default=str,
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
