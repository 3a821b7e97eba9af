"""Propagate the current access token on calls made with httpx.

:class:`PropagateTokenAuth` is an ``httpx.Auth`` whose flow does no I/O, so one instance serves
both ``httpx.Client`` and ``httpx.AsyncClient``. At call time it reads the token of the request
being handled (:func:`token_middleware.core.context.get_current_token`) and adds
``Authorization: Bearer <token>`` when the destination is in the ``FORWARD_TO`` allowlist and the
request has no ``Authorization`` of its own (rules: :mod:`token_middleware.core.forwarding`)::

    auth = PropagateTokenAuth(forward_to=["customers:8002"])
    with httpx.Client(auth=auth) as client:
        client.get("http://customers:8002/customers/whoami")
    async with httpx.AsyncClient(auth=auth) as client:
        await client.get("http://customers:8002/customers/whoami")

Redirects (``follow_redirects=True``): the flow runs once, for the first request. httpx removes
``Authorization`` from a redirect that leaves the origin (scheme, host or port), except an http
to https upgrade of the same host on the default ports, so a redirect to another host never
carries the token.

Trusted: the allowlist (from the deployer) and the current token (validated). The destination
URL is not trusted. Nothing is logged but the decision and the host.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable

import httpx

from .core.forwarding import HostAllowlist, authorization_for

__all__ = ["PropagateTokenAuth", "with_authorization"]


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
    string, or a :class:`~token_middleware.core.forwarding.HostAllowlist`. ``None`` reads
    ``TOKEN_MIDDLEWARE_FORWARD_TO`` from the environment once, here; an empty allowlist means the
    token is never sent. The object holds no per-request state and may be shared.
    """

    def __init__(self, forward_to: Iterable[str] | HostAllowlist | None = None) -> None:
        self.forward_to = HostAllowlist.coerce(forward_to)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = authorization_for(str(request.url), request.headers, self.forward_to)
        yield request if value is None else with_authorization(request, value)

    def __repr__(self) -> str:
        return f"PropagateTokenAuth(forward_to={list(self.forward_to.entries)!r})"
