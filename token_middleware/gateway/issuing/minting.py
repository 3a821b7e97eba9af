"""Minting the gateway's access tokens, with reuse per principal and route.

Signing costs up to a millisecond (RS256), so a token minted for one (user, client name, route
prefix) is reused until less than ``refresh_margin`` of its life remains; only then is a new one
signed. The cache is bounded (least recently used dropped first) and emptied whenever the key
store's current key changes, so after a rotation no token signed by the old key is handed out.

What is trusted: the :class:`~token_middleware.gateway.users.User` handed in (the caller
authenticated it) and the route from the configuration. Claims follow RFC 9068: ``typ: at+jwt``,
``iss``, ``sub``, ``aud`` (the route's audiences), ``scope``, ``client_id``, ``iat``, ``exp``,
``jti``, and ``kid`` in the header. Signing goes through :mod:`token_middleware.core.issuer`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from token_middleware.core.issuer import TokenIssuer

from ..config import Route
from .keystore import KeyStore
from ..users import User

_CacheKey = tuple[str, str, str, tuple[str, ...]]


def refresh_margin(ttl: int) -> float:
    """Remaining life below which a cached token is replaced: 20% of ``ttl``, at least 30 s
    (but never more than half of a very short ``ttl``)."""
    return max(0.2 * ttl, min(30.0, 0.5 * ttl))


class TokenMinter:
    """Mints (or reuses) the token for a user on a route. Thread-safe; one per gateway process."""

    def __init__(
        self,
        issuer: str,
        keystore: KeyStore,
        *,
        ttl: int = 300,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        on_mint: Callable[[], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self.keystore = keystore
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.margin = refresh_margin(ttl)
        self._lock = threading.Lock()
        self._cache: OrderedDict[_CacheKey, tuple[str, int]] = OrderedDict()
        self._kid: str | None = None
        self._issuer: TokenIssuer | None = None
        self.minted = 0  # how many tokens were signed (for tests and metrics)
        #: Called once per token signed (not per reuse): the gateway's ``tokens_minted_total``.
        self.on_mint = on_mint

    def token_for(self, user: User, route: Route, client_id: str = "gateway") -> str:
        """The raw token to forward for ``user`` under ``route``."""
        return self.token_and_expiry(user, route, client_id)[0]

    def token_and_expiry(self, user: User, route: Route, client_id: str = "gateway") -> tuple[str, int]:
        """The raw token for ``user`` under ``route`` and its ``exp``. A reused token always
        has more than ``margin`` seconds of life left."""
        key = self.keystore.current()
        cache_key: _CacheKey = (user.username, client_id, route.prefix, user.scopes)
        now = self.clock()
        with self._lock:
            if key.kid != self._kid or self._issuer is None:
                self._cache.clear()
                self._kid = key.kid
                self._issuer = TokenIssuer(self.issuer, key, ttl=self.ttl, clock=self.clock)
            issuer = self._issuer
            hit = self._cache.get(cache_key)
            if hit is not None and hit[1] - now > self.margin:
                self._cache.move_to_end(cache_key)
                return hit
        claims = issuer.claims(
            sub=user.username,
            audience=list(route.audiences),
            scopes=user.scopes,
            client_id=client_id,
        )
        raw = issuer.key.sign(claims, {"typ": "at+jwt"})
        minted = (raw, int(claims["exp"]))
        with self._lock:
            self.minted += 1
            if self._kid == issuer.key.kid:
                self._cache[cache_key] = minted
                self._cache.move_to_end(cache_key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        if self.on_mint is not None:
            self.on_mint()
        return minted

    def clear(self) -> None:
        """Forget every cached token."""
        with self._lock:
            self._cache.clear()
