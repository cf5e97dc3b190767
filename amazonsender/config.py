"""Settings, read once from the environment and checked all at once.

Every problem is collected before anything is raised, so an operator fixing a
deployment sees the whole list in one message instead of one error per restart.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import urlsplit

from .addresses import is_one_address
from .sns import sns_host

log = logging.getLogger(__name__)

LOCAL = "local"
PRODUCTION = "production"

# Used only when APP_ENV=local (what `make run` sets): a fresh machine must be
# able to run the service with nothing configured. Production has no defaults
# for these and refuses to start without them.
LOCAL_DEFAULTS = {
    "EXECUTOR_SHARED_SECRET": "local-dev-secret-change-me",
    "UNSUBSCRIBE_SECRET": "local-unsubscribe-secret-change-me",
    "AWS_REGION": "us-east-1",
    "SES_FROM_EMAIL": "AmazonSender <newsletter@localhost.localdomain>",
    # Shown in the footer of every local email, so that nobody mistakes an
    # empty footer for a finished one.
    "POSTAL_ADDRESS": "Your postal address here (set POSTAL_ADDRESS)",
}

# POSTAL_ADDRESS=none: sending without a postal address is a decision, never
# an omission (docs/compliance.md).
NO_POSTAL_ADDRESS = "none"
MAX_NEWSLETTER_NAME_LENGTH = 100
MAX_POSTAL_ADDRESS_LENGTH = 300

MIN_SECRET_LENGTH = 16
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# A duration setting: a whole number, then an optional unit (seconds if none).
DURATION = re.compile(r"\s*(\d{1,9})\s*([smhd]?)\s*")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class ConfigError(Exception):
    """Raised with every missing or malformed setting listed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"AmazonSender cannot start; fix these settings:\n{lines}")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    executor_shared_secret: str = field(repr=False)
    unsubscribe_secret: str = field(repr=False)
    app_base_url: str
    aws_region: str
    ses_from_email: str
    app_env: str = PRODUCTION
    unsubscribe_old_secrets: tuple[str, ...] = field(default=(), repr=False)
    ses_reply_to: str | None = None
    ses_configuration_set: str | None = None
    # Shown in the footer and on the unsubscribe pages; also the From display
    # name when SES_FROM_EMAIL has none of its own (already in ses_from_email).
    newsletter_name: str | None = None
    # One line for the footer (CAN-SPAM); None only when POSTAL_ADDRESS=none.
    postal_address: str | None = None
    rate_limit_per_sec: float = 6.0
    batch_size: int = 50
    # SES calls in flight at once, all paced by the one rate limit: 0 is
    # "auto" (sender/flights.py: as many as SES's answer time needs to hold
    # the pace), up to send_concurrency_max.
    send_concurrency: int = 0
    send_concurrency_max: int = 64
    # "auto": SES SendBulkEmail, several recipients per call, from 20/s up
    # (see sender.recipients_per_call); "off": one SendEmail per recipient.
    ses_bulk_send: str = "auto"
    port: int = 3000
    log_level: str = "info"
    log_format: str = "json"
    test_emails: tuple[str, ...] = ()
    notion_mailout_property: str = "mailout_id"
    # Notion as the editor (docs/notion.md): with a token, a button press on a
    # page without a mailout id imports the page and sends it; without one,
    # the webhook needs a mailout id as before.
    notion_token: str | None = field(default=None, repr=False)
    notion_base_url: str = "https://api.notion.com"
    notion_timeout_seconds: float = 30.0
    # None: the page's title property is the subject.
    notion_subject_property: str | None = None
    notion_status_property: str = "Status"
    # True when no AWS credentials are configured in local mode: emails are
    # written as .eml files to outbox_dir instead of being sent.
    use_outbox: bool = False
    outbox_dir: str = "outbox"
    db_pool_size: int = 10
    # SNS topics whose SES events we trust; empty means /ses-events trusts none.
    sns_topic_arns: tuple[str, ...] = ()
    # The reputation guard: pause a mailout whose bounce or complaint rate
    # passes these, once guard_min_sent emails have gone out.
    max_bounce_rate: float = 0.04
    max_complaint_rate: float = 0.001
    guard_min_sent: int = 200
    # Failures in a row (per recipient) after which a run stops as 'failed'
    # instead of walking the whole list.
    max_consecutive_failures: int = 25
    # A 'sending' mailout whose heartbeat is older than this has lost its
    # runner and may be resumed without --force.
    heartbeat_stale_seconds: int = 120
    # How long a run keeps retrying a lost database connection before it stops.
    db_retry_seconds: int = 60
    # How long after it was sent an in-doubt row with no SES event may be
    # sent again by `mailout resume --resend-unconfirmed` (RECONCILE_AFTER).
    reconcile_after_seconds: int = 1800
    # Every service process resumes interrupted mailouts by itself (a deploy,
    # a crash, SES or the database away for a while): sender/watch.py.
    auto_resume: bool = True

    @property
    def is_local(self) -> bool:
        return self.app_env == LOCAL

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        reader = _Reader(env)

        app_env = env.get("APP_ENV", PRODUCTION).strip().lower() or PRODUCTION
        if app_env not in (LOCAL, PRODUCTION):
            reader.problems.append(f"APP_ENV must be '{PRODUCTION}' or '{LOCAL}', not {app_env!r}")
        local = app_env == LOCAL
        if local:
            defaults = dict(LOCAL_DEFAULTS)
            if env.get("NEWSLETTER_NAME", "").strip():
                # The default From's display name would hide NEWSLETTER_NAME.
                defaults["SES_FROM_EMAIL"] = parseaddr(defaults["SES_FROM_EMAIL"])[1]
            for name, value in defaults.items():
                env.setdefault(name, value)

        port = reader.integer("PORT", default=3000, low=1, high=65535)
        if local:
            env.setdefault("APP_BASE_URL", f"http://localhost:{port}")

        has_key = bool(env.get("AWS_ACCESS_KEY_ID", "").strip())
        has_secret = bool(env.get("AWS_SECRET_ACCESS_KEY", "").strip())
        use_outbox = local and not has_key and not has_secret
        if not use_outbox:
            if not has_key:
                reader.problems.append("AWS_ACCESS_KEY_ID is missing")
            if not has_secret:
                reader.problems.append("AWS_SECRET_ACCESS_KEY is missing")

        newsletter_name = reader.one_line("NEWSLETTER_NAME", max_length=MAX_NEWSLETTER_NAME_LENGTH)
        settings = cls(
            app_env=app_env,
            database_url=reader.database_url(),
            executor_shared_secret=reader.secret("EXECUTOR_SHARED_SECRET"),
            unsubscribe_secret=reader.secret("UNSUBSCRIBE_SECRET"),
            unsubscribe_old_secrets=tuple(reader.listing("UNSUBSCRIBE_OLD_SECRETS")),
            app_base_url=reader.base_url("APP_BASE_URL", require_https=not local),
            aws_region=reader.required("AWS_REGION"),
            ses_from_email=with_display_name(reader.address("SES_FROM_EMAIL", required=True), newsletter_name),
            ses_reply_to=reader.address("SES_REPLY_TO", required=False),
            ses_configuration_set=reader.optional("SES_CONFIGURATION_SET"),
            newsletter_name=newsletter_name,
            postal_address=reader.postal_address(),
            rate_limit_per_sec=reader.number("RATE_LIMIT_PER_SEC", default=6.0, low=0.01, high=10_000),
            batch_size=reader.integer("BATCH_SIZE", default=50, low=1, high=5_000),
            send_concurrency=reader.integer_or_auto("SEND_CONCURRENCY", low=1, high=256),
            send_concurrency_max=reader.integer("SEND_CONCURRENCY_MAX", default=64, low=1, high=256),
            ses_bulk_send=reader.choice("SES_BULK_SEND", default="auto", choices=("auto", "off")),
            port=port,
            log_level=reader.choice("LOG_LEVEL", default="info", choices=LOG_LEVELS),
            # JSON lines in production; plain text by default under `make run`.
            log_format=reader.choice("LOG_FORMAT", default="text" if local else "json", choices=("json", "text")),
            test_emails=tuple(reader.address_list("TEST_EMAILS")),
            notion_mailout_property=reader.optional("NOTION_MAILOUT_PROPERTY") or "mailout_id",
            notion_token=reader.notion_token(),
            notion_base_url=reader.notion_base_url(),
            notion_timeout_seconds=reader.number("NOTION_TIMEOUT_SECONDS", default=30.0, low=1, high=300),
            notion_subject_property=reader.optional("NOTION_SUBJECT_PROPERTY"),
            notion_status_property=reader.optional("NOTION_STATUS_PROPERTY") or "Status",
            use_outbox=use_outbox,
            outbox_dir=reader.optional("OUTBOX_DIR") or "outbox",
            db_pool_size=reader.integer("DB_POOL_SIZE", default=10, low=2, high=200),
            sns_topic_arns=tuple(reader.topic_arns("SNS_TOPIC_ARNS")),
            max_bounce_rate=reader.number("MAX_BOUNCE_RATE", default=0.04, low=0.0, high=1.0),
            max_complaint_rate=reader.number("MAX_COMPLAINT_RATE", default=0.001, low=0.0, high=1.0),
            guard_min_sent=reader.integer("GUARD_MIN_SENT", default=200, low=1, high=10_000_000),
            max_consecutive_failures=reader.integer("MAX_CONSECUTIVE_FAILURES", default=25, low=1, high=1_000_000),
            heartbeat_stale_seconds=reader.integer("HEARTBEAT_STALE_SECONDS", default=120, low=10, high=86_400),
            db_retry_seconds=reader.integer("DB_RETRY_SECONDS", default=60, low=0, high=3_600),
            reconcile_after_seconds=reader.duration("RECONCILE_AFTER", default=1800, low=60, high=7 * 86_400),
            auto_resume=reader.choice("AUTO_RESUME", default="on", choices=ON_OFF) in TRUE_WORDS,
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        if settings.postal_address is None:
            _warn_once(
                "POSTAL_ADDRESS=none: emails go out without a postal address, which CAN-SPAM requires in"
                " commercial email (docs/compliance.md)"
            )
        return settings


ON_OFF = ("on", "off", "true", "false", "yes", "no", "1", "0")
TRUE_WORDS = ("on", "true", "yes", "1")


class _Reader:
    """Reads typed values from an environment mapping, collecting problems."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problems.append(f"{name} is missing")
            return ""
        return value

    def secret(self, name: str) -> str:
        value = self.required(name)
        if value and len(value) < MIN_SECRET_LENGTH:
            self.problems.append(f"{name} is too short: use at least {MIN_SECRET_LENGTH} random characters")
        return value

    def one_line(self, name: str, *, max_length: int) -> str | None:
        """Text that goes into email headers, footers and pages: one line
        without control characters, so it can never add a header or break
        the layout."""
        value = self.optional(name)
        if value is None:
            return None
        if _CONTROL_CHARACTERS.search(value):
            self.problems.append(
                f"{name} must be one line without control characters (line breaks, tabs, NUL): {value!r}"
            )
        elif len(value) > max_length:
            self.problems.append(f"{name} is {len(value)} characters long: at most {max_length}")
        return value

    def postal_address(self) -> str | None:
        raw = self.optional("POSTAL_ADDRESS")
        if raw is None:
            self.problems.append(
                "POSTAL_ADDRESS is missing: commercial email must show your postal address (CAN-SPAM). Write it"
                " on one line, parts separated by commas, or set POSTAL_ADDRESS=none to send without one on"
                " purpose (docs/compliance.md)"
            )
            return None
        if raw.lower() == NO_POSTAL_ADDRESS:
            return None
        if "\\n" in raw:
            # python-dotenv and Docker keep a written \n as two characters: it
            # would show up in every footer as it is.
            self.problems.append(f"POSTAL_ADDRESS is one line: separate its parts with commas, not \\n: {raw!r}")
            return raw
        return self.one_line("POSTAL_ADDRESS", max_length=MAX_POSTAL_ADDRESS_LENGTH)

    def listing(self, name: str) -> list[str]:
        return [item.strip() for item in self.env.get(name, "").split(",") if item.strip()]

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, not {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, not {value}")
        return value

    def integer_or_auto(self, name: str, *, low: int, high: int) -> int:
        """A whole number, or `auto` (the default), which is 0."""
        raw = self.optional(name)
        if raw is None or raw.strip().lower() == "auto":
            return 0
        return self.integer(name, default=0, low=low, high=high)

    def duration(self, name: str, *, default: int, low: int, high: int) -> int:
        """Seconds, written as a whole number of seconds or with a unit:
        `90s`, `30m`, `2h`, `1d`."""
        raw = self.optional(name)
        if raw is None:
            return default
        match = DURATION.fullmatch(raw.lower())
        if match is None:
            self.problems.append(f"{name} must be a duration such as 1800, 30m or 2h, not {raw!r}")
            return default
        value = int(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high} seconds, not {value}")
        return value

    def number(self, name: str, *, default: float, low: float, high: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, not {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low:g} and {high:g}, not {raw}")
        return value

    def choice(self, name: str, *, default: str, choices: tuple[str, ...]) -> str:
        value = (self.optional(name) or default).lower()
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def address(self, name: str, *, required: bool) -> str | None:
        value = self.required(name) if required else self.optional(name)
        if value and not is_one_address(value):
            self.problems.append(f"{name} is not an email address SES can take: {value!r}")
        return value

    def address_list(self, name: str) -> list[str]:
        values = self.listing(name)
        for value in values:
            if not is_one_address(value):
                self.problems.append(f"{name} contains something that is not an email address SES can take: {value!r}")
        return values

    def topic_arns(self, name: str) -> list[str]:
        values = self.listing(name)
        for value in values:
            if not _TOPIC_ARN.match(value):
                self.problems.append(f"{name} must list SNS topic ARNs (arn:aws:sns:REGION:ACCOUNT:NAME), not {value!r}")
            elif sns_host(value) is None:
                # The rule /ses-events verifies with: a topic it has no SNS
                # host for would start the service and then 400 every event.
                self.problems.append(
                    f"{name} contains {value!r}, whose region and partition SNS message verification does not"
                    " accept: use a region of the partition it belongs to (arn:aws:sns:us-east-1:...,"
                    " arn:aws-cn:sns:cn-north-1:..., arn:aws-us-gov:sns:us-gov-west-1:...)"
                )
        return values

    def base_url(self, name: str, *, require_https: bool) -> str:
        value = self.required(name)
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            self.problems.append(f"{name} must be a plain URL such as https://mail.example.com, not {value!r}")
        elif require_https and parts.scheme != "https":
            self.problems.append(
                f"{name} must start with https:// (mail clients ignore one-click unsubscribe links over http)"
            )
        return value.rstrip("/")

    def notion_token(self) -> str | None:
        """The integration's secret, or None. Never repeated in a message."""
        value = self.optional("NOTION_TOKEN")
        if value is not None and (_CONTROL_CHARACTERS.search(value) or " " in value):
            self.problems.append("NOTION_TOKEN must be one word without spaces or control characters")
        return value

    def notion_base_url(self) -> str:
        """https, or http to this machine only (a stand-in or a local
        proxy): the token travels in every request's Authorization header."""
        value = (self.optional("NOTION_BASE_URL") or "https://api.notion.com").rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            self.problems.append(f"NOTION_BASE_URL must be a plain URL such as https://api.notion.com, not {value!r}")
        elif parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            self.problems.append(
                "NOTION_BASE_URL must start with https:// (http is allowed only to 127.0.0.1, ::1 or localhost:"
                " the Notion token is sent with every request)"
            )
        return value

    def database_url(self) -> str:
        value = self.optional("DATABASE_URL")
        if value is None:
            hint = ""
            if self.optional("SUPABASE_URL"):
                hint = (
                    " (SUPABASE_URL is the REST address, not a Postgres connection string: copy the URI from"
                    " Supabase > Project > Connect, see docs/supabase.md)"
                )
            self.problems.append("DATABASE_URL is missing" + hint)
            return ""
        if not re.match(r"^postgres(ql)?://", value) and "=" not in value:
            self.problems.append("DATABASE_URL must be a Postgres connection string (postgresql://user:pass@host:port/db)")
        return value


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# C0 and C1 controls (CR, LF, tab, NUL, ESC...) and the Unicode line and
# paragraph separators.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")


# RFC 5322 specials: a display name containing one must be quoted.
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def with_display_name(value: str | None, name: str | None) -> str | None:
    """`name <address>` when `value` is a bare address, else `value` as it is:
    a display name written in SES_FROM_EMAIL wins. A non-ASCII name stays
    plain text here; the SES layer encodes it for the header."""
    if not value or not name:
        return value
    display, address = parseaddr(value)
    if display or not address or not is_one_address(value):
        return value
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Once per process. gunicorn's master reads the settings before it forks
    its workers, which inherit this set: one warning per start, not one per
    worker."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)

