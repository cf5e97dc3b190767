"""py-spy on the gunicorn workers: the Spies a section starts around a load,
and the extra profiled throughput run (BENCH_PROFILE=1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .context import HIGH_RATE, Context
from .mailout import send_mailout
from .service import Gunicorn


def py_spy() -> str | None:
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return spy if Path(spy).exists() else None


class Spies:
    """py-spy sampling each gunicorn worker for `seconds` (only the thread
    holding the GIL: where the CPU goes), collapsed stacks in the output
    folder; always stopped on the way out."""

    def __init__(self, ctx: Context, server: Gunicorn, seconds: float, label: str):
        self.ctx, self.server, self.seconds, self.label = ctx, server, seconds, label
        self.spies: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> None:
        spy = py_spy()
        if spy is None:
            return
        for worker in self.server.workers():
            path = self.ctx.out / f"profile-{self.label}-{worker.pid}.txt"
            proc = subprocess.Popen(
                [spy, "record", "--pid", str(worker.pid), "--duration", str(max(1, round(self.seconds))),
                 "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking", "--gil"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.spies.append((proc, path))

    def finish(self) -> None:
        from .profile_summary import summarize

        for proc, _ in self.spies:
            try:
                proc.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        profiles = [path for _, path in self.spies if path.exists() and path.stat().st_size]
        if not profiles:
            print(f"    profile {self.label}: py-spy recorded nothing (not installed, or ptrace not allowed)")
            return
        texts = "\n".join(path.read_text() for path in profiles)
        summary = summarize(texts)
        (self.ctx.out / f"profile-{self.label}-summary.txt").write_text(summary)
        self.ctx.raw.setdefault("profiles", {})[self.label] = summary
        print(f"    profile {self.label} (all workers, {', '.join(p.name for p in profiles)}):")
        print("\n".join("      " + line for line in summary.splitlines()))

    def kill(self) -> None:
        for proc, _ in self.spies:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def profile(ctx: Context) -> None:
    """An extra throughput run with py-spy on every gunicorn worker (not the
    measured one: sampling costs the workers some CPU)."""
    if py_spy() is None:
        print("    py-spy is not installed: no profile")
        return
    opts = ctx.options
    ctx.standin.set_latency(opts.ses_latency_ms)
    ctx.db.reset(opts.throughput_emails)
    mailout_id = ctx.db.add_mailout()
    seconds = max(5, int(opts.throughput_seconds))
    with ctx.gunicorn(RATE_LIMIT_PER_SEC=HIGH_RATE) as server:
        spies = Spies(ctx, server, seconds, "send")
        try:
            send_mailout(ctx, server, mailout_id, max_emails=None, max_seconds=seconds, on_first_email=spies.start)
            spies.finish()
        finally:
            spies.kill()

