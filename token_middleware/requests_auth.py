"""Propagate the current access token on calls made with requests.

:class:`PropagateTokenAuth` is a requests auth object: at call time it reads the token of the
request being handled (:func:`token_middleware.core.context.get_current_token`) and adds
``Authorization: Bearer <token>`` when the destination is in the ``FORWARD_TO`` allowlist, no
proxy would carry the call in clear, and the caller set no ``Authorization`` of its own. The
rules are those of :mod:`token_middleware.core.forwarding`. :func:`propagating_session` returns
a session that uses it on every call::

    session = propagating_session()              # FORWARD_TO of the current request's settings
    session.get("http://customers:8002/customers/whoami")   # carries the caller's token

Exchange: a host listed as ``host:port=audience`` gets, instead of the caller's token, one
exchanged for that audience at the token endpoint (:mod:`token_middleware.core.exchange`),
cached per token and audience and shared by every client of the app. The first call for a
(token, audience) pair makes the exchange on the calling thread; concurrent calls wait for that
one. A failed exchange raises :class:`~token_middleware.core.exchange.ExchangeFailed` from the
call and nothing is sent: there is no fallback to the caller's token.

Which allowlist: ``forward_to`` given by hand wins; ``None`` (the default) means, on each call,
the ``FORWARD_TO`` of the settings that validated the current token (environment, Flask
``app.config`` or Django's ``TOKEN_MIDDLEWARE``), and outside a request
``TOKEN_MIDDLEWARE_FORWARD_TO`` as it was when the object was built.

Proxies: requests' own resolution decides (``requests.utils.resolve_proxies``,
``get_environ_proxies`` with ``NO_PROXY``, ``select_proxy``). A plain-http call that a proxy
would carry gets no token. The session from :func:`propagating_session` knows its
``proxies``, its ``trust_env`` and a call's ``proxies=`` (checked again in ``send``, right
before the request leaves); an auth object used without such a session knows only the
environment, as a plain ``requests.get`` uses it.

Redirects: the token is applied to the first request only. requests removes ``Authorization``
when a redirect leaves the host (or changes port or scheme, except an http to https upgrade on
the default ports); the session from :func:`propagating_session` also removes the current token
from any redirect hop whose destination is not in the allowlist or would go through a proxy in
clear.

Dropped connections: the session from :func:`propagating_session` retries an idempotent
request (``GET``, ``HEAD``, ``PUT``, ``DELETE``, ``OPTIONS``, ``TRACE``; RFC 9110, 9.2.2) once, at
once, when its connection was closed under it before an answer came: a pooled keep-alive
connection that the service (gunicorn's ``keepalive``, 2 s by default) closed as the request went
out. A ``POST``, a connect error and a read timeout are never retried, so a slow service is not
asked twice and ``timeout=`` still bounds the wait. ``retries=0`` turns this off.

Trusted: the allowlist (from the deployer) and the current token (validated). The destination
URL is not trusted. Nothing is logged but the decision and the hosts.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.models import PreparedRequest, Response
from requests.utils import get_environ_proxies, resolve_proxies, select_proxy
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from .core.forwarding import (
    AllowlistSource,
    ForwardTo,
    HostAllowlist,
    ProxyLookup,
    authorization_for,
    carries_current_token,
    environment_has_proxies,
    may_carry_token,
)

__all__ = [
    "PropagateTokenAuth",
    "PropagatingSession",
    "RetryDroppedConnection",
    "environment_proxy",
    "propagating_session",
    "session_proxy",
]


def environment_proxy(url: str) -> str | None:
    """The proxy a plain requests call (``trust_env`` on, no ``proxies=``) sends ``url`` through."""
    if not environment_has_proxies():
        return None
    return select_proxy(url, get_environ_proxies(url))


def session_proxy(
    session: requests.Session, request: PreparedRequest, proxies: Mapping[str, str] | None = None
) -> str | None:
    """The proxy ``session`` sends ``request`` through, by requests' own rules.

    ``proxies`` are those requests resolved for the call (what ``Session.send`` receives);
    without them, the session's ``proxies`` and, if ``trust_env``, the environment.
    """
    if proxies is None:
        if not session.proxies and not (session.trust_env and environment_has_proxies()):
            return None
        proxies = resolve_proxies(request, dict(session.proxies), session.trust_env)
    return select_proxy(request.url or "", dict(proxies))


class PropagateTokenAuth(AuthBase):
    """Adds the current access token to requests for allowed hosts.

    ``forward_to`` is the allowlist: entries (``"host"``, ``"host:port"``), a comma-separated
    string, or a :class:`~token_middleware.core.forwarding.HostAllowlist`; it wins over any
    settings. ``None`` means the current settings' ``FORWARD_TO`` on each call, and outside a
    request ``TOKEN_MIDDLEWARE_FORWARD_TO`` read here. An empty allowlist means the token is
    never sent. ``session``: the session this auth serves, whose ``proxies`` and ``trust_env``
    then count (default: the environment's proxies, as a plain ``requests.get`` uses them).
    The object holds no per-request state and may be shared by threads.
    """

    def __init__(
        self, forward_to: ForwardTo | AllowlistSource = None, *, session: requests.Session | None = None
    ) -> None:
        self.source = AllowlistSource(forward_to)
        self._session = None if session is None else weakref.ref(session)

    @property
    def forward_to(self) -> HostAllowlist:
        """The allowlist that applies to a call made now."""
        return self.source.current()

    def proxy_lookup(self, r: PreparedRequest) -> ProxyLookup:
        """How this auth finds the proxy for ``r``: its session's rules, or the environment's."""
        session = None if self._session is None else self._session()
        if session is None:
            return environment_proxy
        return lambda url: session_proxy(session, r)

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        value = authorization_for(
            r.url or "", r.headers, self.source.current(), proxy_for=self.proxy_lookup(r)
        )
        if value is not None:
            r.headers["Authorization"] = value
        return r

    def __repr__(self) -> str:
        return f"PropagateTokenAuth(forward_to={self.source.describe()})"


class RetryDroppedConnection(Retry):
    """urllib3 retries that never retry a read timeout.

    urllib3 counts a timed-out read as a read error and retries it; this raises it at once (as
    ``requests.ReadTimeout``), so ``timeout=`` stays the bound on a call to a slow service. A
    dropped connection (urllib3's ``ProtocolError``) is retried as usual, for urllib3's
    idempotent methods only.
    """

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        if isinstance(error, ReadTimeoutError):
            raise error.with_traceback(_stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def dropped_connection_retries(retries: int) -> RetryDroppedConnection:
    """``retries`` immediate retries of an idempotent request whose connection was dropped."""
    return RetryDroppedConnection(
        total=retries, connect=0, read=retries, redirect=0, status=0, other=0,
        backoff_factor=0, raise_on_status=False, respect_retry_after_header=False,
    )


class PropagatingSession(requests.Session):
    """A ``requests.Session`` whose auth is :class:`PropagateTokenAuth`.

    ``retries``: how many times an idempotent request whose connection was dropped before an
    answer is sent again (an int, or a urllib3 ``Retry`` used as given; ``0``: never). Both
    ``http://`` and ``https://`` get a ``requests.adapters.HTTPAdapter`` with it; mounting an
    adapter of your own replaces it.

    Right before each request leaves (``send``, redirect hops included), the current token is
    removed if the destination may not carry it with the proxies requests resolved for that
    call. On each redirect, after requests' own stripping, it is removed when the hop's
    destination is not in the allowlist.
    """

    def __init__(
        self, forward_to: ForwardTo | AllowlistSource = None, *, retries: int | Retry = 1
    ) -> None:
        super().__init__()
        max_retries = dropped_connection_retries(retries) if isinstance(retries, int) else retries
        for prefix in ("https://", "http://"):
            self.mount(prefix, HTTPAdapter(max_retries=max_retries))
        self.propagation = PropagateTokenAuth(forward_to, session=self)
        self.auth = self.propagation

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        strip_disallowed_hop(prepared_request, self.propagation.forward_to)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        strip_before_send(self, request, kwargs.get("proxies"), self.propagation.forward_to)
        return super().send(request, **kwargs)


def strip_disallowed_hop(
    prepared_request: PreparedRequest,
    allowlist: HostAllowlist,
    proxy_for: ProxyLookup | None = None,
) -> None:
    """Remove the current token (or one exchanged for it) from a request whose destination may
    not carry it.

    Whoever put the token there; any other ``Authorization`` is left alone. ``proxy_for``:
    the proxy the request would go through (``None``: only the allowlist is checked).
    """
    headers = prepared_request.headers
    if carries_current_token(headers.get("Authorization")) and not may_carry_token(
        prepared_request.url or "", allowlist, proxy_for=proxy_for
    ):
        del headers["Authorization"]


def strip_before_send(
    session: requests.Session,
    request: PreparedRequest,
    proxies: Mapping[str, str] | None,
    allowlist: HostAllowlist,
) -> None:
    """The last check in ``Session.send``: the proxies of the call are known there."""
    strip_disallowed_hop(request, allowlist, lambda url: session_proxy(session, request, proxies))


def propagating_session(
    forward_to: ForwardTo | AllowlistSource = None, *, retries: int | Retry = 1
) -> requests.Session:
    """A new session that carries the current token to ``forward_to`` hosts on every call.

    ``forward_to=None``: the ``FORWARD_TO`` of the settings that validated the current token,
    on each call; outside a request, ``TOKEN_MIDDLEWARE_FORWARD_TO`` as it is now. An explicit
    ``Authorization`` header, or ``auth=`` on a call, takes precedence. Since the session has
    an auth of its own, ``~/.netrc`` credentials are not looked up for its calls. Share one
    session between threads and requests: the token is read per call, never stored.
    ``retries``: an idempotent request whose pooled connection the service closed under it is
    sent once more on a new one (``0``: never; see :class:`PropagatingSession`).
    """
    return PropagatingSession(forward_to, retries=retries)
