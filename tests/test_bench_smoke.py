"""The benchmark harness (bench/, `make bench`) still works: its helpers on
made-up numbers, and one tiny pacing run through the real pieces (the
stand-in process, gunicorn, Postgres). Nothing here asserts a timing: the
benchmark prints its numbers and people judge them."""

from __future__ import annotations

from bench import (  # noqa: F401 - all import
    capacity, context, endpoints, load, mailout, options, profile_summary, profiling, report, sending, service,
    standin, sweep,
)
from bench.report import Row, achieved_rate, format_table, max_in_window, percentile


def test_window_and_rate_helpers():
    times = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    # [t, t + 1) is half-open: 0.0 .. 0.75 is four, and 1.0 starts the next.
    assert max_in_window(times) == 4
    assert max_in_window([0.0, 0.1, 0.2, 5.0]) == 3
    assert achieved_rate(times) == 4.0
    assert achieved_rate([1.0]) is None
    assert sending.tightest_span([0.0, 0.5, 0.9, 2.0], 3) == 0.9
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(range(1, 101)), 99) == 99


def test_table_lists_every_row_and_its_notes():
    table = format_table(
        [Row("1", "pacing at 6/s", "6.00/s", "within 2%", "met"), Row("2", "throughput", "180/s", note="capped")]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| # | measurement")
    assert "| 1 | pacing at 6/s" in lines[2] and "met" in lines[2]
    assert "[2] throughput: capped" in table


def test_profile_summary_groups_by_library():
    collapsed = (
        "run (amazonsender/sender.py:10);_make_api_call (botocore/client.py:5) 30\n"
        "run (amazonsender/sender.py:10);as_bytes (/usr/lib/python3.11/email/message.py:2) 10\n"
    )
    summary = profile_summary.summarize(collapsed)
    assert "40 samples" in summary
    assert "75.0%  boto3/botocore" in summary


def test_a_tiny_pacing_run_through_the_real_service(database_url, tmp_path):
    opts = options.Options(pacing=[(50.0, 20)], ses_latency_ms=0.0, concurrency=2, out=tmp_path)
    database = service.BenchDatabase.existing(database_url)
    with service.StandIn(0.0, tmp_path) as ses, service.home_dir() as home:
        ctx = context.Context(opts, database, ses, home, tmp_path)
        sending.pacing(ctx)
    measured = {row.measurement.split(":")[-1].strip(): row for row in ctx.rows}
    assert set(measured) == {"achieved rate", "most emails in any 1 s window"}
    assert ctx.raw["pacing"][0]["emails"] == 20
    assert ctx.raw["pacing"][0]["stopped"] == "finished"
    assert "pacing at RATE_LIMIT_PER_SEC=50" in format_table(ctx.rows)
