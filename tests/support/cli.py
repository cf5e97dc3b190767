"""The command line run in this process (click's runner) with production
settings, the test database and the SES stand-in: the `standin` and `invoke`
fixtures."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from amazonsender import cli
from tests.support.ses_standin import SesStandIn

SETTINGS_VARIABLES = (
    "SES_REPLY_TO", "SES_CONFIGURATION_SET", "UNSUBSCRIBE_OLD_SECRETS", "PORT", "LOG_LEVEL", "TEST_EMAILS",
    "NOTION_MAILOUT_PROPERTY", "OUTBOX_DIR", "DB_POOL_SIZE", "SNS_TOPIC_ARNS", "MAX_BOUNCE_RATE",
    "MAX_COMPLAINT_RATE", "GUARD_MIN_SENT", "MAX_CONSECUTIVE_FAILURES", "DB_RETRY_SECONDS", "SUPABASE_URL",
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "RECONCILE_AFTER",
    "NOTION_TOKEN", "NOTION_BASE_URL", "NOTION_TIMEOUT_SECONDS", "NOTION_SUBJECT_PROPERTY", "NOTION_STATUS_PROPERTY",
)


@pytest.fixture
def standin():
    account = {
        "SendingEnabled": True,
        "ProductionAccessEnabled": True,
        "EnforcementStatus": "HEALTHY",
        "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 1000.0, "SentLast24Hours": 0.0},
    }
    with SesStandIn(account=account) as ses:
        yield ses


@pytest.fixture
def invoke(settings, standin, tmp_path):
    """Runs `python -m amazonsender ...` in this process with production
    settings, the test database and the SES stand-in."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    env = {name: None for name in SETTINGS_VARIABLES}
    env.update(
        PYTHON_DOTENV_DISABLED="1",
        APP_ENV="production",
        DATABASE_URL=settings.database_url,
        EXECUTOR_SHARED_SECRET=settings.executor_shared_secret,
        UNSUBSCRIBE_SECRET=settings.unsubscribe_secret,
        APP_BASE_URL=settings.app_base_url,
        SES_FROM_EMAIL=settings.ses_from_email,
        POSTAL_ADDRESS="Example Newsletter, 1 Main Street, Springfield",
        RATE_LIMIT_PER_SEC="500",
        BATCH_SIZE=str(settings.batch_size),
        HEARTBEAT_STALE_SECONDS="120",
        LOG_FORMAT="text",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        **standin.client_env(),
    )

    def run(*args):
        return CliRunner().invoke(cli.main, [str(a) for a in args], env=env, catch_exceptions=False)

    run.env = env  # a test may add settings (NOTION_TOKEN...) before it runs
    yield run
    # The command configures logging on streams that die with the runner.
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
