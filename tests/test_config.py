"""Settings.from_env: every problem reported at once, local defaults, no secret in repr."""

from __future__ import annotations

import logging
from email.utils import parseaddr

import pytest

from amazonsender import config
from amazonsender.config import ConfigError, Settings
from tests.support.production import (
    AWS_SECRET,
    DATABASE_URL,
    OLD_SECRET,
    POSTAL_ADDRESS,
    SHARED_SECRET,
    UNSUBSCRIBE_SECRET,
    problem_about,
    problems_of,
    production_env,
)
from tests.support.settings import REQUIRED


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
    assert settings.postal_address == POSTAL_ADDRESS
    assert settings.newsletter_name is None


def test_production_with_nothing_set_reports_every_missing_setting_at_once():
    problems = problems_of({})
    for name in REQUIRED:
        assert problem_about(problems, name) == f"{name} is missing"
    assert problem_about(problems, "POSTAL_ADDRESS").startswith("POSTAL_ADDRESS is missing")
    assert len(problems) == len(REQUIRED) + 1


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


@pytest.mark.parametrize("value, expected", [(None, 0), ("auto", 0), (" AUTO ", 0), ("1", 1), ("256", 256)])
def test_send_concurrency_is_auto_by_default_or_a_number(value, expected):
    """0 stands for auto (sender/flights.py), the default."""
    env = production_env() if value is None else production_env(SEND_CONCURRENCY=value)
    settings = Settings.from_env(env)
    assert settings.send_concurrency == expected and settings.send_concurrency_max == 64


@pytest.mark.parametrize("name, value", [
    ("SEND_CONCURRENCY", "0"), ("SEND_CONCURRENCY", "257"), ("SEND_CONCURRENCY", "automatic"),
    ("SEND_CONCURRENCY", "2.5"), ("SEND_CONCURRENCY_MAX", "0"), ("SEND_CONCURRENCY_MAX", "auto"),
    ("SEND_CONCURRENCY_MAX", "1000"),
])  # fmt: skip
def test_bad_send_concurrency(name, value):
    problem_about(problems_of(production_env(**{name: value})), name)


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


# --- NEWSLETTER_NAME and POSTAL_ADDRESS (docs/compliance.md) -----------------------


@pytest.fixture
def fresh_warnings(monkeypatch, caplog):
    """A process that has not warned yet, and the warnings it logs."""
    monkeypatch.setattr(config, "_warned", set())
    caplog.set_level(logging.WARNING, logger="amazonsender.config")
    return caplog


@pytest.mark.parametrize("value", [None, "", "   "])
def test_production_refuses_to_start_without_a_postal_address(value):
    problems = problems_of(production_env(POSTAL_ADDRESS=value))
    assert len(problems) == 1
    problem = problem_about(problems, "POSTAL_ADDRESS")
    assert problem.startswith("POSTAL_ADDRESS is missing")
    assert "CAN-SPAM" in problem and "POSTAL_ADDRESS=none" in problem


@pytest.mark.parametrize("value", ["none", "NONE", " None "])
def test_postal_address_none_on_purpose_is_none_with_one_warning(fresh_warnings, value):
    assert Settings.from_env(production_env(POSTAL_ADDRESS=value)).postal_address is None
    Settings.from_env(production_env(POSTAL_ADDRESS=value))  # a worker reading them again
    warnings = [r for r in fresh_warnings.records if "POSTAL_ADDRESS" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "without a postal address" in warnings[0].getMessage()


def test_no_warning_with_a_postal_address(fresh_warnings):
    Settings.from_env(production_env())
    assert not [r for r in fresh_warnings.records if "POSTAL_ADDRESS" in r.getMessage()]


def test_no_warning_when_the_settings_are_refused(fresh_warnings):
    problems_of(production_env(POSTAL_ADDRESS="none", DATABASE_URL=None))
    assert not fresh_warnings.records


def test_postal_address_and_newsletter_name_are_read_and_trimmed():
    settings = Settings.from_env(production_env(POSTAL_ADDRESS=f"  {POSTAL_ADDRESS} ", NEWSLETTER_NAME=" Weekly "))
    assert settings.postal_address == POSTAL_ADDRESS
    assert settings.newsletter_name == "Weekly"


def test_local_mode_has_a_placeholder_postal_address():
    settings = Settings.from_env({"APP_ENV": "local", "DATABASE_URL": DATABASE_URL})
    assert settings.postal_address == "Your postal address here (set POSTAL_ADDRESS)"
    assert settings.newsletter_name is None


def test_local_mode_keeps_a_postal_address_or_none_that_is_set(fresh_warnings):
    env = {"APP_ENV": "local", "DATABASE_URL": DATABASE_URL}
    assert Settings.from_env({**env, "POSTAL_ADDRESS": POSTAL_ADDRESS}).postal_address == POSTAL_ADDRESS
    assert Settings.from_env({**env, "POSTAL_ADDRESS": "none"}).postal_address is None


@pytest.mark.parametrize("name", ["POSTAL_ADDRESS", "NEWSLETTER_NAME"])
@pytest.mark.parametrize("bad", ["\n", "\r\n", "\r", "\x00", "\t", "\x1b", "\x85", "\u2028"])
def test_control_characters_are_refused(name, bad):
    problems = problems_of(production_env(**{name: f"Example{bad}Ltd"}))
    assert len(problems) == 1
    assert "one line" in problem_about(problems, name)


def test_a_written_backslash_n_in_the_postal_address_asks_for_commas():
    problem = problem_about(problems_of(production_env(POSTAL_ADDRESS="1 Main St\\nSpringfield")), "POSTAL_ADDRESS")
    assert "commas" in problem


@pytest.mark.parametrize(("name", "limit"), [("NEWSLETTER_NAME", 100), ("POSTAL_ADDRESS", 300)])
def test_length_limits(name, limit):
    assert getattr(Settings.from_env(production_env(**{name: "x" * limit})), name.lower()) == "x" * limit
    problem = problem_about(problems_of(production_env(**{name: "x" * (limit + 1)})), name)
    assert f"at most {limit}" in problem


def test_bad_name_and_address_are_reported_with_the_other_problems():
    problems = problems_of(production_env(NEWSLETTER_NAME="a\nb", POSTAL_ADDRESS="x" * 301, BATCH_SIZE="0"))
    assert len(problems) == 3
    problem_about(problems, "NEWSLETTER_NAME")
    problem_about(problems, "POSTAL_ADDRESS")
    problem_about(problems, "BATCH_SIZE")


@pytest.mark.parametrize(
    ("from_email", "name", "expected"),
    [
        ("news@example.test", "Weekly", "Weekly <news@example.test>"),
        ("<news@example.test>", "Weekly", "Weekly <news@example.test>"),
        # Non-ASCII stays text here: the SES layer writes the encoded words.
        ("news@example.test", "Zoë's Café", "Zoë's Café <news@example.test>"),
        ("news@example.test", "News, weekly", '"News, weekly" <news@example.test>'),
        ("news@example.test", 'Bob "B." Builder', '"Bob \\"B.\\" Builder" <news@example.test>'),
        # A display name written in SES_FROM_EMAIL wins.
        ("Editor <news@example.test>", "Weekly", "Editor <news@example.test>"),
        ("news@example.test", None, "news@example.test"),
    ],
)
def test_newsletter_name_is_the_from_name_when_the_address_has_none(from_email, name, expected):
    settings = Settings.from_env(production_env(SES_FROM_EMAIL=from_email, NEWSLETTER_NAME=name))
    assert settings.ses_from_email == expected
    assert settings.newsletter_name == name


@pytest.mark.parametrize("name", ["Weekly", "Zoë, News", 'a "quoted" (b) <c> @d \\ e;f:g.', "Ünïcode Ltd."])
def test_the_composed_from_reads_back_as_name_and_address(name):
    settings = Settings.from_env(production_env(SES_FROM_EMAIL="news@example.test", NEWSLETTER_NAME=name))
    assert parseaddr(settings.ses_from_email) == (name, "news@example.test")


def test_local_from_takes_the_newsletter_name():
    settings = Settings.from_env({"APP_ENV": "local", "DATABASE_URL": DATABASE_URL, "NEWSLETTER_NAME": "Weekly"})
    assert settings.ses_from_email == "Weekly <newsletter@localhost.localdomain>"


def test_the_example_env_file_is_a_complete_production_configuration():
    from pathlib import Path

    from dotenv import dotenv_values

    example = Path(__file__).resolve().parent.parent / ".env.example"
    settings = Settings.from_env(dict(dotenv_values(example)))
    assert settings.app_env == "production"
    assert settings.postal_address and "," in settings.postal_address
    assert "NEWSLETTER_NAME" in example.read_text()


@pytest.mark.parametrize(
    "value",
    ["üser@example.org", "Ann <ann@example.org>, bob@example.org", "news@example.org\r\nBcc: x@evil.example"],
)
def test_a_sender_ses_cannot_take_is_refused_at_start(value):
    assert "SES can take" in problem_about(problems_of(production_env(SES_FROM_EMAIL=value)), "SES_FROM_EMAIL")


def test_a_sender_with_an_accent_or_a_unicode_domain_is_taken():
    for value in ("Café Gazette <news@example.org>", "news@bücher.example"):
        assert Settings.from_env(production_env(SES_FROM_EMAIL=value)).ses_from_email == value


@pytest.mark.parametrize("name", ["SES_FROM_EMAIL", "SES_REPLY_TO"])
@pytest.mark.parametrize("value", ["news@xn--zz.org", "l" * 70 + "@example.org"])
def test_a_sender_ses_would_refuse_for_its_punycode_or_length_is_refused_at_start(name, value):
    assert "SES can take" in problem_about(problems_of(production_env(**{name: value})), name)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:123456789012:ses-events",
        "arn:aws-cn:sns:cn-north-1:123456789012:ses-events",
        "arn:aws-us-gov:sns:us-gov-west-1:123456789012:ses-events",
    ],
)
def test_topic_arns_whose_sns_host_we_know_are_accepted(arn):
    assert Settings.from_env(production_env(SNS_TOPIC_ARNS=arn)).sns_topic_arns == (arn,)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:cn-north-1:123456789012:ses-events",  # a China region in the aws partition
        "arn:aws:sns:us-gov-west-1:123456789012:ses-events",
        "arn:aws-cn:sns:us-east-1:123456789012:ses-events",
        "arn:aws-iso:sns:us-iso-east-1:123456789012:ses-events",  # a partition sns.py has no host for
        "arn:aws:sns:useast1:123456789012:ses-events",  # not a region name
        "arn:aws:sns:s3-us-west-2:123456789012:ses-events",
    ],
)
def test_topic_arns_that_sns_verification_would_refuse_are_refused_at_start(arn):
    # The same rule as amazonsender.sns: otherwise the service starts and then
    # answers every event from this topic with 400.
    problem = problem_about(problems_of(production_env(SNS_TOPIC_ARNS=arn)), "SNS_TOPIC_ARNS")
    assert arn in problem
    assert "region" in problem and "partition" in problem


def test_notion_settings_default_to_off_and_keep_the_token_out_of_repr():
    settings = Settings.from_env(production_env())
    assert settings.notion_token is None and settings.notion_base_url == "https://api.notion.com"
    assert settings.notion_status_property == "Status" and settings.notion_subject_property is None
    token = "ntn_secret_value_0123456789"
    settings = Settings.from_env(production_env(NOTION_TOKEN=token, NOTION_BASE_URL="http://127.0.0.1:9999/"))
    assert settings.notion_token == token and settings.notion_base_url == "http://127.0.0.1:9999"
    assert token not in repr(settings)


@pytest.mark.parametrize("url", ["http://api.notion.com", "ftp://127.0.0.1", "https://x.example/?q=1"])
def test_notion_base_url_is_https_or_loopback_http(url):
    assert "NOTION_BASE_URL" in " ".join(problems_of(production_env(NOTION_BASE_URL=url)))
