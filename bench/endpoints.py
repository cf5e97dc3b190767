"""The HTTP sections: /ses-events and /unsubscribe under load (5), and
duplicate webhooks answered 409 (6)."""

from __future__ import annotations

import http.client
import json
import threading
import time

from amazonsender.links import UnsubscribeTokens

from . import load
from .context import HIGH_RATE, Context
from .mailout import settle
from .profiling import Spies
from .report import percentile, verdict
from .service import LOOPBACK, SHARED_SECRET, UNSUBSCRIBE_SECRET, Monitor


# --- 5. /ses-events and /unsubscribe under load ----------------------------------


def signed_requests(ctx: Context, count: int, signer) -> tuple:
    """The request files of the two loads: `count` distinct signed Delivery
    notifications and unsubscribe tokens; and the seconds signing took."""
    from tests.support.sns_signing import ses_sample

    with ctx.db.connect() as conn:
        ids = [row["id"] for row in conn.execute("SELECT id FROM subscribers ORDER BY email LIMIT %s", (count,))]
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
    return events_file, unsubscribe_file, sign_seconds


def processed_detail(ctx: Context, name: str, requests: int) -> str:
    """What the load changed in the database, and how many requests repeated."""
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
    repeats = max(0, requests - processed)
    return detail + (f"; {repeats:,} repeated requests (answered, changed nothing)" if repeats else "; no request repeated")


def http_endpoints(ctx: Context) -> None:
    from tests.support.sns_signing import TOPIC_ARN, SnsSigner, make_key_and_certificate

    opts = ctx.options
    count = opts.http_messages
    ctx.db.reset(count)
    key, certificate = make_key_and_certificate()
    cert_file = ctx.out / "sns-cert.pem"
    cert_file.write_bytes(certificate)
    events_file, unsubscribe_file, sign_seconds = signed_requests(ctx, count, SnsSigner(key, certificate))

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
            detail = processed_detail(ctx, name, result.requests)
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
