"""HTTP load on loopback: wrk (Debian's package) when it is installed, else a
small Python generator with threads and keep-alive connections. Both send
the requests listed in a file ("path<TAB>body" per line), bounded in time
(and the Python one also in count)."""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .report import percentile

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers, connection errors and timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def write_requests(path: Path, entries: list[tuple[str, str]]) -> Path:
    with open(path, "w") as out:
        for target, body in entries:
            if "\t" in target or "\n" in target or "\n" in body:
                raise ValueError("a request line may not hold a tab in its path or a line break")
            out.write(f"{target}\t{body}\n")
    return path


def _check_loopback(url: str) -> None:
    if urlsplit(url).hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"load is only ever sent to loopback, not {url}")


def run_wrk(
    url: str, requests_file: Path, content_type: str, *, seconds: float, connections: int, threads: int = 1
) -> LoadResult:
    _check_loopback(url)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(requests_file),
        content_type,
        str(threads),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        tool="wrk",
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
    )


def run_python(
    url: str,
    requests_file: Path,
    content_type: str,
    *,
    seconds: float,
    connections: int,
    max_requests: int = 200_000,
) -> LoadResult:
    """`connections` threads, each with one kept-alive connection, until
    `seconds` have passed or `max_requests` were sent. Slower than wrk and
    sharing this process's GIL: it measures a lower bound."""
    _check_loopback(url)
    parts = urlsplit(url)
    entries = []
    for line in requests_file.read_text().splitlines():
        target, _, body = line.partition("\t")
        entries.append((target, body.encode()))
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    headers = {"Content-Type": content_type}

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine = latencies[index]
        while time.monotonic() < deadline:
            n = next(counter)
            if n >= max_requests:
                break
            target, body = entries[n % len(entries)]
            started = time.perf_counter()
            try:
                conn.request("POST", target, body, headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    errors[index] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                continue
            mine.append(time.perf_counter() - started)
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.monotonic() - started
    flat = [x for xs in latencies for x in xs]
    return LoadResult(
        tool="python",
        requests=len(flat),
        seconds=elapsed,
        p50_ms=(percentile(flat, 50) or 0) * 1000,
        p99_ms=(percentile(flat, 99) or 0) * 1000,
        max_ms=(max(flat) if flat else 0) * 1000,
        errors=sum(errors),
    )


def run_load(tool: str, url: str, requests_file: Path, content_type: str, **kwargs) -> LoadResult:
    if tool == "wrk":
        kwargs.pop("max_requests", None)
        return run_wrk(url, requests_file, content_type, **kwargs)
    kwargs.pop("threads", None)
    return run_python(url, requests_file, content_type, **kwargs)
