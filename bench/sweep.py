"""The latency sweep: the service's own defaults paced at 500/s and 10,000/s
across SES latencies beside the bare boto3 loop, and kill -9 mid-send then
resume, counted at the stand-in (section 7)."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil

from .context import Context
from .mailout import SendRun, describe_stop, send_mailout, settle
from .report import max_in_window, pace_between, verdict
from .sending import bare_loop
from .service import SHARED_SECRET, Gunicorn

SWEEP_RATE = 500
SWEEP_ACCOUNT_RATE = 1_000  # GetAccount's MaxSendRate: above the pace, so RATE_LIMIT_PER_SEC decides
HIGH_RATE = 10_000
HIGH_TARGET = 4_000
# The high-rate list is sized for twice its target, not for 10,000/s: enough
# to stay busy through the run on a machine that reaches the target.
HIGH_LIST_RATE = 2 * HIGH_TARGET
# The kill -9 runs: the pace, the most rows in doubt allowed, and the path.
KILLS = ((10, 1, "SendEmail, one recipient per call"), (50, 5, "SendBulkEmail, 5 recipients per call"))
# What "defaults" leaves out: the service chooses these itself.
DEFAULTS = {"SEND_CONCURRENCY": None, "SEND_CONCURRENCY_MAX": None, "BATCH_SIZE": None}
IN_DOUBT = ("sending", "unknown")
# The stand-in's MaxSendRate for the other sections (standin.BENCH_ACCOUNT).
OUT_OF_THE_WAY = 1.0e6


def sweep(ctx: Context) -> None:
    opts = ctx.options
    concurrency = concurrency_default(opts.service_root)
    ctx.add("7", "this build's SEND_CONCURRENCY default (as its config.py reads it)", concurrency,
            note="the sweep passes no SEND_CONCURRENCY, SEND_CONCURRENCY_MAX or BATCH_SIZE")
    ctx.raw["sweep"] = {"concurrency_default": concurrency, "runs": [], "bare": [], "kills": []}
    try:
        ctx.standin.set_max_send_rate(SWEEP_ACCOUNT_RATE)
        for latency in opts.sweep_latencies_ms:
            paced_run(ctx, SWEEP_RATE, latency, SWEEP_RATE * (opts.sweep_seconds + 5))
            reference_loop(ctx, latency)
        ctx.standin.set_max_send_rate(HIGH_RATE)
        paced_run(ctx, HIGH_RATE, opts.sweep_latencies_ms[0], HIGH_LIST_RATE * (opts.sweep_seconds + 5))
        ctx.standin.set_max_send_rate(SWEEP_ACCOUNT_RATE)
        for rate, allowed, path in KILLS:
            kill_and_resume(ctx, rate, allowed, path)
    finally:
        ctx.standin.set_max_send_rate(OUT_OF_THE_WAY)
        ctx.standin.set_latency(opts.ses_latency_ms)


def concurrency_default(root) -> str:
    """SEND_CONCURRENCY's default in the build's config.py, read as text
    (informative only: a build that reads it differently says 'unknown')."""
    text = (root / "amazonsender" / "config.py").read_text()
    found = re.search(r'"SEND_CONCURRENCY"\s*,\s*default\s*=\s*([^,)]+)', text)
    if found:
        return found.group(1).strip()
    if re.search(r'integer_or_auto\("SEND_CONCURRENCY"', text):
        return "auto"
    return "not read by this build" if "SEND_CONCURRENCY" not in text else "unknown"


def steady(times: list[float], opts, finished: bool = False) -> tuple[float | None, int, float, float]:
    """The pace over [first email + warm-up, first email + BENCH_SWEEP_SECONDS),
    and that window. The window is not cut at the last email of a capped
    run: a sender that sends in bursts (a call of 50, the bare loop's threads
    all answered at once) would then count one burst too many. Only a list
    that ran out before the cap ends the window at its last email."""
    if len(times) < 2:
        return None, len(times), 0.0, 0.0
    first, last = min(times), max(times)
    start = first + opts.sweep_warmup_seconds
    end = min(first + opts.sweep_seconds, last) if finished else first + opts.sweep_seconds
    pace, count = pace_between(times, start, end)
    return pace, count, start - first, end - first


def paced_run(ctx: Context, rate: int, latency: float, recipients: float) -> SendRun:
    opts = ctx.options
    ctx.standin.set_latency(latency)
    ctx.db.reset(int(recipients))
    mailout_id = ctx.db.add_mailout()
    with ctx.gunicorn(RATE_LIMIT_PER_SEC=rate, **DEFAULTS) as server:
        run = send_mailout(ctx, server, mailout_id, max_emails=None, max_seconds=opts.sweep_seconds)
    pace, count, start, end = steady(run.times, opts, finished=run.stopped == "finished")
    peak = max_in_window(run.times)
    target = SWEEP_RATE * 0.95 if rate == SWEEP_RATE else HIGH_TARGET
    ctx.raw["sweep"]["runs"].append({
        "rate": rate, "latency_ms": latency, "recipients": int(recipients), "emails": run.emails,
        "steady_pace": pace, "steady_emails": count, "window": [start, end], "whole_rate": run.rate,
        "max_in_one_second": peak, "stopped": run.stopped, "calls": run.calls, "ledger": run.ledger,
        "usage": run.usage, "first_email_seconds": run.first_email_seconds,
    })
    ctx.add(
        "7",
        f"defaults, RATE_LIMIT_PER_SEC={rate}, {latency:g} ms SES latency: steady pace",
        f"{pace:,.1f}/s" if pace is not None else "no emails",
        f">= {target:,.0f}/s",
        verdict(pace is not None and pace >= target),
        note="; ".join(filter(None, [
            f"{count:,} emails from {start:.1f} s to {end:.1f} s after the first email"
            f" (whole run {run.rate or 0:,.1f}/s, {run.emails:,} emails)",
            describe_stop(run), run.calls_note,
            f"worker CPU {run.usage['cpu_workers'] / max(1, run.emails) * 1000:.2f} ms/email",
        ])),
    )
    ctx.add(
        "7",
        f"defaults, RATE_LIMIT_PER_SEC={rate}, {latency:g} ms: most emails in any 1 s window",
        f"{peak:,}",
        f"<= {rate:,}",
        verdict(peak <= rate) if rate == SWEEP_RATE else "",
        note=f"GetAccount MaxSendRate {SWEEP_ACCOUNT_RATE if rate == SWEEP_RATE else HIGH_RATE:,}",
    )
    return run


def reference_loop(ctx: Context, latency: float) -> None:
    """The bare boto3 loop at the same latency: unpaced, one SendEmail per
    email, BENCH_SWEEP_BARE_THREADS threads; its pace over the same window."""
    opts = ctx.options
    ctx.standin.set_latency(latency)
    threads = opts.sweep_bare_threads
    bare = bare_loop(ctx, 10**9, threads, opts.sweep_seconds)
    times = ctx.standin.stats(times=True)["times"]
    pace, count, start, end = steady(times, opts)
    ctx.raw["sweep"]["bare"].append({**bare, "latency_ms": latency, "threads": threads, "steady_pace": pace})
    ctx.add(
        "7",
        f"bare boto3 loop, {latency:g} ms, {threads} threads (reference: unpaced SendEmail)",
        f"{pace:,.1f}/s" if pace is not None else "no emails",
        note=(
            f"{count:,} calls from {start:.1f} s to {end:.1f} s after the first; whole run {bare['rate']:,.1f}/s,"
            f" {bare['cpu_ms_per_email']:.2f} ms CPU/call"
            + (f"; {bare['errors']} errors, first: {bare['first_error']}" if bare["errors"] else "")
        ),
    )


# --- kill -9 mid-send, then resume -------------------------------------------------


def kill_everything(server: Gunicorn) -> int:
    """SIGKILL the gunicorn master and every worker at once, as `kill -9`
    would; wait until each is gone. How many there were."""
    master = psutil.Process(server.proc.pid)
    processes = [master, *master.children(recursive=True)]
    os.killpg(server.proc.pid, signal.SIGKILL)
    for process in processes:  # any that left the process group
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(processes, timeout=10)
    server.proc.wait(timeout=10)
    if alive:
        raise RuntimeError(f"still alive after SIGKILL: {[p.pid for p in alive]}")
    return len(processes)


def in_doubt(ctx: Context, mailout_id) -> list[str]:
    with ctx.db.connect() as conn:
        rows = conn.execute(
            "SELECT email FROM send_logs WHERE mailout_id = %s AND status = ANY(%s)", (mailout_id, list(IN_DOUBT))
        ).fetchall()
    return [row["email"].lower() for row in rows]


def interrupt(ctx: Context, env: dict, mailout_id, recipients: int) -> dict:
    """Start the send through the webhook and kill -9 gunicorn
    BENCH_SWEEP_KILL_AFTER seconds after the first email; what then stands."""
    opts = ctx.options
    ctx.standin.reset()
    server = ctx.gunicorn(**env).start()
    try:
        status, answer = server.post_json("/send-mailout", {"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET})
        if status != 202:
            raise RuntimeError(f"webhook answered {status}: {answer}\n{server.log_tail()}")
        deadline = time.monotonic() + 60
        while ctx.standin.stats()["first"] is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no email within 60 s\n{server.log_tail()}")
            time.sleep(0.02)
        first = ctx.standin.stats()["first"]
        time.sleep(max(0.0, first + opts.sweep_kill_after - time.monotonic()))
        killed_at = time.monotonic() - first
        processes = kill_everything(server)
    finally:
        server.stop()
    settle(ctx.standin, quiet=0.5, limit=5)
    stats = ctx.standin.stats()
    doubt = in_doubt(ctx, mailout_id)
    received = ctx.standin.destinations()
    return {
        "processes": processes, "killed_at": killed_at, "in_doubt": doubt, "ledger": ctx.db.ledger_counts(mailout_id),
        "emails": stats["emails"], "calls": stats["calls"], "in_doubt_received": sum(1 for e in doubt if e in received),
        "recipients": recipients,
    }


def await_resume(ctx: Context, env: dict, mailout_id, rate: int, recipients: int) -> dict:
    """Start the service again and let its watcher resume the mailout (its
    heartbeat goes stale after HEARTBEAT_STALE_SECONDS); wait for the end."""
    opts = ctx.options
    with ctx.gunicorn(**env) as server:
        started = time.monotonic()
        deadline = started + opts.sweep_stale_seconds * 3 + recipients / rate * 3 + 60
        status = ctx.db.mailout_status(mailout_id)
        while status == "sending" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = ctx.db.mailout_status(mailout_id)
        seconds = time.monotonic() - started
        settle(ctx.standin, quiet=0.5, limit=5)
        resumed = "resumed by itself" in server.log_tail(200_000)
    return {"status": status, "seconds": seconds, "resumed_by_watcher": resumed}


def kill_and_resume(ctx: Context, rate: int, allowed: int, path: str) -> None:
    opts = ctx.options
    recipients = int(rate * (opts.sweep_kill_after + 6))
    ctx.standin.set_latency(opts.ses_latency_ms)
    ctx.db.reset(recipients)
    mailout_id = ctx.db.add_mailout()
    env = {"RATE_LIMIT_PER_SEC": rate, "HEARTBEAT_STALE_SECONDS": opts.sweep_stale_seconds, **DEFAULTS}
    cut = interrupt(ctx, env, mailout_id, recipients)
    resumed = await_resume(ctx, env, mailout_id, rate, recipients)
    with ctx.db.connect() as conn:
        wanted = [row["email"].lower() for row in conn.execute("SELECT email FROM subscribers WHERE status = 'active'")]
    received = ctx.standin.destinations()
    doubt = set(in_doubt(ctx, mailout_id)) | set(cut["in_doubt"])
    others = [e for e in wanted if e not in doubt]
    once = sum(1 for e in others if received.get(e) == 1)
    missing = sum(1 for e in others if e not in received)
    repeated = sum(1 for e in wanted if received.get(e, 0) > 1)
    on_list = set(wanted)
    strangers = sum(1 for e in received if e not in on_list)
    doubt_got = sum(1 for e in doubt if received.get(e) == 1)
    doubt_none = sum(1 for e in doubt if e not in received)
    ledger = ctx.db.ledger_counts(mailout_id)
    ctx.raw["sweep"]["kills"].append({**cut, "in_doubt": len(cut["in_doubt"]), "rate": rate, "resume": resumed,
                                      "ledger_after": ledger, "others": len(others), "once": once,
                                      "missing": missing, "repeated": repeated, "strangers": strangers})
    n = len(cut["in_doubt"])
    ctx.add(
        "7",
        f"kill -9 at RATE_LIMIT_PER_SEC={rate} ({path}): rows in doubt",
        f"{n}",
        f"<= {allowed}",
        verdict(n <= allowed),
        note=(
            f"{cut['in_doubt_received']} of them reached the stand-in; killed {cut['processes']} processes"
            f" (master and workers) {cut['killed_at']:.1f} s after the first email, {cut['emails']} emails in"
            f" {sum(cut['calls'].values())} calls ({', '.join(f'{k} {v}' for k, v in cut['calls'].items() if v)});"
            f" ledger then {cut['ledger']}; {recipients} recipients, {opts.ses_latency_ms:g} ms SES latency"
        ),
    )
    ok = resumed["status"] == "sent" and once == len(others) and repeated == 0 and strangers == 0
    ctx.add(
        "7",
        f"… restarted, resumed: the {len(others)} others exactly once, the in-doubt at most once",
        f"{once} exactly once, {missing} missing, {repeated} repeated; in doubt: {doubt_got} got one, {doubt_none} none",
        "all once, none repeated",
        verdict(ok),
        note=(
            f"mailout '{resumed['status']}' {resumed['seconds']:.1f} s after the restart"
            f" ({'resumed by the watcher' if resumed['resumed_by_watcher'] else 'no auto-resume line in the log'};"
            f" HEARTBEAT_STALE_SECONDS={opts.sweep_stale_seconds}); ledger {ledger}"
            + (f"; {strangers} addresses not on the list" if strangers else "")
        ),
    )

