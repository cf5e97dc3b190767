"""`make bench`: measures the real service (gunicorn, Postgres) against a
local SES v2 stand-in and prints a table. Everything runs on loopback.

    python -m bench            # what `make bench` runs
    BENCH_QUICK=1 python -m bench

See bench/options.py for every BENCH_* variable and BENCHMARKS.md for results.
"""
