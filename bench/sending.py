"""The send sections: pacing (1), throughput and CPU per email against the
bare boto3 loop (2, 3), time to first email and memory by list size (4)."""

from __future__ import annotations

import itertools
import os
import threading
import time

import psutil

from .capacity import sample_email
from .context import HIGH_RATE, MB, Context, service_supports_concurrency
from .mailout import describe_stop, send_mailout
from .report import achieved_rate, max_in_window, verdict
from .service import FROM_ADDRESS, BenchDatabase


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

