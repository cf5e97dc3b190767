"""Unsubscribe links: the signed token that names a subscriber, and the URL that carries it.

A token carries only the subscriber's id, never the address, signed with
UNSUBSCRIBE_SECRET under its own salt, so it can be used for nothing but
unsubscribing. Tokens do not expire: a link in a years-old email must still
work. Rotating the secret keeps old links working while the previous secret is
listed in UNSUBSCRIBE_OLD_SECRETS.

Every unsubscribe URL the service writes is `APP_BASE_URL/unsubscribe?token=`
followed by a token; `UnsubscribeLinks` is the one place that says so.
"""

from __future__ import annotations

from uuid import UUID

from itsdangerous import BadData, URLSafeSerializer

UNSUBSCRIBE_SALT = "amazonsender.unsubscribe"
UNSUBSCRIBE_PATH = "/unsubscribe?token="


class BadToken(Exception):
    """The token is missing, malformed, or not signed by one of our secrets."""


class UnsubscribeTokens:
    def __init__(self, secret: str, old_secrets: tuple[str, ...] = ()):
        # itsdangerous signs with the last key and accepts every key listed.
        keys = [*old_secrets, secret]
        self._serializer = URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT)

    @classmethod
    def from_settings(cls, settings) -> UnsubscribeTokens:
        return cls(settings.unsubscribe_secret, settings.unsubscribe_old_secrets)

    def make(self, subscriber_id: UUID | str) -> str:
        return self._serializer.dumps(str(subscriber_id))

    def read(self, token: str | None) -> UUID:
        if not token:
            raise BadToken("the link has no token")
        try:
            value = self._serializer.loads(token)
            return UUID(value)
        except (BadData, ValueError, TypeError, AttributeError) as exc:
            raise BadToken("the link is damaged or was not made by us") from exc


class UnsubscribeLinks:
    """The unsubscribe URLs of one run or test send: `base` up to the token
    (SendBulkEmail's template puts each recipient's token after it), and
    `url(subscriber_id)` whole."""

    def __init__(self, app_base_url: str, tokens: UnsubscribeTokens):
        self.base = f"{app_base_url}{UNSUBSCRIBE_PATH}"
        self.tokens = tokens

    @classmethod
    def from_settings(cls, settings) -> UnsubscribeLinks:
        return cls(settings.app_base_url, UnsubscribeTokens.from_settings(settings))

    def token(self, subscriber_id: UUID | str) -> str:
        return self.tokens.make(subscriber_id)

    def url(self, subscriber_id: UUID | str) -> str:
        return self.base + self.tokens.make(subscriber_id)
