"""Per-hop token exchange (RFC 8693), client side: trade the current token for the next hop's.

A ``FORWARD_TO`` entry that names an audience (``customers:8002=customers-service``) makes the
outgoing clients send, instead of the caller's token, a token that the issuer's token endpoint
issued for that audience alone (:mod:`token_middleware.core.forwarding` decides when). A
:class:`TokenExchanger` asks for it and caches it::

    POST <TOKEN_ENDPOINT>                       Authorization: Basic <CLIENT_ID:CLIENT_SECRET>
    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    &subject_token=<the current token>&subject_token_type=urn:ietf:params:oauth:token-type:access_token
    &audience=customers-service

- **Where.** ``TOKEN_ENDPOINT``, else the ``token_endpoint`` of the current token's issuer's
  discovery document, read by the one discovery reader
  (:func:`token_middleware.core.keys.fetch_discovery`) and kept until the endpoint cannot be
  reached. It must be https, or http to a loopback address (RFC 6749 §3.2).
- **Cached** per (current token, audience) until shortly before the issued token expires
  (``expires_in``), and never past the current token's own ``exp``. The key is the current
  token's :attr:`~token_middleware.core.token.AccessToken.fingerprint` (a hash of what the
  issuer signed), not its string: a second spelling of one ECDSA signature (``s`` → ``n - s``)
  finds the same entry. At most ``max_entries`` entries; expired ones go first.
- **Single-flight.** Concurrent callers of one key, threads and asyncio tasks alike, share one
  request: the first runs it, the others wait on one ``concurrent.futures.Future``. The async
  path (:meth:`TokenExchanger.exchange_async`) never blocks the event loop: a cache hit is
  answered on the loop, and a cold exchange runs the same blocking client in the loop's default
  executor for its one round trip. That keeps one HTTP client (the standard library's, as for
  keys: the core imports no requests or httpx), one set of rules and one in-flight table for
  every caller.
- **Failure is final.** A refusal of the endpoint (RFC 6749 §5.2) raises
  :class:`ExchangeRefused` with its ``error`` code; an endpoint that cannot be asked or answers
  nonsense raises :class:`ExchangeUnavailable`. Nothing is cached, and the caller never falls
  back to forwarding the original token: the outgoing call is not made.

Trusted: the settings (credential, endpoint, issuers) and the current token (validated).
Not trusted: the endpoint's answer, which is checked (a ``Bearer`` token of token characters,
a positive ``expires_in``) but not validated as a JWT: the next hop does that. Redirects from
the endpoint are never followed (they would carry the secret elsewhere), and a plain-http
endpoint that a proxy would carry is refused. Logged, on ``token_middleware.exchange``: the
audience, the endpoint's host, the error code and the current token's ``jti``; never a token,
the secret or the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from . import observe
from .errors import ConfigurationError, TokenMiddlewareError
from .keys import FetchError, Fetcher, _shown, discovered_url, fetch_discovery, http_get_json
from .settings import check_endpoint_url
from .token import AccessToken
from .introspection import basic_credential
from .token_endpoint import Poster, Refused, exchange_form, http_post_form, read_answer

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["ExchangeFailed", "ExchangeRefused", "ExchangeUnavailable", "TokenExchanger"]

log = logging.getLogger("token_middleware.exchange")

ProxyLookup = Callable[[str], "str | None"]
Key = tuple[bytes, str]


class ExchangeFailed(TokenMiddlewareError):
    """The current token could not be exchanged for ``audience``; the outgoing call is not made.

    ``description`` is short and names no token or secret. ``error`` is the RFC 6749 error code
    the endpoint answered (``invalid_target``, …) or ``None``; ``status`` its HTTP status;
    ``cause`` says more, in operator terms (the endpoint's host, its ``error_description``
    quoted), for logs only.
    """

    reason: ClassVar[str] = "exchange_failed"

    def __init__(
        self, description: str, *, audience: str, error: str | None = None,
        status: int | None = None, cause: str | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.audience = audience
        self.error = error
        self.status = status
        self.cause = cause

    def copy(self) -> ExchangeFailed:
        """A new exception with the same fields: each waiter of a shared exchange raises its own."""
        return type(self)(self.description, audience=self.audience, error=self.error,
                          status=self.status, cause=self.cause)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, error={self.error!r})"


class ExchangeRefused(ExchangeFailed):
    """The token endpoint refused (RFC 6749 §5.2): ``error`` is its code, e.g. ``invalid_grant``."""

    reason: ClassVar[str] = "exchange_refused"


class ExchangeUnavailable(ExchangeFailed):
    """The token endpoint could not be found, reached or understood (no ``error`` code)."""

    reason: ClassVar[str] = "exchange_unavailable"


@dataclass(frozen=True)
class _Entry:
    raw: str
    fresh_until: float


class TokenExchanger:
    """Exchanges tokens at one service's token endpoint, with its credential; caches the answers.

    One per app: :func:`token_middleware.core.forwarding.exchanger_for` keeps it with the
    settings that validated the current token. ``client_secret`` is never shown (``repr``, logs
    and errors leave it out). ``refresh_margin``: an entry is exchanged again that many seconds
    before the issued token expires (at most half its life). ``post``, ``fetch`` and ``clock``
    are for tests.
    """

    def __init__(
        self, *, client_id: str, client_secret: str, issuers: Iterable[str],
        token_endpoint: str | None = None, timeout: float = 5.0, max_entries: int = 4096,
        refresh_margin: float = 30.0, proxy_for: ProxyLookup | None = None,
        post: Poster = http_post_form, fetch: Fetcher = http_get_json,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.issuers = tuple(issuers)
        self.token_endpoint = token_endpoint
        self.timeout = timeout
        self.max_entries = max_entries
        self.refresh_margin = refresh_margin
        self.proxy_for = proxy_for
        self._post = post
        self._fetch = fetch
        self._clock = clock
        self.__authorization = basic_credential(client_id, client_secret)
        self._cache: OrderedDict[Key, _Entry] = OrderedDict()
        self._origins: dict[str, bytes] = {}  # issued token -> fingerprint of the token it replaced
        self._inflight: dict[Key, concurrent.futures.Future[str]] = {}
        self._lock = threading.Lock()
        self._discovered: dict[str, str] = {}
        self._discovery_lock = threading.Lock()
        #: Requests made to the token endpoint (answered or not): for tests and benchmarks.
        self.requests = 0
        #: Calls that waited for another caller's exchange instead of making their own.
        self.joined = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, proxy_for: ProxyLookup | None = None) -> TokenExchanger:
        """The exchanger ``settings`` describe; :class:`ConfigurationError` without a credential."""
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigurationError(
                "token exchange needs CLIENT_ID and CLIENT_SECRET in the settings", setting="CLIENT_ID"
            )
        return cls(client_id=settings.client_id, client_secret=settings.client_secret,
                   issuers=settings.issuers, token_endpoint=settings.token_endpoint,
                   timeout=settings.http_timeout, proxy_for=proxy_for)

    def __repr__(self) -> str:
        where = self.token_endpoint or "<discovered>"
        return f"TokenExchanger(client_id={self.client_id!r}, token_endpoint={where!r})"

    # -- the three ways in ------------------------------------------------------------------

    def cached(self, token: AccessToken, audience: str) -> str | None:
        """The cached token for (``token``, ``audience``) if still fresh; no I/O, no lock."""
        entry = self._cache.get((token.fingerprint, audience))
        if entry is not None and self._clock() < entry.fresh_until:
            return entry.raw
        return None

    def exchange(self, token: AccessToken, audience: str) -> str:
        """A token for ``audience`` in exchange for ``token``: cached, or asked for now (blocking).

        Raises :class:`ExchangeFailed`.
        """
        hit = self.cached(token, audience)
        if hit is not None:
            return hit
        future, leader = self._claim((token.fingerprint, audience))
        if leader:
            self._lead((token.fingerprint, audience), future, token, audience, observe.current_watch())
        return _result(future)

    async def exchange_async(self, token: AccessToken, audience: str) -> str:
        """:meth:`exchange` for the event loop: a cold exchange runs in the default executor."""
        hit = self.cached(token, audience)
        if hit is not None:
            return hit
        key = (token.fingerprint, audience)
        future, leader = self._claim(key)
        if leader:
            try:
                asyncio.get_running_loop().run_in_executor(
                    None, self._lead, key, future, token, audience, observe.current_watch()
                )
            except BaseException as exc:  # no executor: fail the waiters rather than strand them
                with self._lock:
                    self._inflight.pop(key, None)
                future.set_exception(exc)
        try:
            return await asyncio.wrap_future(future)
        except ExchangeFailed as exc:
            raise exc.copy() from None

    # -- single flight ----------------------------------------------------------------------

    def _claim(self, key: Key) -> tuple[concurrent.futures.Future[str], bool]:
        """The in-flight future for ``key`` and whether the caller must run the exchange."""
        with self._lock:
            future = self._inflight.get(key)
            if future is not None:
                self.joined += 1
                return future, False
            future = concurrent.futures.Future()
            entry = self._cache.get(key)
            if entry is not None and self._clock() < entry.fresh_until:  # stored meanwhile
                future.set_result(entry.raw)
                return future, False
            # Running from the start: a waiter's cancellation can never cancel the shared future.
            future.set_running_or_notify_cancel()
            self._inflight[key] = future
            return future, True

    def _lead(
        self, key: Key, future: concurrent.futures.Future[str], token: AccessToken, audience: str,
        watch: observe.Watch | None,
    ) -> None:
        """Run the exchange for everyone waiting on ``future``; never raises (it is all in ``future``)."""
        try:
            with observe.exchanging(audience, watch=watch):
                raw, fresh_until = self._ask(token, audience)
        except BaseException as exc:  # the future carries it to the leader and every waiter
            with self._lock:
                self._inflight.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            if fresh_until > self._clock():
                self._store(key, _Entry(raw, fresh_until))
            self._inflight.pop(key, None)
        future.set_result(raw)

    def _store(self, key: Key, entry: _Entry) -> None:
        cache, origins = self._cache, self._origins
        previous = cache.pop(key, None)
        if previous is not None:
            origins.pop(previous.raw, None)
        cache[key] = entry
        origins[entry.raw] = key[0]
        if len(cache) > self.max_entries:
            now = self._clock()
            for stale in [k for k, e in cache.items() if e.fresh_until <= now]:
                origins.pop(cache.pop(stale).raw, None)
            while len(cache) > self.max_entries:
                origins.pop(cache.popitem(last=False)[1].raw, None)

    def issued_for(self, token: AccessToken, raw: str) -> bool:
        """True when ``raw`` is a cached token this exchanger obtained in exchange for ``token``."""
        return self._origins.get(raw) == token.fingerprint

    def clear(self) -> None:
        """Forget every exchanged token (in-flight exchanges finish and are stored)."""
        with self._lock:
            self._cache.clear()
            self._origins.clear()

    # -- the request ------------------------------------------------------------------------

    def _ask(self, token: AccessToken, audience: str) -> tuple[str, float]:
        """POST the exchange; the issued token and until when it may be reused."""
        endpoint = self._endpoint(token, audience)
        where = _host(endpoint)
        if endpoint.startswith("http:") and self.proxy_for is not None:
            proxy = self.proxy_for(endpoint)
            if proxy:
                raise self._failure(audience, f"the plain-http token endpoint {where} would be reached "
                                    "through a proxy, which would read the token and the secret; "
                                    "use https, or exempt it from the proxy (NO_PROXY)")
        form = exchange_form(token.raw, audience)
        with self._lock:
            self.requests += 1
        started = self._clock()
        try:
            status, body = self._post(endpoint, form, self.__authorization, self.timeout)
        except FetchError as exc:
            with self._discovery_lock:  # maybe it moved: discover again next time
                self._discovered.pop(token.issuer, None)
            raise self._failure(audience, f"the token endpoint is unreachable ({exc})") from None
        try:
            answer = read_answer(status, body)
        except ValueError as exc:
            failure = self._failure(audience, f"{where} {exc}")
            failure.status = status
            raise failure from None
        if isinstance(answer, Refused):
            cause = f"{where} answered {status} {answer.error}" + (f": {answer.said}" if answer.said else "")
            log.warning("token exchange for %r refused: %s", audience, cause)
            raise ExchangeRefused(
                f"the token endpoint refused to exchange the token for {audience!r}: {answer.error}",
                audience=audience, error=answer.error, status=status, cause=cause,
            )
        raw, expires_in = answer
        expires_at = started + expires_in if expires_in is not None else token.expires_at
        if expires_at is None:
            return raw, started  # no lifetime known: used once, never cached
        if token.expires_at is not None:
            expires_at = min(expires_at, token.expires_at)
        margin = min(self.refresh_margin, max(0.0, expires_at - started) / 2)
        log.debug("token exchanged for %r at %s (jti=%s)", audience, where, token.jti)
        return raw, expires_at - margin

    def _endpoint(self, token: AccessToken, audience: str) -> str:
        if self.token_endpoint is not None:
            return self.token_endpoint
        issuer = token.issuer
        found = self._discovered.get(issuer)
        if found is not None:
            return found
        if issuer not in self.issuers:
            raise self._failure(audience, f"the token's issuer {_shown(issuer)} is not in ISSUER")
        with self._discovery_lock:
            found = self._discovered.get(issuer)
            if found is None:
                try:
                    url, document = fetch_discovery(issuer, self._fetch, self.timeout)
                    found = discovered_url(document, "token_endpoint", url)
                    _check_endpoint(found, url)
                except FetchError as exc:
                    raise self._failure(audience, f"{exc}; or set TOKEN_ENDPOINT") from None
                self._discovered[issuer] = found
        return found

    @staticmethod
    def _failure(audience: str, cause: str) -> ExchangeUnavailable:
        log.warning("token exchange for %r failed: %s", audience, cause)
        return ExchangeUnavailable(f"the token could not be exchanged for {audience!r}",
                                   audience=audience, cause=cause)


def _check_endpoint(url: str, document_url: str) -> None:
    """A discovered token endpoint obeys the same rule as ``TOKEN_ENDPOINT``."""
    try:
        check_endpoint_url("token_endpoint", url)
    except ConfigurationError as exc:
        raise FetchError(f"discovery document at {document_url}: {exc}") from None


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "<token endpoint>"


def _result(future: concurrent.futures.Future[str]) -> str:
    try:
        return future.result()
    except ExchangeFailed as exc:
        raise exc.copy() from None


