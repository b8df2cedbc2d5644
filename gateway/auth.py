"""Who may open ``/ws/voice``: API keys, signed expiring user tokens, browser origins.

Both kinds of credential are optional (off when neither ``API_KEYS`` nor ``AUTH_SECRET``
is set). An API key suits a trusted app backend, which then names the user itself
(``user_id``); a signed token (``v1.<user>.<expiry>.<hmac>``, made by
``voice-agent token``) carries its user, so a browser holding one cannot pose as
anybody else, nor resume anybody else's session. Keys and tokens are compared in
constant time and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from shared.settings import Settings

TOKEN_VERSION = "v1"


class AuthError(Exception):
    """Refused; the message says what is wrong without echoing the credential."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign_token(secret: str, user_id: str, ttl_seconds: int, now: float | None = None) -> str:
    """A token for ``user_id`` valid for ``ttl_seconds``."""
    expires = int(now if now is not None else time.time()) + ttl_seconds
    payload = f"{TOKEN_VERSION}.{_b64(user_id.encode())}.{expires}"
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(secret: str, token: str, now: float | None = None) -> str:
    """The user a token was signed for; ``AuthError`` if forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION:
        raise AuthError("malformed token")
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _signature(secret, payload)):
        raise AuthError("invalid token signature")
    try:
        user_id, expires = _unb64(parts[1]).decode(), int(parts[2])
    except ValueError:
        raise AuthError("malformed token") from None
    if expires < (now if now is not None else time.time()):
        raise AuthError("token expired")
    return user_id


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        keys = settings.api_keys.get_secret_value() if settings.api_keys else ""
        self._api_keys = [key.strip() for key in keys.split(",") if key.strip()]
        self._secret = settings.auth_secret.get_secret_value() if settings.auth_secret else None
        self._origins = {
            origin.strip().rstrip("/")
            for origin in settings.allowed_origins.split(",")
            if origin.strip()
        }

    @property
    def required(self) -> bool:
        return bool(self._api_keys or self._secret)

    def user_for(self, token: str | None, claimed_user: str) -> str:
        """The user id this connection acts as; ``AuthError`` when it may not connect."""
        if not self.required:
            return claimed_user
        if not token:
            raise AuthError("this server needs a token (?token=… or Authorization: Bearer …)")
        if self._secret and token.startswith(TOKEN_VERSION + "."):
            return verify_token(self._secret, token)
        if any(hmac.compare_digest(token, key) for key in self._api_keys):
            return claimed_user
        raise AuthError("invalid token")

    def origin_allowed(self, origin: str | None, host: str | None = None) -> bool:
        """Browsers send ``Origin``; other clients don't, and are judged by token alone.
        The gateway's own page (same host) is always allowed."""
        if not self._origins or origin is None:
            return True
        origin = origin.rstrip("/")
        if host and origin.split("://", 1)[-1] == host:
            return True
        return origin in self._origins


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None
