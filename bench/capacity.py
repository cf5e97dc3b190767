"""Section 0: how many SendEmail requests per second the stand-ins answer,
and the sample email every direct SES call of the benchmark sends."""

from __future__ import annotations

import base64
import json
import uuid

import psutil

from amazonsender.links import UnsubscribeTokens
from amazonsender.message import MessageBuilder

from . import load
from .context import Context
from .service import FROM_ADDRESS, NEWSLETTER_HTML, UNSUBSCRIBE_SECRET



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

