"""Shared state in Redis, for several gateway and service replicas: login failures and revoked ``jti``.

Optional: needs the ``redis`` extra (``pip install 'token-middleware[redis]'``, redis-py). In one
process the in-memory defaults (:class:`~token_middleware.gateway.limits.MemoryFailureStore`, an
``is_revoked`` set of your own) are enough; with replicas they are not: each replica would keep
its own counts (an attacker gets ``replicas × workers`` times the login limit) and its own
denylist (a revocation would reach only one replica).

:class:`RedisFailureStore`
    A :class:`~token_middleware.gateway.limits.FailureStore` for the gateway's login limiter.
    Each key is a sorted set of failure times, trimmed to the window and to the newest ``keep``
    in one Lua script, with an expiry of one window. Times are *Redis's* clock (``TIME``), so
    replicas whose clocks differ (or that use ``time.monotonic``) still count in one frame; the
    caller's ``now`` only translates the oldest failure back into the caller's clock.

    **Redis unreachable: per-process limits, never open.** The store falls back to a
    :class:`MemoryFailureStore` of its own and logs one WARNING on ``token_middleware.redis``
    ("login limits are per process until Redis answers again: ..."), then an INFO line when
    Redis is back. So logins keep working through a Redis outage, and every process still
    enforces the limits by itself (an attacker gets at most ``processes`` times the limit during
    the outage, as with no Redis at all). Refusing every login with 503 instead would make
    Redis a way to lock every user out. After a failure, Redis is tried again at most once per
    ``retry_interval`` seconds (5), so a dead Redis does not add its timeout to every login.

:class:`RedisDenylist`
    An ``is_revoked`` hook (:mod:`token_middleware.core.hooks`): ``TokenValidator(settings,
    is_revoked=RedisDenylist(url).is_revoked)``. Keyed on ``(iss, jti)``, hashed (never the raw
    token); :meth:`RedisDenylist.revoke` stores the key with a TTL to the token's ``exp`` plus
    ``leeway``, so the set never outgrows the live tokens. A "not revoked" answer is cached in
    the process for at most ``cache_seconds`` (default 1, at most 1): a revocation reaches
    every replica within a second; a "revoked" answer is final. A token without ``jti`` cannot
    be revoked by this list and is never reported revoked.

    **Redis unreachable:** ``fail_open=False`` (the default) raises :class:`StoreUnavailable`,
    which the validator answers with ``RevocationUnavailable``: 503 with ``Retry-After``, and a
    WARNING from the hooks module. ``fail_open=True`` answers "not revoked" and logs a WARNING
    (at most one a minute): use it only where availability matters more than revocation.

What is trusted: the Redis server and whoever can write to it (they can lift a limit or revoke
any token: put it on a private network, with ``AUTH``/TLS in the URL, ``rediss://``). Keys are
built from user names, addresses, issuers and ``jti`` values only through SHA-256, so nothing a
client sends becomes a Redis command or an unbounded key; user names are never logged.

Example::

    limiter = LoginLimiter(RedisFailureStore("redis://10.0.0.5:6379/0"))
    denylist = RedisDenylist("redis://10.0.0.5:6379/0")
    validator = TokenValidator(settings, is_revoked=denylist.is_revoked)
    denylist.revoke(token)                                   # or revoke(iss, jti, until=exp)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .core.token import AccessToken

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("token_middleware.redis_store needs redis-py: pip install 'token-middleware[redis]'") from exc

log = logging.getLogger("token_middleware.redis")

__all__ = ["RedisDenylist", "RedisFailureStore", "StoreUnavailable"]

#: Seconds to wait for Redis to connect or answer before treating it as unreachable.
DEFAULT_TIMEOUT = 0.5

_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""

_RECENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local low = '(' .. tostring(now - tonumber(ARGV[1]))
local count = redis.call('ZCOUNT', KEYS[1], low, '+inf')
if count == 0 then return {0, '0'} end
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {count, tostring(now - tonumber(oldest[2]))}
"""


class StoreUnavailable(RuntimeError):
    """Redis could not be reached or did not answer; the message names the cause, never a key."""


def _client(url_or_client: str | redis.Redis, timeout: float) -> redis.Redis:
    if isinstance(url_or_client, str):
        return redis.Redis.from_url(url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    retry_on_timeout=False)
    return url_or_client


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


class _Breaker:
    """Whether to try Redis now: always while it answers, once per ``interval`` after a failure."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.clock = clock
        self.down_since: float | None = None
        self._next_try = 0.0
        self._lock = threading.Lock()

    def may_try(self) -> bool:
        return self.down_since is None or self.clock() >= self._next_try

    def failed(self) -> bool:
        """Record a failure; ``True`` the first time (Redis just went away)."""
        with self._lock:
            now = self.clock()
            self._next_try = now + self.interval
            first = self.down_since is None
            if first:
                self.down_since = now
            return first

    def succeeded(self) -> float | None:
        """Record a success; the seconds Redis was away if it just came back, else ``None``."""
        with self._lock:
            since, self.down_since = self.down_since, None
            return None if since is None else self.clock() - since


class RedisFailureStore:
    """Login failures in Redis, shared by every gateway replica. See the module docstring."""

    def __init__(
        self,
        url: str | redis.Redis,
        *,
        prefix: str = "token_middleware:login:",
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Imported here: a service that only uses the denylist needs none of the gateway.
        from .gateway.limits import MemoryFailureStore

        self.redis = _client(url, timeout)
        self.prefix = prefix
        self.local = MemoryFailureStore()  # the per-process fallback while Redis is away
        self._breaker = _Breaker(retry_interval, clock)
        self._record = self.redis.register_script(_RECORD)
        self._recent = self.redis.register_script(_RECENT)

    @property
    def available(self) -> bool:
        """Whether the last call reached Redis."""
        return self._breaker.down_since is None

    def close(self) -> None:
        """Close the connections to Redis (a client passed in is closed too)."""
        self.redis.close()

    def _key(self, key: str) -> str:
        return self.prefix + _digest(key)

    def record(self, key: str, now: float, window: float, keep: int) -> None:
        self.local.record(key, now, window, keep)  # so a fallback starts from what we saw
        if not self._breaker.may_try():
            return
        try:
            self._record(keys=[self._key(key)], args=[window, keep, secrets.token_hex(8)])
        except redis.RedisError as exc:
            self._failed(exc)
        else:
            self._ok()

    def recent(self, key: str, now: float, window: float) -> tuple[int, float]:
        if self._breaker.may_try():
            try:
                count, age = self._recent(keys=[self._key(key)], args=[window])
            except redis.RedisError as exc:
                self._failed(exc)
            else:
                self._ok()
                count = int(count)
                return (count, now - float(age)) if count else (0, now)
        return self.local.recent(key, now, window)

    def _failed(self, exc: BaseException) -> None:
        if self._breaker.failed():
            log.warning("login limits are per process until Redis answers again: %s (%s)",
                        type(exc).__name__, exc)

    def _ok(self) -> None:
        away = self._breaker.succeeded()
        if away is not None:
            log.info("Redis answers again after %.0f s: login limits are shared across replicas again", away)


class RedisDenylist:
    """Revoked ``(iss, jti)`` pairs in Redis, for ``is_revoked``. See the module docstring."""

    def __init__(
        self,
        url: str | redis.Redis,
        *,
        fail_open: bool = False,
        cache_seconds: float = 1.0,
        leeway: float = 60.0,
        prefix: str = "token_middleware:revoked:",
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = 1.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= cache_seconds <= 1.0:
            raise ValueError("cache_seconds must be between 0 and 1: a revocation must reach every "
                             "replica within a second")
        self.redis = _client(url, timeout)
        self.fail_open = fail_open
        self.cache_seconds = cache_seconds
        self.leeway = leeway
        self.prefix = prefix
        self.max_cached = max_cached
        self._clock = clock
        self._wall = wall_clock
        self._breaker = _Breaker(retry_interval, clock)
        self._not_revoked: OrderedDict[str, float] = OrderedDict()  # key -> cached until
        self._lock = threading.Lock()
        self._last_warning = float("-inf")

    def _key(self, issuer: str, jti: str) -> str:
        return self.prefix + _digest(issuer, jti)

    def is_revoked(self, token: AccessToken) -> bool:
        """``True`` if ``(token.issuer, token.jti)`` was revoked; raises :class:`StoreUnavailable`
        (or answers ``False`` with ``fail_open``) when Redis cannot tell."""
        if token.jti is None:
            return False
        key = self._key(token.issuer, token.jti)
        now = self._clock()
        if self.cache_seconds:
            with self._lock:
                until = self._not_revoked.get(key)
                if until is not None and now < until:
                    return False
        try:
            if not self._breaker.may_try():
                raise StoreUnavailable("Redis did not answer a moment ago; retrying shortly")
            try:
                revoked = bool(self.redis.exists(key))
            except redis.RedisError as exc:
                self._breaker.failed()
                raise StoreUnavailable(f"Redis unreachable: {type(exc).__name__} ({exc})") from None
        except StoreUnavailable as exc:
            if not self.fail_open:
                raise
            if now - self._last_warning >= 60:
                self._last_warning = now
                log.warning("revocation denylist unavailable, accepting tokens unchecked (fail_open): %s", exc)
            return False
        if self._breaker.succeeded() is not None:
            log.info("revocation denylist reachable again")
        if not revoked and self.cache_seconds:
            with self._lock:
                self._not_revoked[key] = now + self.cache_seconds
                self._not_revoked.move_to_end(key)
                while len(self._not_revoked) > self.max_cached:
                    self._not_revoked.popitem(last=False)
        return revoked

    def revoke(self, token_or_issuer: AccessToken | str, jti: str | None = None, *,
               until: float | None = None) -> None:
        """Revoke a token (or ``(issuer, jti)``) until ``until`` (epoch seconds; default the
        token's ``exp``) plus ``leeway``. Raises :class:`StoreUnavailable` if Redis cannot be
        written, and ``ValueError`` without a ``jti`` or an expiry."""
        if isinstance(token_or_issuer, AccessToken):
            issuer, jti = token_or_issuer.issuer, token_or_issuer.jti
            if until is None:
                until = token_or_issuer.expires_at
        else:
            issuer = token_or_issuer
        if not jti:
            raise ValueError("a token without jti cannot be revoked by (iss, jti)")
        if until is None:
            raise ValueError("revoke needs until= (the token's exp): entries must expire")
        ttl_ms = max(1, math.ceil((until + self.leeway - self._wall()) * 1000))
        key = self._key(issuer, jti)
        try:
            self.redis.set(key, b"1", px=ttl_ms)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot revoke: Redis unreachable: {type(exc).__name__} ({exc})") from None
        with self._lock:
            self._not_revoked.pop(key, None)  # this process sees it at once

    def close(self) -> None:
        """Close the connections to Redis (a client passed in is closed too)."""
        self.redis.close()

    def forget_cache(self) -> None:
        """Drop the cached "not revoked" answers (tests, or right after a local revoke)."""
        with self._lock:
            self._not_revoked.clear()
