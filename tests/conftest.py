"""Shared fixtures: a real Postgres, a fresh database per test cloned from a
migrated template, moto for SES, and settings that need no environment.

Postgres is found in this order: TEST_DATABASE_URL, the server on
127.0.0.1:5432 (user postgres), else an embedded one from the pgserver wheel.
"""

from __future__ import annotations

import itertools
import os

import boto3
import psycopg
import pytest
from moto import mock_aws
from pytest_postgresql.janitor import DatabaseJanitor

from amazonsender import create_app, db
from amazonsender.config import Settings
from amazonsender.ses import SesTransport
from tests.fakes import FakeTransport, MotoSesTransport
from tests.support.db import PgServer, add_mailout, add_subscribers, cloned_database, reachable, server_from_url
from tests.support.settings import FROM_ADDRESS, SHARED_SECRET, UNSUBSCRIBE_SECRET, with_settings

# The command line run in this process: the `invoke` and `standin` fixtures.
pytest_plugins = ("tests.support.cli", "tests.support.run_fixtures")

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> PgServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return server_from_url(url)
    if reachable(LOCAL_SERVER_URL):
        return server_from_url(LOCAL_SERVER_URL)
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    pg_server.embedded = server  # keep it alive for the session
    return server_from_url(server.get_uri())


@pytest.fixture(scope="session")
def template_database(pg_server) -> str:
    """A database migrated once per test session, cloned for every test."""
    name = f"amazonsender_template_{os.getpid()}"
    janitor = DatabaseJanitor(
        user=pg_server.user, host=pg_server.host, port=pg_server.port, password=pg_server.password, dbname=name
    )
    janitor.drop()
    janitor.init()
    db.upgrade(pg_server.url(name))
    yield name
    janitor.drop()


@pytest.fixture
def database_url(pg_server, template_database) -> str:
    name = f"amazonsender_test_{os.getpid()}_{next(_database_numbers)}"
    with cloned_database(pg_server, template_database, name) as url:
        yield url


@pytest.fixture
def pool(database_url):
    pool = db.create_pool(database_url, max_size=10)
    pool.wait(timeout=10)
    yield pool
    pool.close()


@pytest.fixture
def conn(database_url):
    """A separate autocommit connection for arranging and checking data."""
    with psycopg.connect(database_url, autocommit=True, **db.connect_kwargs()) as connection:
        yield connection


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        executor_shared_secret=SHARED_SECRET,
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
        app_base_url="https://news.example.test",
        aws_region="us-east-1",
        ses_from_email=FROM_ADDRESS,
        ses_reply_to="editor@example.test",
        ses_configuration_set="newsletter",
        # Fast by default; the pacing tests set their own rate.
        rate_limit_per_sec=2000.0,
        batch_size=5,
        # One call at a time, so that tests can reason about the order of
        # sends; SEND_CONCURRENCY=auto (the default) has tests of its own.
        send_concurrency=1,
        # moto has no SendBulkEmail: one SendEmail per recipient, unless a
        # test (tests/test_bulk.py, against the stand-in) turns it on.
        ses_bulk_send="off",
        outbox_dir=str(tmp_path / "outbox"),
    )


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials, so that nothing could ever authenticate to AWS."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def moto_ses(aws_env):
    """moto's SES with our sending domain verified; yields the backend that
    keeps every raw message sent."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    with mock_aws():
        client = boto3.client("sesv2", region_name="us-east-1")
        client.create_email_identity(EmailIdentity="example.test")
        yield ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


@pytest.fixture
def ses_transport(moto_ses, settings) -> SesTransport:
    transport = SesTransport.from_settings(settings)
    return MotoSesTransport(
        transport.client, from_address=transport.from_address, configuration_set=transport.configuration_set
    )


@pytest.fixture
def standin_transport(monkeypatch, tmp_path, settings):
    """(stand-in, the production SesTransport pointed at it) in this process,
    with an account that lets the service go as fast as its settings say."""
    from amazonsender.ses import SesTransport
    from tests.support.ses_standin import SesStandIn

    with SesStandIn() as standin:
        standin.set_account(max_send_rate=10_000)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        for name, value in standin.client_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        yield standin, SesTransport.from_settings(settings)


@pytest.fixture
def recording_transport() -> FakeTransport:
    """Accepts every email and records it, with the time of each call."""
    return FakeTransport()


@pytest.fixture
def app(settings, pool, ses_transport):
    app = create_app(settings, pool=pool, transport=ses_transport)
    app.config["TESTING"] = True
    yield app
    for thread in app.extensions.get("background_sends", []):
        thread.join(timeout=30)


@pytest.fixture
def client(app):
    return app.test_client()


# --- SNS: a key and certificate made here, and an app that trusts our topic --


@pytest.fixture
def sent_mailout(conn):
    """A mailout whose ledger says it went to ann@list.example with SES id
    0100-ses-id: what SES events are applied to."""
    (ann_id,) = add_subscribers(conn, ["ann@list.example"])
    mailout_id = add_mailout(conn, status="sent")
    conn.execute(
        "INSERT INTO send_logs (mailout_id, subscriber_id, email, status, ses_message_id)"
        " VALUES (%s, %s, %s, 'sent', '0100-ses-id')",
        (mailout_id, ann_id, "ann@list.example"),
    )
    return mailout_id


@pytest.fixture(scope="session")
def sns_key_and_certificate():
    from tests.support.sns_signing import make_key_and_certificate

    return make_key_and_certificate()


@pytest.fixture
def sns_signer(sns_key_and_certificate):
    from tests.support.sns_signing import SnsSigner

    return SnsSigner(*sns_key_and_certificate)


@pytest.fixture
def sns_app(settings, pool, recording_transport, sns_signer):
    from tests.support.sns_signing import TOPIC_ARN

    return create_app(
        with_settings(settings, sns_topic_arns=(TOPIC_ARN,)),
        pool=pool,
        transport=recording_transport,
        fetch_url=sns_signer.fetch,
    )


@pytest.fixture
def sns_client(sns_app):
    return sns_app.test_client()
