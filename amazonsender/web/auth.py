"""The webhook's shared secret (EXECUTOR_SHARED_SECRET): how a caller presents it and how it is checked."""

from __future__ import annotations

import hmac

from flask import request

from .errors import ApiError


def require_secret(secret: str, payload: dict) -> None:
    """Accept `Authorization: Bearer <secret>` or the body's `auth_token`,
    compared in constant time."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, presented = header.partition(" ")
        presented = presented.strip() if scheme.lower() == "bearer" else ""
    else:
        presented = payload.get("auth_token")
    if not isinstance(presented, str) or not presented:
        raise ApiError(401, "missing secret: send 'Authorization: Bearer <secret>' or 'auth_token'")
    # surrogatepass: JSON can carry an unpaired surrogate ("\ud800"), which
    # plain UTF-8 refuses to encode; such a token is simply wrong.
    if not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")):
        raise ApiError(401, "wrong secret")
