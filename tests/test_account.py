"""GetAccount before the claim: SES's quota, rate and sending switch.

moto does not implement GetAccount, so SesTransport runs over a real sesv2
client with botocore's Stubber (which checks requests and responses against
the SES v2 model), and once end to end against the local SES stand-in."""

from __future__ import annotations

import logging
import socket

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from amazonsender import create_app, sender
from amazonsender.ses import ACCOUNT, THROTTLED, TRANSIENT, AccountLimits, OutboxTransport, SendError, SesTransport
from tests.fakes import FakeTransport
from tests.support.db import add_mailout, add_subscribers, ledger, mailout_row
from tests.support.sending import claim_and_queue, emails
from tests.support.settings import FROM_ADDRESS, SHARED_SECRET, with_settings
from tests.support.ses_standin import SesStandIn

AUTH = {"Authorization": f"Bearer {SHARED_SECRET}"}


def account(*, enabled=True, max_24_hour_send=50000.0, sent_last_24_hours=1200.0, max_send_rate=14.0) -> dict:
    """A GetAccount answer, shaped as SES sends it."""
    return {
        "DedicatedIpAutoWarmupEnabled": False,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": True,
        "SendingEnabled": enabled,
        "SendQuota": {
            "Max24HourSend": max_24_hour_send,
            "MaxSendRate": max_send_rate,
            "SentLast24Hours": sent_last_24_hours,
        },
    }


@pytest.fixture
def stubbed(aws_env):
    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield SesTransport(client, from_address=FROM_ADDRESS, configuration_set="newsletter"), stubber
        stubber.assert_no_pending_responses()


# --- SesTransport.account_limits ------------------------------------------------


def test_account_limits_reads_the_quota_the_rate_and_the_switch(stubbed):
    transport, stubber = stubbed
    stubber.add_response(
        "get_account", account(max_24_hour_send=50000.0, sent_last_24_hours=1200.0, max_send_rate=14.0), {}
    )

    assert transport.account_limits() == AccountLimits(
        sending_enabled=True, max_24_hour_send=50000.0, sent_last_24_hours=1200.0, max_send_rate=14.0
    )


def test_account_limits_reads_a_disabled_account_and_an_unlimited_quota(stubbed):
    transport, stubber = stubbed
    stubber.add_response("get_account", account(enabled=False, max_24_hour_send=-1.0, sent_last_24_hours=0.0), {})

    limits = transport.account_limits()

    assert limits.sending_enabled is False
    assert limits.max_24_hour_send == -1.0


@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied"])
def test_account_limits_is_none_when_getaccount_is_not_allowed(stubbed, caplog, code):
    transport, stubber = stubbed
    stubber.add_client_error(
        "get_account",
        service_error_code=code,
        service_message="User: arn:aws:iam::123456789012:user/sender is not authorized to perform: ses:GetAccount",
        http_status_code=403,
    )

    with caplog.at_level(logging.WARNING, logger="amazonsender.ses"):
        assert transport.account_limits() is None

    warnings = [r for r in caplog.records if r.name == "amazonsender.ses" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "GetAccount" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "code, status, kind",
    [
        ("TooManyRequestsException", 429, THROTTLED),
        ("InternalFailure", 500, TRANSIENT),
        ("ServiceUnavailable", 503, TRANSIENT),
        ("UnrecognizedClientException", 403, ACCOUNT),
        ("InvalidClientTokenId", 403, ACCOUNT),
        ("ExpiredTokenException", 403, ACCOUNT),
        ("SignatureDoesNotMatch", 403, ACCOUNT),
        ("AccountSuspendedException", 400, ACCOUNT),
    ],
)
def test_other_getaccount_errors_map_to_send_error_kinds(stubbed, code, status, kind):
    transport, stubber = stubbed
    stubber.add_client_error("get_account", service_error_code=code, service_message="no", http_status_code=status)

    with pytest.raises(SendError) as caught:
        transport.account_limits()

    assert caught.value.kind == kind and code in str(caught.value)


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_account_limits_when_ses_cannot_be_reached_is_transient(aws_env):
    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_loopback_port()}",
        config=Config(connect_timeout=2, read_timeout=2, retries={"total_max_attempts": 1}),
    )

    with pytest.raises(SendError) as caught:
        SesTransport(client, from_address=FROM_ADDRESS).account_limits()

    assert caught.value.kind == TRANSIENT


def test_account_limits_without_credentials_is_an_account_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_loopback_port()}",
        config=Config(retries={"total_max_attempts": 1}),
    )

    with pytest.raises(SendError) as caught:
        SesTransport(client, from_address=FROM_ADDRESS).account_limits()

    assert caught.value.kind == ACCOUNT and "credentials" in str(caught.value)


# --- sender.pace_for ----------------------------------------------------------------


def limits(*, enabled=True, max_24_hour_send=50000.0, sent_last_24_hours=0.0, max_send_rate=14.0) -> AccountLimits:
    return AccountLimits(enabled, max_24_hour_send, sent_last_24_hours, max_send_rate)


def test_a_disabled_account_cannot_send(settings):
    with pytest.raises(sender.AccountCannotSend, match="disabled"):
        sender.pace_for(FakeTransport(limits=limits(enabled=False)), 3, settings)


def test_more_recipients_than_the_quota_has_left_cannot_send_and_says_by_how_much(settings):
    transport = FakeTransport(limits=limits(max_24_hour_send=1000.0, sent_last_24_hours=980.0))

    with pytest.raises(sender.AccountCannotSend) as caught:
        sender.pace_for(transport, 30, settings)

    message = str(caught.value)
    assert "30 recipients" in message
    assert "20 of 1000" in message
    assert "10 too many" in message


def test_exactly_what_the_quota_has_left_can_send(settings):
    transport = FakeTransport(limits=limits(max_24_hour_send=1000.0, sent_last_24_hours=980.0))
    assert sender.pace_for(transport, 20, settings) > 0


def test_a_quota_already_overrun_leaves_nothing(settings):
    transport = FakeTransport(limits=limits(max_24_hour_send=200.0, sent_last_24_hours=230.0))
    with pytest.raises(sender.AccountCannotSend) as caught:
        sender.pace_for(transport, 1, settings)
    assert "0 of 200" in str(caught.value) and "1 too many" in str(caught.value)


def test_a_quota_of_minus_one_is_unlimited(settings):
    transport = FakeTransport(limits=limits(max_24_hour_send=-1.0, sent_last_24_hours=123456.0, max_send_rate=14.0))
    assert sender.pace_for(transport, 10_000_000, with_settings(settings, rate_limit_per_sec=6.0)) == 6.0


@pytest.mark.parametrize(
    "ours, theirs, pace", [(6.0, 14.0, 6.0), (50.0, 14.0, 14.0), (14.0, 14.0, 14.0), (6.0, 0.0, 6.0)]
)
def test_the_pace_is_the_lower_of_ours_and_the_accounts(settings, ours, theirs, pace):
    transport = FakeTransport(limits=limits(max_send_rate=theirs))
    assert sender.pace_for(transport, 10, with_settings(settings, rate_limit_per_sec=ours)) == pace


def test_the_local_outbox_has_no_quota(settings, tmp_path):
    transport = OutboxTransport(tmp_path / "outbox")
    assert sender.pace_for(transport, 10_000_000, with_settings(settings, rate_limit_per_sec=6.0)) == 6.0


def test_getaccount_not_allowed_means_nothing_is_checked(settings):
    assert sender.pace_for(FakeTransport(), 10_000_000, with_settings(settings, rate_limit_per_sec=6.0)) == 6.0


@pytest.mark.parametrize(
    "kind, raised", [(ACCOUNT, sender.AccountCannotSend), (TRANSIENT, sender.SesUnavailable), (THROTTLED, sender.SesUnavailable)]
)
def test_getaccount_errors(settings, kind, raised):
    transport = FakeTransport(account_error=SendError("Boom: no", kind=kind))
    with pytest.raises(raised, match="Boom"):
        sender.pace_for(transport, 3, settings)


def test_pace_for_over_a_stubbed_ses_client(stubbed, settings):
    transport, stubber = stubbed
    stubber.add_response("get_account", account(max_24_hour_send=100.0, sent_last_24_hours=95.0), {})
    with pytest.raises(sender.AccountCannotSend, match="2 too many"):
        sender.pace_for(transport, 7, settings)


# --- the webhook ----------------------------------------------------------------------


@pytest.fixture
def ready(conn):
    add_subscribers(conn, emails(8))
    add_subscribers(conn, ["left@list.example"], status="unsubscribed")
    return add_mailout(conn)


def webhook(settings, pool, transport):
    app = create_app(settings, pool=pool, transport=transport)
    app.config["TESTING"] = True
    return app


def post(app, mailout_id, wait=False):
    body = {"mailout_id": str(mailout_id)}
    if wait:
        body["wait"] = True
    return app.test_client().post("/send-mailout", json=body, headers=AUTH)


def assert_untouched(conn, mailout_id, transport):
    row = mailout_row(conn, mailout_id)
    assert row["status"] == "ready" and row["runner_id"] is None and row["started_at"] is None
    assert ledger(conn, mailout_id) == {}
    assert transport.sent == []


def test_webhook_over_quota_is_409_and_changes_nothing(settings, pool, conn, ready):
    # 8 active subscribers (the unsubscribed one does not count), 5 left.
    transport = FakeTransport(limits=limits(max_24_hour_send=1000.0, sent_last_24_hours=995.0))

    response = post(webhook(settings, pool, transport), ready, wait=True)

    assert response.status_code == 409
    assert "8 recipients" in response.json["error"] and "3 too many" in response.json["error"]
    assert response.json["status"] == "ready"
    assert transport.asked == 1
    assert_untouched(conn, ready, transport)


def test_webhook_with_sending_disabled_is_409_and_changes_nothing(settings, pool, conn, ready):
    transport = FakeTransport(limits=limits(enabled=False))

    response = post(webhook(settings, pool, transport), ready)

    assert response.status_code == 409 and "disabled" in response.json["error"]
    assert_untouched(conn, ready, transport)


def test_webhook_with_an_account_ses_refuses_is_409(settings, pool, conn, ready):
    transport = FakeTransport(account_error=SendError("UnrecognizedClientException: bad token", kind=ACCOUNT))

    response = post(webhook(settings, pool, transport), ready)

    assert response.status_code == 409 and "UnrecognizedClientException" in response.json["error"]
    assert_untouched(conn, ready, transport)


@pytest.mark.parametrize("kind", [TRANSIENT, THROTTLED])
def test_webhook_when_ses_cannot_be_asked_is_503_and_changes_nothing(settings, pool, conn, ready, kind):
    transport = FakeTransport(account_error=SendError("could not connect to SES: refused", kind=kind))

    response = post(webhook(settings, pool, transport), ready)

    assert response.status_code == 503 and "refused" in response.json["error"]
    assert_untouched(conn, ready, transport)


def test_webhook_within_the_quota_sends_at_the_accounts_lower_rate(settings, pool, conn, ready):
    rate = 20.0
    transport = FakeTransport(limits=limits(max_24_hour_send=1000.0, sent_last_24_hours=992.0, max_send_rate=rate))

    response = post(webhook(with_settings(settings, rate_limit_per_sec=2000.0), pool, transport), ready, wait=True)

    assert response.status_code == 200, response.json
    assert response.json["status"] == "sent" and response.json["sent"] == 8
    assert sorted(transport.sent) == emails(8)
    # The account's 20/s, not our 2000/s: never closer than the pacer's
    # catch-up after a batch boundary allows.
    gaps = [b - a for a, b in zip(transport.times, transport.times[1:])]
    assert min(gaps) >= 0.95 * sender.PACE_MARGIN / sender.CATCH_UP / rate


def test_webhook_when_getaccount_is_not_allowed_sends_anyway(settings, pool, conn, ready):
    transport = FakeTransport()
    response = post(webhook(settings, pool, transport), ready, wait=True)
    assert response.status_code == 200 and response.json["sent"] == 8


def test_webhook_for_a_mailout_that_is_not_ready_does_not_ask_ses(settings, pool, conn):
    mailout_id = add_mailout(conn, status="sent")
    transport = FakeTransport(limits=limits(enabled=False))
    response = post(webhook(settings, pool, transport), mailout_id)
    assert response.status_code == 409 and "'sent'" in response.json["error"]
    assert transport.asked == 0


# --- end to end: boto3 against the SES stand-in ------------------------------------------


@pytest.fixture
def standin(aws_env, monkeypatch, tmp_path):
    with SesStandIn() as ses:
        for name, value in ses.client_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        yield ses


def test_end_to_end_the_quota_refusal_and_then_the_send(settings, pool, conn, ready, standin):
    standin.account["SendQuota"].update(Max24HourSend=100.0, SentLast24Hours=97.0, MaxSendRate=500.0)
    app = webhook(settings, pool, SesTransport.from_settings(settings))

    refused = post(app, ready, wait=True)

    assert refused.status_code == 409
    assert "8 recipients" in refused.json["error"] and "3 of 100" in refused.json["error"]
    assert "5 too many" in refused.json["error"]
    assert [r.path for r in standin.requests] == ["/v2/email/account"]
    assert mailout_row(conn, ready)["status"] == "ready" and ledger(conn, ready) == {}

    standin.account["SendQuota"].update(SentLast24Hours=0.0)
    accepted = post(app, ready, wait=True)

    assert accepted.status_code == 200, accepted.json
    assert accepted.json["status"] == "sent" and accepted.json["sent"] == 8
    assert sorted(r.to_addresses[0] for r in standin.sent) == emails(8)


# --- the command line checks the account too ---------------------------------------------


def test_cli_resume_refused_by_the_account_leaves_the_mailout_paused(settings, pool, conn, ready, standin, tmp_path):
    from click.testing import CliRunner

    from amazonsender import cli

    claim_and_queue(pool, ready)
    conn.execute("UPDATE mailouts SET status = 'failed', error = 'account paused' WHERE id = %s", (ready,))
    standin.account["SendingEnabled"] = False
    env = {
        "PYTHON_DOTENV_DISABLED": "1",
        "APP_ENV": "production",
        "DATABASE_URL": settings.database_url,
        "EXECUTOR_SHARED_SECRET": settings.executor_shared_secret,
        "UNSUBSCRIBE_SECRET": settings.unsubscribe_secret,
        "APP_BASE_URL": settings.app_base_url,
        "SES_FROM_EMAIL": settings.ses_from_email,
        "POSTAL_ADDRESS": "Example Newsletter, 1 Main Street, Springfield",
        "LOG_FORMAT": "text",
    }
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(cli.main, ["mailout", "resume", str(ready)], env=env, catch_exceptions=False)
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)

    assert result.exit_code != 0 and "disabled" in result.output
    row = mailout_row(conn, ready)
    # Not left 'sending' with nobody sending it: resumable again later.
    assert row["status"] == "paused" and "disabled" in row["error"]
    assert set(ledger(conn, ready).values()) == {"queued"}
    assert [r for r in standin.requests if r.is_send] == []
