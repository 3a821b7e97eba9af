"""Browser sessions at the gateway: a signed cookie and CSRF tokens.

What is trusted: the HMAC secret (``session-secret`` in the keys directory, the same for every
worker). Everything read from a request is untrusted until its HMAC-SHA256 verifies with
``hmac.compare_digest``.

- **Session cookie** ``<b64url(JSON {"sub", "cid", "iat", "exp"})>.<b64url(HMAC)>``: stateless,
  so it cannot be revoked before ``exp`` except by rotating the secret; the user must still exist
  in the users file when it is used, and the token's scopes always come from that file.
- **CSRF** (double submit, signed): a random nonce in a pre-session cookie, and in the form
  ``HMAC(secret, "csrf." + nonce)``. A cross-site page can neither read the cookie nor compute
  the HMAC.

The failed-login limit is in :mod:`.limits`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core import b64url

MAX_COOKIE_LENGTH = 4096


@dataclass(frozen=True)
class Session:
    """A verified session: who logged in, with which client name, until when."""

    username: str
    client_id: str
    expires_at: int


class SessionCodec:
    """Encodes and verifies session cookie values with HMAC-SHA256 over the payload."""

    def __init__(self, secret: bytes, *, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.ttl = ttl
        self.clock = clock

    def _mac(self, purpose: str, data: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}.{data}".encode(), hashlib.sha256).digest()

    def encode(self, username: str, client_id: str) -> str:
        """A cookie value for ``username`` valid for ``ttl`` seconds."""
        now = int(self.clock())
        payload = json.dumps(
            {"sub": username, "cid": client_id, "iat": now, "exp": now + self.ttl},
            separators=(",", ":"),
        )
        body = b64url.encode(payload.encode("utf-8"))
        return f"{body}.{b64url.encode(self._mac('session', body))}"

    def decode(self, value: str | None) -> Session | None:
        """The session in ``value`` when its MAC verifies and it has not expired, else ``None``."""
        if not value or len(value) > MAX_COOKIE_LENGTH or value.count(".") != 1:
            return None
        body, _, mac = value.partition(".")
        try:
            given = b64url.decode(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac("session", body)):
            return None
        try:
            data = json.loads(b64url.decode(body))
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        sub, cid, exp = data.get("sub"), data.get("cid"), data.get("exp")
        if not isinstance(sub, str) or not isinstance(cid, str) or not isinstance(exp, int):
            return None
        if exp <= self.clock():
            return None
        return Session(sub, cid, exp)

    # -- CSRF (signed double submit) ----------------------------------------------------------

    @staticmethod
    def new_nonce() -> str:
        """A fresh random nonce for the pre-session CSRF cookie."""
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        """The form token that goes with the CSRF cookie's ``nonce``."""
        return b64url.encode(self._mac("csrf", nonce))

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        """True when ``token`` (from the form) is the HMAC of ``nonce`` (from the cookie)."""
        if not nonce or not token or len(nonce) > 128 or len(token) > 128:
            return False
        return hmac.compare_digest(token.encode("ascii", "replace"), self.csrf_token(nonce).encode())
