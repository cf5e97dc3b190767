"""The benchmark harness (bench/, `make bench`) still works: its helpers on
made-up numbers, and one tiny pacing run through the real pieces (the
stand-in process, gunicorn, Postgres). Nothing here asserts a timing: the
benchmark prints its numbers and people judge them."""

from __future__ import annotations

from bench import (  # noqa: F401 - all import
    capacity, context, endpoints, load, mailout, options, profile_summary, profiling, report, sending, service,
    standin, sweep,
)
import http.client
import json

from bench.report import Row, achieved_rate, format_table, max_in_window, pace_between, percentile


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


def test_steady_pace_leaves_out_the_start_and_the_tail():
    # 10 a second for 10 s, then a burst of 100 at the pause.
    times = [n / 10 for n in range(100)] + [10.0] * 100
    assert pace_between(times, 2.0, 8.0) == (10.0, 60)
    assert pace_between(times, 5.0, 5.0) == (None, 0)
    opts = options.Options(sweep_seconds=10.0, sweep_warmup_seconds=2.0)
    pace, count, start, end = sweep.steady(times, opts)
    assert (pace, count, start, end) == (10.0, 80, 2.0, 10.0)
    # A list that ran out before the cap ends the window at its last email.
    assert sweep.steady([n / 10 for n in range(51)], opts, finished=True)[1:] == (30, 2.0, 5.0)


def test_standin_counts_destinations_and_sets_the_account_rate(tmp_path):
    with service.StandIn(0.0, tmp_path) as ses:
        ses.set_max_send_rate(1000)
        conn = http.client.HTTPConnection(service.LOOPBACK, ses.port, timeout=10)
        conn.request("GET", "/v2/email/account")
        account = json.loads(conn.getresponse().read())
        assert account["SendQuota"]["MaxSendRate"] == 1000
        for to in ("Reader One <Reader1@example.test>", "reader1@example.test", "reader2@example.test"):
            body = {"FromEmailAddress": "news@example.test", "Destination": {"ToAddresses": [to]},
                    "Content": {"Raw": {"Data": "eA=="}}}
            conn.request("POST", "/v2/email/outbound-emails", json.dumps(body))
            assert conn.getresponse().read()
        conn.close()
        assert ses.destinations() == {"reader1@example.test": 2, "reader2@example.test": 1}
        assert ses.stats()["duplicates"] == 1


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
