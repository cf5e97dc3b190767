"""What every section shares: the options, the database, the stand-in, the
rows of the table and the raw results (Context)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .options import ROOT, Options
from .report import Row
from .service import BenchDatabase, Gunicorn, StandIn, service_env

MB = 1024 * 1024
HIGH_RATE = 10_000  # RATE_LIMIT_PER_SEC's maximum: pacing out of the way


def service_supports_concurrency(root: Path = ROOT) -> bool:
    """Whether this build reads SEND_CONCURRENCY (the benchmark passes it
    either way; an older build ignores it and sends one email at a time)."""
    return "SEND_CONCURRENCY" in (root / "amazonsender" / "config.py").read_text()


@dataclass
class Context:
    options: Options
    db: BenchDatabase
    standin: StandIn
    home: Path
    out: Path
    rows: list[Row] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def env(self, **values) -> dict:
        values.setdefault("SEND_CONCURRENCY", self.options.concurrency)
        values.setdefault("WEB_CONCURRENCY", self.options.web_concurrency)
        values.setdefault("GUNICORN_THREADS", self.options.gunicorn_threads)
        return service_env(self.home, self.db.url, self.standin, **values)

    def gunicorn(self, app: str = "wsgi:app", **values) -> Gunicorn:
        return Gunicorn(self.env(**values), self.out, app=app, root=self.options.service_root)

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        print(f"    {row.measurement}: {row.value}" + (f"  ({row.verdict})" if row.verdict else ""), flush=True)
        return row
