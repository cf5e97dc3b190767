"""The fixed values the tests share: paths, secrets, the sender address, and
settings changed for one test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from amazonsender.config import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_SECRET = "test-shared-secret-0123456789"
UNSUBSCRIBE_SECRET = "test-unsubscribe-secret-0123456789"
FROM_ADDRESS = "Newsletter <news@example.test>"
# The settings production cannot start without.
REQUIRED = [
    "DATABASE_URL",
    "EXECUTOR_SHARED_SECRET",
    "UNSUBSCRIBE_SECRET",
    "APP_BASE_URL",
    "AWS_REGION",
    "SES_FROM_EMAIL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
]


def with_settings(settings: Settings, **changes) -> Settings:
    return replace(settings, **changes)
