"""Signed unsubscribe tokens: what they carry, what they refuse, and rotation."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from itsdangerous import URLSafeSerializer

from amazonsender.links import UNSUBSCRIBE_SALT, BadToken, UnsubscribeTokens

SECRET = "unsubscribe-secret-0123456789"
NEW_SECRET = "rotated-unsubscribe-secret-9876543210"
SUBSCRIBER_ID = uuid.UUID("0b5f3c1e-7d2a-4c8e-9f10-2a3b4c5d6e7f")


def payload_of(token: str):
    """Decode the token's payload without checking the signature, as anyone
    holding the link could."""
    payload = token.rsplit(".", 1)[0]
    assert not payload.startswith("."), "payload unexpectedly compressed"
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_round_trip_returns_the_subscriber_id():
    tokens = UnsubscribeTokens(SECRET)
    token = tokens.make(SUBSCRIBER_ID)
    assert tokens.read(token) == SUBSCRIBER_ID
    assert isinstance(tokens.read(token), uuid.UUID)


def test_round_trip_from_a_string_id():
    tokens = UnsubscribeTokens(SECRET)
    assert tokens.read(tokens.make(str(SUBSCRIBER_ID))) == SUBSCRIBER_ID


def test_token_is_url_safe():
    token = UnsubscribeTokens(SECRET).make(uuid.uuid4())
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_token_carries_the_id_and_not_the_email():
    token = UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
    # The whole payload is the id: nothing else, so no address, can be read from it.
    assert payload_of(token) == str(SUBSCRIBER_ID)


def test_different_subscribers_get_different_tokens():
    tokens = UnsubscribeTokens(SECRET)
    first, second = uuid.uuid4(), uuid.uuid4()
    assert tokens.make(first) != tokens.make(second)
    assert tokens.read(tokens.make(second)) == second


def tampered_tokens() -> dict[str, str]:
    token = UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
    payload, signature = token.rsplit(".", 1)
    other_payload = base64.urlsafe_b64encode(json.dumps(str(uuid.uuid4())).encode()).decode().rstrip("=")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return {
        "other payload, old signature": f"{other_payload}.{signature}",
        "flipped signature character": f"{payload}.{flipped}",
        "truncated": token[:-5],
        "no signature": payload,
        "signature only": signature,
        "extra characters": token + "x",
        "whitespace": " " + token,
    }


@pytest.mark.parametrize("name", list(tampered_tokens()))
def test_tampered_token_is_refused(name):
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(tampered_tokens()[name])


@pytest.mark.parametrize(
    "token",
    [None, "", ".", "..", "garbage", "not.a.token", "a" * 500, "%00%01", "<script>", "\u00e9\u00e9.\u00e9"],
)
def test_missing_or_garbage_token_is_refused(token):
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(token)


def test_token_with_another_salt_is_refused():
    token = URLSafeSerializer(SECRET, salt="some.other.purpose").dumps(str(SUBSCRIBER_ID))
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(token)


def test_token_with_another_secret_is_refused():
    token = UnsubscribeTokens("some-other-secret-0123456789").make(SUBSCRIBER_ID)
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(token)


@pytest.mark.parametrize("value", ["not-a-uuid", 42, ["a"], {"id": "x"}, None])
def test_validly_signed_token_without_a_uuid_is_refused(value):
    token = URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps(value)
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(token)


def test_rotation_accepts_tokens_made_with_an_old_secret():
    old_token = UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
    rotated = UnsubscribeTokens(NEW_SECRET, old_secrets=(SECRET,))
    assert rotated.read(old_token) == SUBSCRIBER_ID


def test_rotation_accepts_every_listed_old_secret():
    oldest = UnsubscribeTokens("oldest-secret-0123456789").make(SUBSCRIBER_ID)
    older = UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
    rotated = UnsubscribeTokens(NEW_SECRET, old_secrets=("oldest-secret-0123456789", SECRET))
    assert rotated.read(oldest) == SUBSCRIBER_ID
    assert rotated.read(older) == SUBSCRIBER_ID


def test_rotation_signs_new_tokens_with_the_new_secret():
    rotated = UnsubscribeTokens(NEW_SECRET, old_secrets=(SECRET,))
    new_token = rotated.make(SUBSCRIBER_ID)
    # The new secret alone reads it; the old secret alone does not.
    assert UnsubscribeTokens(NEW_SECRET).read(new_token) == SUBSCRIBER_ID
    with pytest.raises(BadToken):
        UnsubscribeTokens(SECRET).read(new_token)
    assert new_token == UnsubscribeTokens(NEW_SECRET).make(SUBSCRIBER_ID)


def test_a_secret_dropped_from_the_old_list_is_no_longer_accepted():
    old_token = UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
    with pytest.raises(BadToken):
        UnsubscribeTokens(NEW_SECRET).read(old_token)


def test_tokens_do_not_expire_and_are_stable():
    # The same id and secret always give the same token: a link in an old
    # email is the link we would make today.
    assert UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID) == UnsubscribeTokens(SECRET).make(SUBSCRIBER_ID)
