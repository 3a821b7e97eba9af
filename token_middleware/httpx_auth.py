"""Propagate the current access token on calls made with httpx.

:class:`PropagateTokenAuth` is an ``httpx.Auth`` that serves both ``httpx.Client`` and
``httpx.AsyncClient``. At call time it reads the token of the request being handled
(:func:`token_middleware.core.context.get_current_token`) and adds
``Authorization: Bearer <token>`` when the destination is in the ``FORWARD_TO`` allowlist, no
proxy would carry the call in clear, and the request has no ``Authorization`` of its own
(rules: :mod:`token_middleware.core.forwarding`)::

    auth = PropagateTokenAuth()        # FORWARD_TO of the current request's settings
    with httpx.Client(auth=auth) as client:
        client.get("http://customers:8002/customers/whoami")
    async with httpx.AsyncClient(auth=auth) as client:
        await client.get("http://customers:8002/customers/whoami")

Exchange (``FORWARD_TO`` entry ``host:port=audience``): the request carries a token exchanged
for that audience instead (:mod:`token_middleware.core.exchange`), cached per token and
audience. The flow does I/O only for a cold exchange: ``Client`` makes it on the calling
thread; ``AsyncClient`` awaits it without blocking the event loop (it runs in the loop's
default executor, shared with every other caller of the same token and audience). A failed
exchange raises :class:`~token_middleware.core.exchange.ExchangeFailed` out of the call, and
nothing is sent.

Which allowlist: ``forward_to`` given by hand wins; ``None`` (the default) means, on each call,
the ``FORWARD_TO`` of the settings that validated the current token, and outside a request
``TOKEN_MIDDLEWARE_FORWARD_TO`` as it was when the object was built.

Proxies: an auth flow is not told which client runs it, so :class:`PropagateTokenAuth` judges
by the environment as httpx itself reads it (``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``: the
mounts a client with ``trust_env`` builds) and sends no token on a plain-http call those would
proxy. A ``proxy=`` or ``mounts=`` given to the client is not visible to it: the opt-in
instrumentation (:mod:`token_middleware.instrument`) does see the client's own choice
(:func:`client_proxy`).

Redirects (``follow_redirects=True``): the flow runs once, for the first request. httpx removes
``Authorization`` from a redirect that leaves the origin (scheme, host or port), except an http
to https upgrade of the same host on the default ports, so a redirect to another host never
carries the token.

Trusted: the allowlist (from the deployer) and the current token (validated). The destination
URL is not trusted. Nothing is logged but the decision and the hosts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpcore
import httpx

from .core import forwarding
from .core.forwarding import (
    AllowlistSource,
    ForwardTo,
    HostAllowlist,
    authorization_for,
    authorization_for_async,
)

try:  # httpx's own reading of the environment, and its mount patterns
    from httpx._utils import URLPattern, get_environment_proxies
except ImportError:  # pragma: no cover - an httpx that moved them: the standard library's reading
    URLPattern = None  # type: ignore[assignment,misc]
    get_environment_proxies = None  # type: ignore[assignment]

__all__ = ["PropagateTokenAuth", "client_proxy", "environment_proxy", "with_authorization"]

_PROXY_POOLS = (httpcore.HTTPProxy, httpcore.SOCKSProxy, httpcore.AsyncHTTPProxy, httpcore.AsyncSOCKSProxy)


def environment_proxy(url: httpx.URL | str) -> str | None:
    """The proxy a client with ``trust_env`` (and no ``proxy=``, ``mounts=``, ``transport=``)
    sends ``url`` through: httpx's environment mounts, matched as the client matches them."""
    if not forwarding.environment_has_proxies():
        return None
    if URLPattern is None or get_environment_proxies is None:  # pragma: no cover
        return forwarding.environment_proxy(str(url))
    target = httpx.URL(url)
    mounts = get_environment_proxies()
    for key in sorted(mounts, key=URLPattern):
        if URLPattern(key).matches(target):
            return mounts[key]
    return None


def transport_proxy(transport: object) -> str | None:
    """The proxy URL of one of httpx's own proxy transports; ``None`` for any other transport."""
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, _PROXY_POOLS):
        return None
    url = getattr(pool, "_proxy_url", None)
    if isinstance(url, httpcore.URL):
        port = "" if url.port is None else f":{url.port}"
        return f"{url.scheme.decode('ascii')}://{url.host.decode('ascii', 'replace')}{port}"
    return "<proxy>"


def client_proxy(client: httpx.Client | httpx.AsyncClient, url: httpx.URL) -> str | None:
    """The proxy ``client`` sends ``url`` through: the transport httpx picks for it.

    httpx picks among its mounts (``proxy=``, ``mounts=``, and with ``trust_env`` the
    environment's proxies and ``NO_PROXY``). A transport of your own is taken as direct.
    """
    pick: Any = getattr(client, "_transport_for_url", None)
    if pick is None:  # pragma: no cover - an httpx without it: judge by the environment
        return environment_proxy(url) if client.trust_env else None
    return transport_proxy(pick(url))


def with_authorization(request: httpx.Request, value: str) -> httpx.Request:
    """A copy of ``request`` with ``Authorization: value``; ``request`` itself is left as it was.

    Copying (as httpx does for redirects) keeps a ``Request`` object that is sent again later,
    maybe on behalf of another caller, from keeping this caller's token.
    """
    headers = request.headers.copy()
    headers["Authorization"] = value
    copy = httpx.Request(
        request.method, request.url, headers=headers, stream=request.stream,
        extensions=request.extensions,
    )
    if isinstance(request.stream, httpx.ByteStream):
        copy.read()
    return copy


class PropagateTokenAuth(httpx.Auth):
    """Adds the current access token to requests for allowed hosts; sync and async.

    ``forward_to`` is the allowlist: entries (``"host"``, ``"host:port"``), a comma-separated
    string, or a :class:`~token_middleware.core.forwarding.HostAllowlist`; it wins over any
    settings. ``None`` means the current settings' ``FORWARD_TO`` on each call, and outside a
    request ``TOKEN_MIDDLEWARE_FORWARD_TO`` read here. An empty allowlist means the token is
    never sent. The object holds no per-request state and may be shared.
    """

    def __init__(self, forward_to: ForwardTo | AllowlistSource = None) -> None:
        self.source = AllowlistSource(forward_to)

    @property
    def forward_to(self) -> HostAllowlist:
        """The allowlist that applies to a call made now."""
        return self.source.current()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        value = authorization_for(
            str(url), request.headers, self.source.current(),
            proxy_for=lambda _: environment_proxy(url),
        )
        yield request if value is None else with_authorization(request, value)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self.auth_flow(request)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        url = request.url
        value = await authorization_for_async(
            str(url), request.headers, self.source.current(),
            proxy_for=lambda _: environment_proxy(url),
        )
        yield request if value is None else with_authorization(request, value)

    def __repr__(self) -> str:
        return f"PropagateTokenAuth(forward_to={self.source.describe()})"
