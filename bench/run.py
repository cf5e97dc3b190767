"""The measurements. Each section starts the gunicorn it needs with the
settings it measures, and kills it before the next one."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from amazonsender.message import MessageBuilder
from amazonsender.links import UnsubscribeTokens

from . import load
from .options import ROOT, Options
from .report import Row, achieved_rate, max_in_window, percentile, verdict
from .service import (
    FROM_ADDRESS,
    LOOPBACK,
    NEWSLETTER_HTML,
    SHARED_SECRET,
    UNSUBSCRIBE_SECRET,
    BenchDatabase,
    Gunicorn,
    Monitor,
    StandIn,
    service_env,
)

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


# --- one mailout through the real service -------------------------------------


@dataclass
class SendRun:
    emails: int
    duplicates: int
    times: list[float]
    webhook_seconds: float
    first_email_seconds: float | None
    stopped: str
    usage: dict
    ledger: dict
    calls: dict
    # The 202's `recipients`, and the ledger rows committed just after it came.
    recipients_answered: int | None = None
    queued_at_answer: int | None = None

    @property
    def calls_note(self) -> str:
        """Which SES calls carried the emails, e.g. '100 SendBulkEmail calls (5.0 per call)'."""
        bulk, single = self.calls.get("SendBulkEmail", 0), self.calls.get("SendEmail", 0)
        parts = []
        if bulk:
            in_bulk = self.emails - single
            parts.append(f"{bulk:,} SendBulkEmail calls ({in_bulk / bulk:.1f} recipients per call)")
        if single:
            parts.append(f"{single:,} SendEmail calls")
        return ", ".join(parts)

    @property
    def rate(self) -> float | None:
        return achieved_rate(self.times) if self.times else None


def send_mailout(
    ctx: Context,
    server: Gunicorn,
    mailout_id,
    *,
    max_emails: int | None,
    max_seconds: float,
    want_times: bool = True,
    first_email_timeout: float = 120.0,
    on_first_email=None,
) -> SendRun:
    """POST /send-mailout and follow the send at the stand-in until it is
    done, `max_emails` have arrived or `max_seconds` have passed since the
    first email; then pause the mailout with SQL (the run stops at its next
    batch) and wait for the stand-in to go quiet."""
    standin, db = ctx.standin, ctx.db
    standin.reset()
    monitor = Monitor(server, standin.pid).start()
    try:
        started = time.monotonic()
        status, answer = server.post_json(
            "/send-mailout", {"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET}, timeout=900
        )
        answered = time.monotonic()
        if status != 202:
            raise RuntimeError(f"webhook answered {status}: {answer}\n{server.log_tail()}")
        queued_at_answer = db.ledger_rows(mailout_id)
        first = None
        stopped = "finished"
        next_status_check = 0.0
        while True:
            stats = standin.stats()
            now = time.monotonic()
            if first is None and stats["first"] is not None:
                first = stats["first"]
                if on_first_email:
                    on_first_email()
            if max_emails is not None and stats["emails"] >= max_emails:
                stopped = f"paused after {max_emails:,} emails"
                break
            if first is not None and now - first > max_seconds:
                stopped = f"paused at the {max_seconds:g} s cap"
                break
            if first is None and now - answered > first_email_timeout:
                stopped = f"no email within {first_email_timeout:g} s"
                break
            if now >= next_status_check:
                next_status_check = now + 0.5
                if db.mailout_status(mailout_id) != "sending":
                    break
            time.sleep(0.02)
        if stopped != "finished":
            db.pause(mailout_id)
            settle(standin)
        else:
            time.sleep(0.2)
    finally:
        usage = monitor.stop()
    stats = standin.stats(times=True)
    return SendRun(
        emails=stats["emails"],
        duplicates=stats["duplicates"],
        times=stats["times"] if want_times else [],
        webhook_seconds=answered - started,
        first_email_seconds=(stats["first"] - started) if stats["first"] is not None else None,
        stopped=stopped,
        usage=usage,
        ledger=db.ledger_counts(mailout_id),
        calls=stats.get("calls", {}),
        recipients_answered=answer.get("recipients") if isinstance(answer, dict) else None,
        queued_at_answer=queued_at_answer,
    )


def settle(standin: StandIn, quiet: float = 1.0, limit: float = 20.0) -> None:
    """Wait until no email has arrived for `quiet` seconds (bounded)."""
    deadline = time.monotonic() + limit
    last = standin.stats()["emails"]
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now_count = standin.stats()["emails"]
        if now_count != last:
            last, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return


def describe_stop(run: SendRun, expected: int | None = None) -> str:
    parts = [run.stopped]
    if run.duplicates:
        parts.append(f"{run.duplicates} DUPLICATE recipients at the stand-in")
    if expected is not None and run.stopped == "finished" and run.emails != expected:
        parts.append(f"{run.emails} of {expected} emails arrived")
    return "; ".join(parts)


# --- 0. the stand-in's own capacity ----------------------------------------------


def sample_email(mailout_id: str = "00000000-0000-0000-0000-000000000000"):
    builder = MessageBuilder(
        mailout_id=mailout_id, subject="Our news this month", body_html=NEWSLETTER_HTML, from_address=FROM_ADDRESS
    )
    tokens = UnsubscribeTokens(UNSUBSCRIBE_SECRET)
    return builder.build(
        to_email="reader1@example.test",
        to_name=None,
        unsubscribe_url=f"https://news.example.test/unsubscribe?token={tokens.make(uuid.uuid4())}",
    )


def capacity(ctx: Context) -> None:
    """How many SendEmail requests per second the stand-ins answer, with the
    load tool on the same two cores (so: a lower bound)."""
    opts = ctx.options
    email = sample_email()
    data = base64.b64encode(email.raw).decode()
    lines = []
    for n in range(4000):
        body = {
            "FromEmailAddress": FROM_ADDRESS,
            "Destination": {"ToAddresses": [f"probe{n}@example.test"]},
            "Content": {"Raw": {"Data": data}},
            "EmailTags": [{"Name": "mailout_id", "Value": "probe"}],
        }
        lines.append(("/v2/email/outbound-emails", json.dumps(body)))
    requests_file = load.write_requests(ctx.out / "capacity-requests.txt", lines)
    results = {}
    for latency, connections in ((0.0, 32), (opts.ses_latency_ms, opts.concurrency)):
        ctx.standin.set_latency(latency)
        cpu0 = psutil.Process(ctx.standin.pid).cpu_times()
        result = load.run_load(
            opts.load_tool,
            ctx.standin.url + "/",
            requests_file,
            "application/x-amz-json-1.0",
            seconds=opts.capacity_seconds,
            connections=connections,
            threads=opts.wrk_threads,
        )
        cpu1 = psutil.Process(ctx.standin.pid).cpu_times()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / max(1, result.requests)
        results[f"asyncio_{latency:g}ms"] = {**result.__dict__, "rps": result.rps, "cpu_ms_per_request": cpu * 1000}
        ctx.add(
            "0",
            f"stand-in capacity (asyncio, own process), {latency:g} ms latency, {connections} connections",
            f"{result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms, {cpu * 1e6:.0f} us CPU/request"
            + (f", {result.errors} errors" if result.errors else ""),
            note=f"load by {result.tool}",
        )
    ctx.standin.reset()
    ctx.standin.set_latency(opts.ses_latency_ms)

    # For comparison: the tests' ThreadingHTTPServer stand-in, in this process.
    from tests.support.ses_standin import SesStandIn

    with SesStandIn() as threaded:
        result = load.run_load(
            opts.load_tool,
            threaded.url + "/",
            requests_file,
            "application/x-amz-json-1.0",
            seconds=opts.capacity_seconds,
            connections=32,
            threads=opts.wrk_threads,
        )
    results["threading_0ms"] = {**result.__dict__, "rps": result.rps}
    ctx.add(
        "0",
        "tests' ThreadingHTTPServer stand-in, 0 ms, 32 connections (not used below)",
        f"{result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms",
    )
    ctx.raw["capacity"] = results


# --- 1. pacing -------------------------------------------------------------------


def pacing(ctx: Context) -> None:
    opts = ctx.options
    ctx.standin.set_latency(opts.ses_latency_ms)
    results = []
    for rate, recipients in opts.pacing:
        ctx.db.reset(recipients)
        mailout_id = ctx.db.add_mailout()
        with ctx.gunicorn(RATE_LIMIT_PER_SEC=rate) as server:
            run = send_mailout(
                ctx, server, mailout_id, max_emails=None, max_seconds=recipients / rate * 2 + 30
            )
        achieved = run.rate or 0.0
        peak = max_in_window(run.times)
        span = tightest_span(run.times, int(rate) + 1)
        within = abs(achieved - rate) / rate <= 0.02
        never_over = peak <= rate
        results.append({"rate": rate, "recipients": recipients, "emails": run.emails, "achieved": achieved,
                        "max_in_one_second": peak, "tightest_span": span, "stopped": run.stopped,
                        "times": run.times})
        ctx.add(
            "1",
            f"pacing at RATE_LIMIT_PER_SEC={rate:g}, {recipients} recipients: achieved rate",
            f"{achieved:.2f}/s ({(achieved - rate) / rate:+.1%})",
            "within 2%",
            verdict(within),
            note="; ".join(filter(None, [describe_stop(run, recipients), run.calls_note])),
        )
        ctx.add(
            "1",
            f"pacing at RATE_LIMIT_PER_SEC={rate:g}: most emails in any 1 s window",
            f"{peak}",
            f"<= {rate:g}",
            verdict(never_over),
            note=(f"the {int(rate) + 1} closest consecutive emails span {span * 1000:.1f} ms" if span else ""),
        )
    ctx.raw["pacing"] = results


def tightest_span(times: list[float], k: int) -> float | None:
    """The shortest time that holds `k` consecutive emails: under 1 s for
    k = rate + 1 means some one-second window held more than the rate."""
    ordered = sorted(times)
    if len(ordered) < k or k < 2:
        return None
    return min(ordered[i + k - 1] - ordered[i] for i in range(len(ordered) - k + 1))


# --- 2 + 3. throughput and CPU per email -----------------------------------------


def bare_loop(ctx: Context, emails: int, threads: int, max_seconds: float) -> dict:
    """One boto3 sesv2 send_email per recipient, `threads` threads sharing one
    client (configured like the service's), against the same stand-in."""
    import boto3
    from botocore.config import Config

    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    config = Config(
        connect_timeout=5,
        read_timeout=20,
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max(10, threads),
    )
    session = boto3.session.Session(
        aws_access_key_id="standin-access-key", aws_secret_access_key="standin-secret-key", region_name="us-east-1"
    )
    client = session.client("sesv2", endpoint_url=ctx.standin.url, config=config)
    raw = sample_email().raw

    def send(n: int) -> None:
        client.send_email(
            FromEmailAddress=FROM_ADDRESS,
            Destination={"ToAddresses": [f"bare{n}@example.test"]},
            Content={"Raw": {"Data": raw}},
            EmailTags=[{"Name": "mailout_id", "Value": "bare"}],
        )

    send(-1)  # the client loads its service model on the first call
    ctx.standin.reset()
    counter = itertools.count()
    errors = []
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            if n >= emails:
                return
            try:
                send(n)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(repr(exc))

    me = psutil.Process()
    cpu0 = me.cpu_times()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=max_seconds + 60)
    cpu1 = me.cpu_times()
    stats = ctx.standin.stats(times=True)
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return {
        "emails": stats["emails"],
        "rate": achieved_rate(stats["times"]) or 0.0,
        "cpu_ms_per_email": cpu / max(1, stats["emails"]) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


BIG_BATCH = 500


def throughput(ctx: Context) -> None:
    opts = ctx.options
    ctx.standin.set_latency(opts.ses_latency_ms)
    ctx.db.reset(opts.throughput_emails)
    mailout_id = ctx.db.add_mailout()
    supported = service_supports_concurrency(opts.service_root)
    with ctx.gunicorn(RATE_LIMIT_PER_SEC=HIGH_RATE) as server:
        run = send_mailout(ctx, server, mailout_id, max_emails=None, max_seconds=opts.throughput_seconds)
    service_rate = run.rate or 0.0
    bare = bare_loop(ctx, opts.throughput_emails, opts.concurrency, opts.throughput_seconds)
    usage = run.usage
    cpu_ms = usage["cpu_workers"] / max(1, run.emails) * 1000
    ctx.raw["throughput"] = {
        "service": {"emails": run.emails, "rate": service_rate, "stopped": run.stopped, "usage": usage,
                    "ledger": run.ledger, "concurrency_supported": supported, "calls": run.calls},
        "bare": bare,
    }
    concurrency_note = (
        f"SEND_CONCURRENCY={opts.concurrency}"
        if supported
        else f"SEND_CONCURRENCY={opts.concurrency} passed, but this build does not read it: one email at a time"
    )
    ctx.add(
        "2",
        f"service throughput, {opts.ses_latency_ms:g} ms SES latency, RATE_LIMIT_PER_SEC={HIGH_RATE}",
        f"{service_rate:,.1f} emails/s ({run.emails:,} emails)",
        ">= 500/s",
        verdict(service_rate >= 500),
        note="; ".join(filter(None, [concurrency_note, describe_stop(run, opts.throughput_emails), run.calls_note])),
    )
    ctx.add(
        "2",
        f"bare boto3 loop, {opts.concurrency} threads sharing one client, same stand-in",
        f"{bare['rate']:,.1f} emails/s ({bare['emails']:,} calls, {bare['cpu_ms_per_email']:.2f} ms CPU/call)",
        note=f"{bare['errors']} errors, first: {bare['first_error']}" if bare["errors"] else "",
    )
    ratio = service_rate / bare["rate"] if bare["rate"] else 0.0
    ctx.add("2", "service / bare loop", f"{ratio:.2f}")
    # With SendBulkEmail, a batch of 50 is one call, so only one call is in
    # flight whatever SEND_CONCURRENCY is; a bigger batch lets several fly.
    ctx.db.reset(opts.throughput_emails)
    mailout_id = ctx.db.add_mailout()
    with ctx.gunicorn(RATE_LIMIT_PER_SEC=HIGH_RATE, BATCH_SIZE=BIG_BATCH) as server:
        big = send_mailout(ctx, server, mailout_id, max_emails=None, max_seconds=opts.throughput_seconds)
    ctx.raw["throughput"]["service_big_batch"] = {
        "batch_size": BIG_BATCH, "emails": big.emails, "rate": big.rate, "usage": big.usage,
        "ledger": big.ledger, "calls": big.calls,
    }
    ctx.add(
        "2",
        f"… the same with BATCH_SIZE={BIG_BATCH}",
        f"{big.rate or 0:,.1f} emails/s, {big.usage['cpu_workers'] / max(1, big.emails) * 1000:.2f} ms CPU/email",
        note="; ".join(filter(None, [describe_stop(big, opts.throughput_emails), big.calls_note])),
    )
    ctx.add(
        "3",
        "CPU per email, gunicorn workers (user+system)",
        f"{cpu_ms:.2f} ms",
        "< 1 ms",
        verdict(cpu_ms < 1.0),
        note=(
            f"same run; also per email: Postgres {usage['cpu_postgres'] / max(1, run.emails) * 1000:.2f} ms,"
            f" stand-in {usage['cpu_standin'] / max(1, run.emails) * 1000:.2f} ms"
        ),
    )


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


# --- 4. time to first email and memory, by list size ----------------------------


def sizes(ctx: Context) -> None:
    opts = ctx.options
    ctx.standin.set_latency(opts.sizes_latency_ms)
    results = []
    peaks = {}
    # The subscribers are added to, not made anew, as the sizes grow.
    with ctx.db.connect() as conn:
        conn.execute("TRUNCATE send_logs, ses_events, mailouts")
        conn.execute("TRUNCATE subscribers CASCADE")
    have = 0
    for size in sorted(opts.sizes):
        seeded = time.monotonic()
        with ctx.db.connect() as conn:
            conn.execute("TRUNCATE send_logs, ses_events, mailouts")
            if size > have:
                BenchDatabase.seed(conn, have + 1, size)
                have = size
            conn.execute("CHECKPOINT")
        seed_seconds = time.monotonic() - seeded
        mailout_id = ctx.db.add_mailout()
        with ctx.gunicorn(RATE_LIMIT_PER_SEC=HIGH_RATE) as server:
            run = send_mailout(
                ctx, server, mailout_id, max_emails=opts.size_emails, max_seconds=opts.size_seconds, want_times=True
            )
        usage = run.usage
        peak = usage["peak_rss_busiest"]
        peaks[size] = peak
        ttfe = run.first_email_seconds
        results.append({
            "size": size, "seed_seconds": seed_seconds, "webhook_seconds": run.webhook_seconds,
            "queued_at_answer": run.queued_at_answer,
            "first_email_seconds": ttfe, "emails": run.emails, "rate": run.rate, "stopped": run.stopped,
            "peak_rss": peak, "start_rss": usage["start_rss_busiest"], "cpu_workers": usage["cpu_workers"],
            "ledger": run.ledger,
        })
        # The webhook's answer comes right after the claim (the recipients are
        # queued afterwards, in pages), so it should not grow with the list.
        answer = run.webhook_seconds
        ctx.add(
            "4",
            f"{size:,} recipients: webhook answer (202)",
            f"{answer:.2f} s",
            "< 1 s",
            verdict(answer < 1),
            note=f"recipients in the 202: {run.recipients_answered}; rows queued when it came: {run.queued_at_answer}",
        )
        target, ok = "", None
        if size == 100_000:
            target, ok = "< 2 s", ttfe is not None and ttfe < 2
        elif size == 1_000_000:
            target, ok = "< 15 s", ttfe is not None and ttfe < 15
        ctx.add(
            "4",
            f"{size:,} recipients: time to first email",
            f"{ttfe:.2f} s" if ttfe is not None else "none",
            target,
            verdict(ok),
            note=f"from the request; webhook answered in {answer:.2f} s; seeding took {seed_seconds:.1f} s",
        )
        reached = f"{run.emails:,} emails in {run.times[-1] - run.times[0]:.0f} s" if len(run.times) > 1 else f"{run.emails} emails"
        ctx.add(
            "4",
            f"{size:,} recipients: peak RSS of the sending worker (before the webhook)",
            f"{peak / MB:.1f} MB ({usage['start_rss_busiest'] / MB:.1f} MB)",
            note=f"{reached}, {run.rate or 0:,.0f}/s; {describe_stop(run)}; over the first {min(size, opts.size_emails):,} emails wanted",
        )
    ctx.raw["sizes"] = results
    if len(peaks) >= 2:
        small, large = min(peaks), max(peaks)
        growth = (peaks[large] - peaks[small]) / MB
        ok = growth < 25 if (small, large) == (10_000, 1_000_000) else None
        ctx.add(
            "4",
            f"peak worker RSS growth, {small:,} -> {large:,} recipients",
            f"{growth:+.1f} MB",
            "< 25 MB (10k -> 1M)",
            verdict(ok),
        )


# --- 5. /ses-events and /unsubscribe under load ----------------------------------


def http_endpoints(ctx: Context) -> None:
    from tests.support.sns_signing import TOPIC_ARN, SnsSigner, make_key_and_certificate, ses_sample

    opts = ctx.options
    count = opts.http_messages
    ctx.db.reset(count)
    with ctx.db.connect() as conn:
        ids = [row["id"] for row in conn.execute("SELECT id FROM subscribers ORDER BY email LIMIT %s", (count,))]
    key, certificate = make_key_and_certificate()
    cert_file = ctx.out / "sns-cert.pem"
    cert_file.write_bytes(certificate)
    signer = SnsSigner(key, certificate)
    signed = time.monotonic()
    events = []
    for n in range(count):
        message = ses_sample(
            "delivery_notification", address=f"reader{n + 1}@example.test", ses_message_id=f"0100bench{n:012d}-000000"
        )
        events.append(("/ses-events", json.dumps(signer.envelope(message))))
    sign_seconds = time.monotonic() - signed
    events_file = load.write_requests(ctx.out / "ses-events-requests.txt", events)
    tokens = UnsubscribeTokens(UNSUBSCRIBE_SECRET)
    unsubscribes = [(f"/unsubscribe?token={tokens.make(i)}", "List-Unsubscribe=One-Click") for i in ids]
    unsubscribe_file = load.write_requests(ctx.out / "unsubscribe-requests.txt", unsubscribes)

    results = {}
    with ctx.gunicorn(app="bench.snsapp:app", SNS_TOPIC_ARNS=TOPIC_ARN, BENCH_SNS_CERT_FILE=cert_file) as server:
        # One request each first: every worker reads the certificate once.
        for _ in range(4):
            conn = http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
        for name, path_file, content_type in (
            ("/ses-events", events_file, "text/plain; charset=UTF-8"),
            ("/unsubscribe", unsubscribe_file, "application/x-www-form-urlencoded"),
        ):
            spies = Spies(ctx, server, opts.http_seconds, name.strip("/")) if opts.profile else None
            if spies:
                spies.start()
            monitor = Monitor(server).start()
            result = load.run_load(
                opts.load_tool,
                server.url,
                path_file,
                content_type,
                seconds=opts.http_seconds,
                connections=opts.http_connections,
                threads=opts.wrk_threads,
                max_requests=count * 4,
            )
            usage = monitor.stop()
            if spies:
                spies.finish()
                spies.kill()
            results[name] = {**result.__dict__, "rps": result.rps, "usage": usage}
            ok = result.rps >= 1000 and result.p99_ms < 50 and result.errors == 0
            with ctx.db.connect() as conn:
                if name == "/ses-events":
                    processed = conn.execute("SELECT count(*) AS n FROM ses_events").fetchone()["n"]
                    detail = f"{processed:,} distinct messages processed"
                else:
                    processed = conn.execute(
                        "SELECT count(*) AS n FROM subscribers WHERE status = 'unsubscribed'"
                    ).fetchone()["n"]
                    detail = f"{processed:,} distinct subscribers unsubscribed"
                # wrk stops counting at the deadline, so a few answered
                # requests may be missing from its count, never extra ones.
                repeats = max(0, result.requests - processed)
                detail += f"; {repeats:,} repeated requests (answered, changed nothing)" if repeats else "; no request repeated"
            cpu_ms = usage["cpu_workers"] / max(1, result.requests) * 1000
            pg_ms = usage["cpu_postgres"] / max(1, result.requests) * 1000
            ctx.add(
                "5",
                f"POST {name}: requests/s, p99 ({opts.http_connections} connections)",
                f"{result.rps:,.0f}/s, p99 {result.p99_ms:.1f} ms",
                ">= 1000/s, p99 < 50 ms",
                verdict(ok),
                note=(
                    f"{result.requests:,} requests in {result.seconds:.1f} s by {result.tool}; {result.errors} errors;"
                    f" p50 {result.p50_ms:.1f} ms, max {result.max_ms:.1f} ms; {cpu_ms:.2f} ms worker CPU and {pg_ms:.2f} ms Postgres CPU per request;"
                    f" {detail}"
                ),
            )
    results["sign_seconds"] = sign_seconds
    ctx.raw["http"] = results


# --- 6. duplicate webhooks ---------------------------------------------------------


def fire_together(port: int, mailout_id, n: int) -> list[tuple[int, float]]:
    """`n` POST /send-mailout on connections opened beforehand, released
    together by a barrier; (status, seconds) each."""
    payload = json.dumps({"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET}).encode()
    headers = {"Content-Type": "application/json"}
    conns = []
    for _ in range(n):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=120)
        conn.connect()
        conns.append(conn)
    barrier = threading.Barrier(n)
    results: list[tuple[int, float] | None] = [None] * n

    def post(i: int) -> None:
        barrier.wait(timeout=30)
        started = time.perf_counter()
        try:
            conns[i].request("POST", "/send-mailout", payload, headers)
            response = conns[i].getresponse()
            response.read()
            results[i] = (response.status, time.perf_counter() - started)
        except (OSError, http.client.HTTPException):
            results[i] = (0, time.perf_counter() - started)

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    for conn in conns:
        conn.close()
    return [r if r is not None else (0, float("nan")) for r in results]


def webhooks(ctx: Context) -> None:
    opts = ctx.options
    ctx.standin.set_latency(opts.ses_latency_ms)
    ctx.db.reset(opts.webhook_recipients)
    n = opts.webhooks
    results = {}
    with ctx.gunicorn(RATE_LIMIT_PER_SEC=HIGH_RATE) as server:
        # a) n + 1 at once: one claims, n get 409.
        mailout_id = ctx.db.add_mailout()
        answers = fire_together(server.port, mailout_id, n + 1)
        ctx.db.pause(mailout_id)
        settle(ctx.standin, quiet=0.5)
        results["together"] = answers
        # b) one wins first; while it sends, n duplicates arrive together.
        mailout_id = ctx.db.add_mailout()
        status, answer = server.post_json(
            "/send-mailout", {"mailout_id": str(mailout_id), "auth_token": SHARED_SECRET}
        )
        if status != 202:
            raise RuntimeError(f"webhook answered {status}: {answer}")
        time.sleep(0.5)
        answers_b = fire_together(server.port, mailout_id, n)
        ctx.db.pause(mailout_id)
        settle(ctx.standin, quiet=0.5)
        results["after_winner"] = answers_b
    for label, answers, expected_202 in (
        (f"{n + 1} webhooks at once (one claims)", results["together"], 1),
        (f"{n} duplicates while the winner sends", results["after_winner"], 0),
    ):
        conflicts = [seconds for status, seconds in answers if status == 409]
        others = sorted({status for status, _ in answers if status != 409})
        accepted = sum(1 for status, _ in answers if status == 202)
        p99 = percentile(conflicts, 99)
        ok_statuses = accepted == expected_202 and len(conflicts) == len(answers) - expected_202
        ctx.add(
            "6",
            f"{label}: p99 of the 409s",
            f"{p99 * 1000:.0f} ms" if p99 is not None else "no 409",
            note=(
                f"{len(conflicts)} x 409, {accepted} x 202"
                + (f", other statuses {others}" if others and not ok_statuses else "")
                + (f"; p50 {percentile(conflicts, 50) * 1000:.0f} ms, max {max(conflicts) * 1000:.0f} ms" if conflicts else "")
                + f"; {opts.webhook_recipients:,} recipients, GetAccount at {opts.ses_latency_ms:g} ms"
            ),
        )
    ctx.raw["webhooks"] = {k: [list(a) for a in v] for k, v in results.items()}
