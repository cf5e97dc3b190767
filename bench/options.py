"""Every knob of `make bench`, read from BENCH_* environment variables.

BENCH_QUICK=1 picks the smaller defaults (a smoke run of a minute or two);
any variable set explicitly wins over both sets of defaults.

| variable | full | quick | meaning |
|---|---|---|---|
| BENCH_QUICK | 0 | 1 | the quick defaults |
| BENCH_SECTIONS | all | all | comma list of capacity, pacing, throughput, webhooks, http, sizes, sweep |
| BENCH_CONCURRENCY | 32 | 32 | SEND_CONCURRENCY given to the service and threads of the bare boto3 loop (not in the sweep, which runs the service's defaults) |
| BENCH_SES_LATENCY_MS | 40 | 40 | stand-in latency for throughput, CPU per email, pacing, webhooks and the sweep's kill -9 runs |
| BENCH_PACING | 6:60,50:500 | 6:18,50:150 | RATE_LIMIT_PER_SEC:recipients runs |
| BENCH_THROUGHPUT_EMAILS | 5000 | 1000 | recipients of the throughput run (and sends of the bare loop) |
| BENCH_THROUGHPUT_SECONDS | 30 | 10 | time cap of each throughput run; the mailout is paused then |
| BENCH_SIZES | 10000,100000,1000000 | 10000,100000 | list sizes for time to first email and memory |
| BENCH_SIZE_EMAILS | 100000 | 100000 | stop a size run after this many emails |
| BENCH_SIZE_SECONDS | 120 | 30 | time cap of each size run after its first email |
| BENCH_SIZES_LATENCY_MS | 0 | 0 | stand-in latency for the size runs (so they get as far as they can) |
| BENCH_HTTP_SECONDS | 8 | 3 | load duration per endpoint |
| BENCH_HTTP_MESSAGES | 30000 | 8000 | distinct signed SNS messages / unsubscribe tokens prepared (enough that every request of the load is a new one up to 3,750 requests/s full, 2,650/s quick) |
| BENCH_HTTP_CONNECTIONS | 16 | 16 | concurrent keep-alive connections of the load tool |
| BENCH_WRK_THREADS | 1 | 1 | wrk threads |
| BENCH_LOAD_TOOL | wrk if on PATH, else python | | `wrk` or `python` |
| BENCH_WEBHOOKS | 50 | 50 | duplicate webhooks fired together |
| BENCH_WEBHOOK_RECIPIENTS | 10000 | 2000 | list size for the duplicate webhook runs |
| BENCH_CAPACITY_SECONDS | 4 | 2 | load duration of each stand-in capacity probe |
| BENCH_SWEEP_LATENCIES_MS | 40,250,1000 | 40,250,1000 | SES latencies of the sweep's 500/s runs and bare loops (the 10,000/s run is at the first) |
| BENCH_SWEEP_SECONDS | 15 | 6 | sending time of each sweep run after its first email; the mailout is paused then |
| BENCH_SWEEP_WARMUP_SECONDS | 3 | 2 | the start of each sweep run left out of its steady pace |
| BENCH_SWEEP_BARE_THREADS | 64 | 64 | threads of the sweep's bare boto3 loop (SEND_CONCURRENCY_MAX's default) |
| BENCH_SWEEP_KILL_AFTER | 3.5 | 3.5 | seconds after the first email at which the kill -9 runs kill gunicorn (not whole: at 50/s a batch of 50 takes one second, and a whole second can fall between two batches) |
| BENCH_SWEEP_STALE_SECONDS | 10 | 10 | HEARTBEAT_STALE_SECONDS of the kill -9 runs (its minimum), so the restarted service resumes soon |
| BENCH_PROFILE | 0 | 0 | 1: an extra throughput run under py-spy, and py-spy on the workers during the HTTP loads (whose numbers then carry its overhead); summaries printed and saved |
| BENCH_OUT | .bench | .bench | logs, profiles and results.json |
| BENCH_WEB_CONCURRENCY | gunicorn.conf.py's | | WEB_CONCURRENCY for gunicorn (workers) |
| BENCH_GUNICORN_THREADS | gunicorn.conf.py's | | GUNICORN_THREADS |
| BENCH_SERVICE_ROOT | the repository | | run the service (wsgi.py, gunicorn.conf.py, amazonsender/, sql/) from another copy, e.g. `git archive HEAD` unpacked, to compare builds |

The Postgres server is TEST_DATABASE_URL's, else 127.0.0.1:5432 user
postgres, else an embedded one from the pgserver wheel; the benchmark makes
its own database there and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("capacity", "pacing", "throughput", "webhooks", "http", "sizes", "sweep")


def _env(name: str, full, quick, quick_mode: bool, cast=str):
    raw = os.environ.get(name, "").strip()
    if raw:
        return cast(raw)
    return quick if quick_mode else full


def _pairs(text: str) -> list[tuple[float, int]]:
    pairs = []
    for item in text.split(","):
        rate, _, count = item.strip().partition(":")
        pairs.append((float(rate), int(count)))
    return pairs


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _floats(text: str) -> list[float]:
    return [float(item) for item in text.split(",") if item.strip()]


@dataclass
class Options:
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    concurrency: int = 32
    ses_latency_ms: float = 40.0
    pacing: list[tuple[float, int]] = field(default_factory=lambda: [(6.0, 60), (50.0, 500)])
    throughput_emails: int = 5000
    throughput_seconds: float = 30.0
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    size_emails: int = 100_000
    size_seconds: float = 120.0
    sizes_latency_ms: float = 0.0
    http_seconds: float = 8.0
    http_messages: int = 30_000
    http_connections: int = 16
    wrk_threads: int = 1
    load_tool: str = "python"
    webhooks: int = 50
    webhook_recipients: int = 10_000
    capacity_seconds: float = 4.0
    sweep_latencies_ms: list[float] = field(default_factory=lambda: [40.0, 250.0, 1000.0])
    sweep_seconds: float = 15.0
    sweep_warmup_seconds: float = 3.0
    sweep_bare_threads: int = 64
    sweep_kill_after: float = 3.5
    sweep_stale_seconds: int = 10
    profile: bool = False
    out: Path = ROOT / ".bench"
    web_concurrency: str | None = None
    gunicorn_threads: str | None = None
    service_root: Path = ROOT

    @classmethod
    def from_env(cls) -> Options:
        quick = os.environ.get("BENCH_QUICK", "").strip().lower() in ("1", "true", "yes")
        sections = tuple(
            s.strip() for s in os.environ.get("BENCH_SECTIONS", ",".join(SECTIONS)).split(",") if s.strip()
        )
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"BENCH_SECTIONS: unknown {unknown}; choose from {', '.join(SECTIONS)}")
        default_tool = "wrk" if shutil.which("wrk") else "python"
        load_tool = os.environ.get("BENCH_LOAD_TOOL", default_tool).strip() or default_tool
        if load_tool not in ("wrk", "python"):
            raise SystemExit("BENCH_LOAD_TOOL must be wrk or python")
        if load_tool == "wrk" and not shutil.which("wrk"):
            raise SystemExit("BENCH_LOAD_TOOL=wrk but wrk is not on PATH (apt-get install wrk)")
        return cls(
            quick=quick,
            sections=sections,
            concurrency=_env("BENCH_CONCURRENCY", 32, 32, quick, int),
            ses_latency_ms=_env("BENCH_SES_LATENCY_MS", 40.0, 40.0, quick, float),
            pacing=_env("BENCH_PACING", [(6.0, 60), (50.0, 500)], [(6.0, 18), (50.0, 150)], quick, _pairs),
            throughput_emails=_env("BENCH_THROUGHPUT_EMAILS", 5000, 1000, quick, int),
            throughput_seconds=_env("BENCH_THROUGHPUT_SECONDS", 30.0, 10.0, quick, float),
            sizes=_env("BENCH_SIZES", [10_000, 100_000, 1_000_000], [10_000, 100_000], quick, _ints),
            size_emails=_env("BENCH_SIZE_EMAILS", 100_000, 100_000, quick, int),
            size_seconds=_env("BENCH_SIZE_SECONDS", 120.0, 30.0, quick, float),
            sizes_latency_ms=_env("BENCH_SIZES_LATENCY_MS", 0.0, 0.0, quick, float),
            http_seconds=_env("BENCH_HTTP_SECONDS", 8.0, 3.0, quick, float),
            http_messages=_env("BENCH_HTTP_MESSAGES", 30_000, 8_000, quick, int),
            http_connections=_env("BENCH_HTTP_CONNECTIONS", 16, 16, quick, int),
            wrk_threads=_env("BENCH_WRK_THREADS", 1, 1, quick, int),
            load_tool=load_tool,
            webhooks=_env("BENCH_WEBHOOKS", 50, 50, quick, int),
            webhook_recipients=_env("BENCH_WEBHOOK_RECIPIENTS", 10_000, 2_000, quick, int),
            capacity_seconds=_env("BENCH_CAPACITY_SECONDS", 4.0, 2.0, quick, float),
            sweep_latencies_ms=_env("BENCH_SWEEP_LATENCIES_MS", [40.0, 250.0, 1000.0], [40.0, 250.0, 1000.0], quick, _floats),
            sweep_seconds=_env("BENCH_SWEEP_SECONDS", 15.0, 6.0, quick, float),
            sweep_warmup_seconds=_env("BENCH_SWEEP_WARMUP_SECONDS", 3.0, 2.0, quick, float),
            sweep_bare_threads=_env("BENCH_SWEEP_BARE_THREADS", 64, 64, quick, int),
            sweep_kill_after=_env("BENCH_SWEEP_KILL_AFTER", 3.5, 3.5, quick, float),
            sweep_stale_seconds=_env("BENCH_SWEEP_STALE_SECONDS", 10, 10, quick, int),
            profile=os.environ.get("BENCH_PROFILE", "").strip().lower() in ("1", "true", "yes"),
            out=Path(os.environ.get("BENCH_OUT", str(ROOT / ".bench"))).resolve(),
            web_concurrency=os.environ.get("BENCH_WEB_CONCURRENCY") or None,
            gunicorn_threads=os.environ.get("BENCH_GUNICORN_THREADS") or None,
            service_root=Path(os.environ.get("BENCH_SERVICE_ROOT") or ROOT).resolve(),
        )
