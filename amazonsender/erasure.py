"""Erasure (GDPR article 17) and the suppression list: forget an address everywhere, keep a keyed hash that the import honours.

No Flask, no click: the `subscribers forget` command and the import call
these; the SQL is in store/erasure.py.
"""

from __future__ import annotations

import encodings.idna
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import idna  # email-validator's own IDNA library, installed with it
from psycopg_pool import ConnectionPool

from . import store
from .addresses import AddressError, normalize_address
from .config import MIN_SECRET_LENGTH


class SuppressionKeyError(Exception):
    """The suppression list cannot be checked or written with the key at
    hand (none given, or not the key it was made with)."""


@dataclass(frozen=True)
class SuppressionKey:
    """The key of the suppression list's hashes: HMAC-SHA256(secret,
    "amazonsender suppression list v1"), never stored. Its fingerprint
    (key_id) is stored with each hash, so that a list made with another key
    is refused rather than silently matching nothing."""

    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> SuppressionKey:
        return cls(hmac.new(secret.encode(), b"amazonsender suppression list v1", hashlib.sha256).digest())

    @property
    def key_id(self) -> str:
        return hmac.new(self.key, b"key id", hashlib.sha256).hexdigest()[:16]

    def hash(self, address: str) -> bytes:
        """The hash of an address as the list holds it: of its lower-cased
        form (the list's unique index is on lower(email) too)."""
        return hmac.new(self.key, address.lower().encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def key_from_environment(environ, *, required: bool) -> SuppressionKey | None:
    """The suppression list's key, from SUPPRESSION_SECRET, else from
    UNSUBSCRIBE_SECRET (which the service has anyway). Set SUPPRESSION_SECRET
    once and never change it if UNSUBSCRIBE_SECRET may be rotated: the list's
    hashes are made with the key, and a list made with another key is refused.
    None when neither is set and `required` is False; SuppressionKeyError for
    a secret too short, or none when one is required."""
    for name in ("SUPPRESSION_SECRET", "UNSUBSCRIBE_SECRET"):
        secret = environ.get(name, "").strip()
        if secret:
            if len(secret) < MIN_SECRET_LENGTH:
                raise SuppressionKeyError(f"{name} is too short: use at least {MIN_SECRET_LENGTH} random characters")
            return SuppressionKey.from_secret(secret)
    if required:
        raise SuppressionKeyError(
            "the suppression list needs a key: set SUPPRESSION_SECRET (or UNSUBSCRIBE_SECRET) as the service has it"
        )
    return None


def check_suppression_key(conn, key: SuppressionKey | None) -> bool:
    """Whether the suppression list has entries to check; SuppressionKeyError
    when it has and `key` is missing or not the one they were made with."""
    key_ids = store.suppression_key_ids(conn)
    if not key_ids:
        return False
    if key is None:
        raise SuppressionKeyError(
            "the suppression list holds erased addresses and no key to check them:"
            " set SUPPRESSION_SECRET (or UNSUBSCRIBE_SECRET), as when they were erased"
        )
    if key_ids != [key.key_id]:
        raise SuppressionKeyError(
            "the suppression list was made with another key: set SUPPRESSION_SECRET to the secret in use"
            " when addresses were erased (the UNSUBSCRIBE_SECRET of then, if SUPPRESSION_SECRET was not set)"
        )
    return True


def forget_address(pool: ConnectionPool, address: str, key: SuppressionKey) -> store.Erasure:
    """Erase an address (GDPR article 17), whether or not it is on the list:
    its keyed hash joins the suppression list, so that no import adds it
    again, and the address (in any case and either IDNA form, see
    address_forms) and its name leave every table. The ledger's rows and the
    SES events stay, the address in them replaced by "forgotten:" and the
    start of its hash. Running it again changes nothing. The address is
    hashed as an import would store it (normalize_address)."""
    given = address.strip()
    try:
        stored_form = normalize_address(given)
    except AddressError:
        stored_form = given
    forms = address_forms(given)
    address_hash = key.hash(stored_form)
    with pool.connection() as conn:
        check_suppression_key(conn, key)
        names = store.begin_forgetting(conn, forms)
        return store.forget_address(
            conn,
            lowered=forms,
            address_hash=address_hash,
            key_id=key.key_id,
            token=forgotten_token(address_hash),
            text_pattern="|".join(re.escape(form) for form in forms),
            # As the address is written inside a JSON string.
            json_pattern="|".join(re.escape(json.dumps(form, ensure_ascii=False)[1:-1]) for form in forms),
            name_pattern=name_pattern(names),
        )


def address_forms(address: str) -> list[str]:
    """Every spelling of `address` a row may hold, lower-cased: as given, as
    an import stores it (normalize_address: the domain in IDNA ASCII), and
    with each label of its domain in ASCII (xn--) and in Unicode. Rows
    imported before addresses were normalised hold the Unicode domain
    (`leg@bücher.de`), which the ASCII form alone would miss. A label that
    does not convert stays as it is."""
    given = address.strip()
    forms = {given.lower()}
    for special_use_domains in (False, True):
        try:
            forms.add(normalize_address(given, special_use_domains=special_use_domains).lower())
        except AddressError:
            pass
    local, at, domain = given.rpartition("@")
    if at:
        labels = domain.lower().split(".")
        for convert in (_ascii_label, _unicode_label):
            forms.add(f"{local}@{'.'.join(convert(label) for label in labels)}".lower())
    return sorted(forms)


def _ascii_label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        try:
            return encodings.idna.ToASCII(label).decode("ascii")
        except UnicodeError:
            return label


def _unicode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        try:
            return encodings.idna.ToUnicode(label)
        except UnicodeError:
            return label


# A name shorter than this is not erased from free text (SES's error
# messages, a mailout's last error): "Al" or "Bo" would blank out those
# letters in every word and address that holds them. The ledger's own
# columns never hold the name, and the events' headers that do are dropped
# whatever its length.
MIN_ERASED_NAME_CHARS = 3


def name_pattern(names: Iterable[str | None]) -> str | None:
    """A regular expression (Postgres ARE, flag i) matching the subscriber's
    names, as stored in from_name, as whole words: not inside a longer word
    ("Ann" not in "Annual"). None when no name is long enough."""
    kept = sorted({name.strip() for name in names if name and len(name.strip()) >= MIN_ERASED_NAME_CHARS},
                  key=len, reverse=True)
    if not kept:
        return None
    return "(?<![[:alnum:]_])(?:" + "|".join(re.escape(name) for name in kept) + ")(?![[:alnum:]_])"


def forgotten_token(address_hash: bytes) -> str:
    """What replaces an erased address in the ledger and the events: the same
    for every row of one address (so counts of distinct addresses hold),
    different for two addresses."""
    return "forgotten:" + address_hash.hex()[:16]
