"""Signed unsubscribe tokens.

A token carries only the subscriber's id, never the address, signed with
UNSUBSCRIBE_SECRET under its own salt, so it can be used for nothing but
unsubscribing. Tokens do not expire: a link in a years-old email must still
work. Rotating the secret keeps old links working while the previous secret is
listed in UNSUBSCRIBE_OLD_SECRETS.
"""

from __future__ import annotations

from uuid import UUID

from itsdangerous import BadData, URLSafeSerializer

UNSUBSCRIBE_SALT = "amazonsender.unsubscribe"


class BadToken(Exception):
    """The token is missing, malformed, or not signed by one of our secrets."""


class UnsubscribeTokens:
    def __init__(self, secret: str, old_secrets: tuple[str, ...] = ()):
        # itsdangerous signs with the last key and accepts every key listed.
        keys = [*old_secrets, secret]
        self._serializer = URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT)

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
