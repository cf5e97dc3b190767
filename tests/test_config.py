"""Settings.from_env: every problem reported at once, local defaults, no secret in repr."""

from __future__ import annotations

import pytest

from amazonsender.config import ConfigError, Settings

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

DATABASE_URL = "postgresql://sender:db-password-123@db.example.test:5432/news"
SHARED_SECRET = "shared-secret-abcdefghijklmnop"
UNSUBSCRIBE_SECRET = "unsubscribe-secret-abcdefghijklmnop"
OLD_SECRET = "old-unsubscribe-secret-abcdefghijk"
AWS_SECRET = "aws-secret-key-abcdefghijklmnop"


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


def test_complete_production_settings():
    settings = Settings.from_env(production_env())
    assert settings.app_env == "production"
    assert not settings.is_local
    assert settings.database_url == DATABASE_URL
    assert settings.executor_shared_secret == SHARED_SECRET
    assert settings.unsubscribe_secret == UNSUBSCRIBE_SECRET
    assert settings.unsubscribe_old_secrets == ()
    assert settings.app_base_url == "https://mail.example.test"
    assert settings.aws_region == "eu-west-1"
    assert settings.ses_from_email == "Newsletter <news@example.test>"
    assert settings.use_outbox is False


def test_production_with_nothing_set_reports_every_missing_setting_at_once():
    problems = problems_of({})
    for name in REQUIRED:
        assert problem_about(problems, name) == f"{name} is missing"
    assert len(problems) == len(REQUIRED)


def test_the_error_message_lists_every_problem():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({})
    message = str(info.value)
    for name in REQUIRED:
        assert f"- {name} is missing" in message


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_setting_is_required_alone(name):
    assert problems_of(production_env(**{name: None})) == [f"{name} is missing"]


@pytest.mark.parametrize("name", REQUIRED)
def test_blank_counts_as_missing(name):
    assert problems_of(production_env(**{name: "   "})) == [f"{name} is missing"]


def test_malformed_values_are_all_reported_together():
    env = production_env(
        RATE_LIMIT_PER_SEC="fast",
        BATCH_SIZE="0",
        APP_BASE_URL="http://mail.example.test",
        SES_FROM_EMAIL="not an address",
        UNSUBSCRIBE_SECRET="short",
        LOG_LEVEL="loud",
    )
    problems = problems_of(env)
    assert len(problems) == 6, problems
    assert "number" in problem_about(problems, "RATE_LIMIT_PER_SEC")
    assert "'fast'" in problem_about(problems, "RATE_LIMIT_PER_SEC")
    assert "between 1 and" in problem_about(problems, "BATCH_SIZE")
    assert "https://" in problem_about(problems, "APP_BASE_URL")
    assert "not an email address" in problem_about(problems, "SES_FROM_EMAIL")
    assert "too short" in problem_about(problems, "UNSUBSCRIBE_SECRET")
    assert "'loud'" in problem_about(problems, "LOG_LEVEL")


def test_bad_app_env_is_reported_with_the_other_problems():
    problems = problems_of(production_env(APP_ENV="staging", BATCH_SIZE="many", DATABASE_URL=None))
    assert "'staging'" in problem_about(problems, "APP_ENV")
    assert "whole number" in problem_about(problems, "BATCH_SIZE")
    assert problem_about(problems, "DATABASE_URL") == "DATABASE_URL is missing"
    assert len(problems) == 3


def test_missing_and_malformed_are_reported_together():
    problems = problems_of({"APP_BASE_URL": "http://x.test", "EXECUTOR_SHARED_SECRET": "tiny", "PORT": "99999"})
    assert "too short" in problem_about(problems, "EXECUTOR_SHARED_SECRET")
    assert "https://" in problem_about(problems, "APP_BASE_URL")
    assert "between 1 and 65535" in problem_about(problems, "PORT")
    for name in ("DATABASE_URL", "UNSUBSCRIBE_SECRET", "AWS_REGION", "SES_FROM_EMAIL", "AWS_ACCESS_KEY_ID"):
        assert problem_about(problems, name) == f"{name} is missing"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "six"])
def test_bad_rate_limit(value):
    problem_about(problems_of(production_env(RATE_LIMIT_PER_SEC=value)), "RATE_LIMIT_PER_SEC")


@pytest.mark.parametrize("value", ["0", "-5", "2.5", "fifty", "100000"])
def test_bad_batch_size(value):
    problem_about(problems_of(production_env(BATCH_SIZE=value)), "BATCH_SIZE")


@pytest.mark.parametrize(
    "value",
    ["mail.example.test", "ftp://mail.example.test", "https://", "https://x.test/?a=1", "https://x.test/#f"],
)
def test_bad_app_base_url(value):
    problem_about(problems_of(production_env(APP_BASE_URL=value)), "APP_BASE_URL")


@pytest.mark.parametrize("value", ["nope", "news@", "@example.test", "a b@example.test", "Name <>"])
def test_bad_from_address(value):
    problem_about(problems_of(production_env(SES_FROM_EMAIL=value)), "SES_FROM_EMAIL")


@pytest.mark.parametrize("value", ["news@example.test", "Newsletter <news@example.test>", '"Doe, J" <j@example.test>'])
def test_good_from_address(value):
    assert Settings.from_env(production_env(SES_FROM_EMAIL=value)).ses_from_email == value


def test_bad_reply_to_and_test_emails():
    problems = problems_of(production_env(SES_REPLY_TO="nobody", TEST_EMAILS="a@example.test, oops"))
    assert "'nobody'" in problem_about(problems, "SES_REPLY_TO")
    assert "'oops'" in problem_about(problems, "TEST_EMAILS")


def test_bad_database_url():
    problem = problem_about(problems_of(production_env(DATABASE_URL="https://db.example.test")), "DATABASE_URL")
    assert "Postgres connection string" in problem


@pytest.mark.parametrize("value", ["postgres://u:p@h/db", "postgresql://u@h:6543/db", "host=h dbname=db user=u"])
def test_good_database_urls(value):
    assert Settings.from_env(production_env(DATABASE_URL=value)).database_url == value


def test_supabase_url_without_database_url_gives_the_hint():
    problems = problems_of(production_env(DATABASE_URL=None, SUPABASE_URL="https://abc.supabase.co"))
    problem = problem_about(problems, "DATABASE_URL")
    assert problem.startswith("DATABASE_URL is missing")
    assert "SUPABASE_URL" in problem and "Connect" in problem


def test_no_supabase_hint_without_supabase_url():
    assert problems_of(production_env(DATABASE_URL=None)) == ["DATABASE_URL is missing"]


@pytest.mark.parametrize("value", ["local", "LOCAL", " Local "])
def test_local_mode_fills_defaults_and_uses_the_outbox(value):
    settings = Settings.from_env({"APP_ENV": value, "DATABASE_URL": DATABASE_URL})
    assert settings.app_env == "local" and settings.is_local
    assert settings.use_outbox is True
    assert settings.app_base_url == "http://localhost:3000"
    assert settings.aws_region
    assert settings.executor_shared_secret and settings.unsubscribe_secret
    assert "@" in settings.ses_from_email


def test_local_base_url_follows_the_port():
    settings = Settings.from_env({"APP_ENV": "local", "DATABASE_URL": DATABASE_URL, "PORT": "8123"})
    assert settings.port == 8123
    assert settings.app_base_url == "http://localhost:8123"


def test_local_mode_with_aws_keys_sends_through_ses():
    env = {"APP_ENV": "local", "DATABASE_URL": DATABASE_URL, "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    assert Settings.from_env(env).use_outbox is False


def test_local_mode_with_half_the_aws_keys_is_an_error():
    problems = problems_of({"APP_ENV": "local", "DATABASE_URL": DATABASE_URL, "AWS_ACCESS_KEY_ID": "AKIA"})
    assert problems == ["AWS_SECRET_ACCESS_KEY is missing"]


def test_local_mode_keeps_what_is_set():
    env = {
        "APP_ENV": "local",
        "DATABASE_URL": DATABASE_URL,
        "APP_BASE_URL": "http://192.168.1.5:3000/",
        "SES_FROM_EMAIL": "me@example.test",
        "UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
    }
    settings = Settings.from_env(env)
    assert settings.app_base_url == "http://192.168.1.5:3000"  # http is fine locally; no trailing slash
    assert settings.ses_from_email == "me@example.test"
    assert settings.unsubscribe_secret == UNSUBSCRIBE_SECRET


def test_production_never_uses_the_outbox_or_local_defaults():
    problems = problems_of({"APP_ENV": "production", "DATABASE_URL": DATABASE_URL})
    assert "AWS_ACCESS_KEY_ID is missing" in problems
    assert "EXECUTOR_SHARED_SECRET is missing" in problems


def test_defaults():
    settings = Settings.from_env(production_env())
    assert settings.rate_limit_per_sec == 6
    assert settings.batch_size == 50
    assert settings.port == 3000
    assert settings.log_level == "info"
    assert settings.ses_reply_to is None
    assert settings.ses_configuration_set is None
    assert settings.test_emails == ()
    assert settings.notion_mailout_property == "mailout_id"


def test_optional_settings_are_read():
    settings = Settings.from_env(
        production_env(
            RATE_LIMIT_PER_SEC="7.5",
            BATCH_SIZE="20",
            PORT="8080",
            LOG_LEVEL="DEBUG",
            SES_REPLY_TO="editor@example.test",
            SES_CONFIGURATION_SET="newsletter",
            TEST_EMAILS="a@example.test, b@example.test,,",
            UNSUBSCRIBE_OLD_SECRETS=f"{OLD_SECRET}, another-old-secret-0123456",
            NOTION_MAILOUT_PROPERTY="Mailout",
            APP_BASE_URL="https://mail.example.test/",
        )
    )
    assert settings.rate_limit_per_sec == 7.5
    assert settings.batch_size == 20
    assert settings.port == 8080
    assert settings.log_level == "debug"
    assert settings.ses_reply_to == "editor@example.test"
    assert settings.ses_configuration_set == "newsletter"
    assert settings.test_emails == ("a@example.test", "b@example.test")
    assert settings.unsubscribe_old_secrets == (OLD_SECRET, "another-old-secret-0123456")
    assert settings.notion_mailout_property == "Mailout"
    assert settings.app_base_url == "https://mail.example.test"


def test_secrets_are_not_in_repr():
    settings = Settings.from_env(production_env(UNSUBSCRIBE_OLD_SECRETS=OLD_SECRET))
    for text in (repr(settings), str(settings)):
        for secret in (SHARED_SECRET, UNSUBSCRIBE_SECRET, OLD_SECRET, "db-password-123", AWS_SECRET):
            assert secret not in text
    assert "mail.example.test" in repr(settings)  # the rest is still there to debug with


def test_secrets_are_not_in_the_error_message():
    env = production_env(DATABASE_URL="mysql://u:db-password-123@h/db", EXECUTOR_SHARED_SECRET="tiny-secret")
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "db-password-123" not in str(info.value)
    assert "tiny-secret" not in str(info.value)


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch):
    for name in list(production_env()) + ["APP_ENV", "BATCH_SIZE"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in production_env(BATCH_SIZE="7").items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().batch_size == 7
