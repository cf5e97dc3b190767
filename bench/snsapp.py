"""`gunicorn bench.snsapp:app`: the production app (wsgi.py's create_app()
with the settings from the environment) with one thing replaced: how SNS
signing certificates are fetched. The service would fetch them from
https://sns.<region>.amazonaws.com; the benchmark signs its messages with a
key of its own (tests/support/sns_signing.py) and its certificate is read from
BENCH_SNS_CERT_FILE. Every other URL is refused, so nothing here ever
touches the network."""

from __future__ import annotations

import os
from pathlib import Path

from amazonsender import create_app
from amazonsender.sns import CertificateUnavailable
from tests.support.sns_signing import CERT_URL


def certificate_fetcher(cert_file: str | os.PathLike):
    pem = Path(cert_file).read_bytes()

    def fetch(url: str) -> bytes:
        if url == CERT_URL:
            return pem
        raise CertificateUnavailable(f"the benchmark fetches nothing but its own certificate, not {url}")

    return fetch


app = create_app(fetch_url=certificate_fetcher(os.environ["BENCH_SNS_CERT_FILE"]))
