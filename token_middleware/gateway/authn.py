"""Who the caller is: HTTP Basic or the gateway's session cookie, and nothing else.

What is trusted: the users file, the session secret, and ``X-Forwarded-For`` only when the
request comes straight from an address in ``GATEWAY_TRUSTED_PROXIES`` (the demo's nginx). From a
request, only two things can establish who the caller is, and both are checked here:

- ``Authorization: Basic …`` checked against the users file (hashes, constant-time compare),
  after the failed-login limit for that user name (:mod:`.limits`);
- the gateway's own session cookie, whose HMAC must verify (set by ``POST /login``).

Anything else, including ``Authorization: Bearer …``, is not a gateway credential: 401 with
``WWW-Authenticate: Basic realm="gateway"``. Requests authenticated by cookie with an unsafe
method must also come from the gateway's own origin (``Origin`` or ``Sec-Fetch-Site``).

Example::

    result = ClientAuth(users, sessions, limiter, ...).authenticate(environ, "GET")
    if isinstance(result, Refusal): ...    # status, error, description, headers
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from werkzeug.sansio.http import parse_cookie

from .limits import LoginLimiter
from .sessions import SessionCodec
from .users import User, UserStore

BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="gateway"')
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_AUTHORIZATION_LENGTH = 4096


@dataclass(frozen=True)
class Refusal:
    """Why a request is not authenticated: becomes a JSON error response."""

    status: int
    error: str
    description: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user and the ``client_id`` to put in its tokens."""

    user: User
    client_id: str


def parse_basic(value: str) -> tuple[str, str] | None:
    """RFC 7617 credentials from the part after ``Basic``; ``None`` when malformed."""
    value = value.strip()
    if not value or len(value) > MAX_AUTHORIZATION_LENGTH:
        return None
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        return None
    username, sep, password = text.partition(":")
    if not sep or not username or any(ord(c) < 0x20 or c == "\x7f" for c in username):
        return None
    return username, password


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_address(environ: Mapping[str, Any], trusted_proxies: Iterable[str] = ()) -> str | None:
    """The client's address when it can be believed, else ``None``.

    ``REMOTE_ADDR`` for a direct client. For a request from a trusted proxy: the rightmost entry
    of ``X-Forwarded-For`` that is not itself a trusted proxy, when it is an IP address; ``None``
    when there is no such entry (the proxy did not say whom it forwards for).
    """
    trusted = trusted_proxies if isinstance(trusted_proxies, frozenset) else frozenset(trusted_proxies)
    remote = str(environ.get("REMOTE_ADDR") or "")
    if remote not in trusted:
        return remote or None
    forwarded_for = str(environ.get("HTTP_X_FORWARDED_FOR", ""))
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if hop and hop not in trusted:
            return hop if len(hop) <= 64 and _is_ip(hop) else None
    return None


class ClientAuth:
    """Authenticates requests for the gateway; owns nothing per request."""

    def __init__(
        self,
        *,
        users: UserStore,
        sessions: SessionCodec,
        limiter: LoginLimiter,
        session_cookie: str,
        issuer: str,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.limiter = limiter
        self.session_cookie = session_cookie
        issuer_parts = urlsplit(issuer)
        self._own_origin = f"{issuer_parts.scheme}://{issuer_parts.netloc}"
        self.trusted_proxies = frozenset(trusted_proxies)

    def authenticate(self, environ: Mapping[str, Any], method: str) -> Principal | Refusal:
        """The caller from Basic credentials or the session cookie, or why not."""
        authorization = str(environ.get("HTTP_AUTHORIZATION", "")).strip()
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            parsed = parse_basic(credentials)
            if parsed is None:
                return Refusal(400, "invalid_request", "malformed Basic credentials", (BASIC_CHALLENGE,))
            result = self.check_password(*parsed, client_address(environ, self.trusted_proxies))
            return result if isinstance(result, Refusal) else Principal(result, "gateway")
        session = self.sessions.decode(self.cookies(environ).get(self.session_cookie))
        if session is not None:
            user = self.users.get(session.username)
            if user is not None:
                if method not in SAFE_METHODS and not self.same_origin(environ):
                    return Refusal(403, "forbidden", "cross-site request refused")
                return Principal(user, session.client_id)
        return Refusal(
            401, "unauthorized", "authenticate with HTTP Basic or sign in at /login", (BASIC_CHALLENGE,)
        )

    def check_password(self, username: str, password: str, address: str | None) -> User | Refusal:
        """The user, or a 429 while ``username`` is limited from ``address``, or a 401."""
        wait = self.limiter.retry_after(username, address)
        if wait:
            return Refusal(
                429, "too_many_requests", "too many failed logins; try again later",
                (("Retry-After", str(wait)),),
            )
        user = self.users.authenticate(username, password)
        if user is None:
            self.limiter.failure(username, address)
            return Refusal(401, "invalid_credentials", "wrong username or password", (BASIC_CHALLENGE,))
        return user

    @staticmethod
    def cookies(environ: Mapping[str, Any]) -> dict[str, str]:
        # WSGI gives headers as latin-1 text; bytes that are not UTF-8 become U+FFFD rather than
        # an exception (werkzeug.http.parse_cookie(environ) raises on them).
        raw = str(environ.get("HTTP_COOKIE", ""))
        text = raw.encode("latin-1", "replace").decode("utf-8", "replace")
        return dict(parse_cookie(text))

    def same_origin(self, environ: Mapping[str, Any]) -> bool:
        if environ.get("HTTP_SEC_FETCH_SITE") == "same-origin":
            return True
        origin = environ.get("HTTP_ORIGIN", "")
        if not origin or origin == "null":
            return False
        own = {self._own_origin}
        host = environ.get("HTTP_HOST")
        if host:
            own.add(f"{environ.get('wsgi.url_scheme', 'http')}://{host}")
        return origin in own
