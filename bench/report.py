"""Numbers from timestamps, and the table `make bench` prints."""

from __future__ import annotations

import bisect
import math
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile (p in 0..100) of `values`."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of `times` in any half-open window [t, t + window).

    The window that holds the most events can always be slid to start at an
    event, so checking the windows that start at each event is enough."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        j = bisect.bisect_left(ordered, start + window, lo=i)
        best = max(best, j - i)
    return best


def achieved_rate(times: list[float]) -> float | None:
    """Events per second between the first and the last: (n - 1) intervals."""
    if len(times) < 2:
        return None
    ordered = sorted(times)
    span = ordered[-1] - ordered[0]
    return (len(ordered) - 1) / span if span > 0 else None


def pace_between(times: list[float], start: float, end: float) -> tuple[float | None, int]:
    """Events per second within [start, end), and how many fell there: the
    pace of a run's steady part, without its start and its tail."""
    if end <= start:
        return None, 0
    ordered = sorted(times)
    count = bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, start)
    return count / (end - start), count


@dataclass
class Row:
    section: str
    measurement: str
    value: str
    target: str = ""
    verdict: str = ""  # "met", "missed", or "" (no target)
    note: str = ""


def verdict(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "met" if ok else "MISSED"


def format_table(rows: list[Row]) -> str:
    headers = ["#", "measurement", "result", "target", "verdict"]
    body = [[r.section, r.measurement, r.value, r.target, r.verdict] for r in rows]
    widths = [max(len(str(line[i])) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(cells) for cells in body)
    notes = [f"  [{r.section}] {r.measurement}: {r.note}" for r in rows if r.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def _first_line(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "not installed"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def describe_code(service_root: Path, repo_root: Path) -> str:
    """Which build was measured: the commit, and whether amazonsender/ had
    uncommitted changes (read-only git commands)."""
    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(repo_root), *args], capture_output=True, text=True, timeout=10)
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    if service_root.resolve() != repo_root.resolve():
        return f"service from {service_root} (repository at {head})"
    dirty = git("status", "--porcelain", "--", "amazonsender", "sql", "wsgi.py", "gunicorn.conf.py")
    return f"{head}" + (" + uncommitted changes in the service's files" if dirty else "")


def machine(postgres_version: str | None = None) -> dict[str, str]:
    cpu = "unknown"
    memory = "unknown"
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                cpu = text_line.split(":", 1)[1].strip()
                break
        for text_line in Path("/proc/meminfo").read_text().splitlines():
            if text_line.startswith("MemTotal"):
                memory = f"{int(text_line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    import boto3
    import gunicorn
    import psycopg

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres_version or "unknown",
        "gunicorn": gunicorn.__version__,
        "boto3": boto3.__version__,
        "psycopg": psycopg.__version__,
        "wrk": _first_line(["wrk", "--version"]),
    }
