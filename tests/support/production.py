"""Production settings for tests of the settings check: a complete environment, and the problems Settings.from_env reports."""

from __future__ import annotations

import pytest

from amazonsender.config import ConfigError, Settings

DATABASE_URL = "postgresql://sender:db-password-123@db.example.test:5432/news"
SHARED_SECRET = "shared-secret-abcdefghijklmnop"
UNSUBSCRIBE_SECRET = "unsubscribe-secret-abcdefghijklmnop"
OLD_SECRET = "old-unsubscribe-secret-abcdefghijk"
AWS_SECRET = "aws-secret-key-abcdefghijklmnop"
POSTAL_ADDRESS = "Example Ltd, 1 Main Street, Springfield, IL 62701, USA"


def production_env(**changes) -> dict[str, str]:
    env = {
        "DATABASE_URL": DATABASE_URL,
        "EXECUTOR_SHARED_SECRET": SHARED_SECRET,
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "APP_BASE_URL": "https://mail.example.test",
        "AWS_REGION": "eu-west-1",
        "SES_FROM_EMAIL": "Newsletter <news@example.test>",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "POSTAL_ADDRESS": POSTAL_ADDRESS,
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value.problems


def problem_about(problems: list[str], name: str) -> str:
    matching = [problem for problem in problems if problem.startswith(name + " ")]
    assert len(matching) == 1, (name, problems)
    return matching[0]
