"""Propagate the current access token on calls made with requests.

:class:`PropagateTokenAuth` is a requests auth object: at call time it reads the token of the
request being handled (:func:`token_middleware.core.context.get_current_token`) and adds
``Authorization: Bearer <token>`` when the destination is in the ``FORWARD_TO`` allowlist and the
caller set no ``Authorization`` of its own. The rules are those of
:mod:`token_middleware.core.forwarding`. :func:`propagating_session` returns a session that uses it on
every call::

    session = propagating_session(forward_to=["customers:8002"])
    session.get("http://customers:8002/customers/whoami")   # carries the caller's token

Redirects: the token is applied to the first request only. requests removes ``Authorization``
when a redirect leaves the host (or changes port or scheme, except an http to https upgrade on
the default ports); the session from :func:`propagating_session` also removes the current token
from any redirect hop whose destination is not in the allowlist.

Trusted: the allowlist (from the deployer) and the current token (validated). The destination
URL is not trusted. Nothing is logged but the decision and the host.
"""

from __future__ import annotations

from collections.abc import Iterable

import requests
from requests.auth import AuthBase
from requests.models import PreparedRequest, Response

from .core.forwarding import HostAllowlist, authorization_for, carries_current_token

__all__ = ["PropagateTokenAuth", "PropagatingSession", "propagating_session"]


class PropagateTokenAuth(AuthBase):
    """Adds the current access token to requests for allowed hosts.

    ``forward_to`` is the allowlist: entries (``"host"``, ``"host:port"``), a comma-separated
    string, or a :class:`~token_middleware.core.forwarding.HostAllowlist`. ``None`` reads
    ``TOKEN_MIDDLEWARE_FORWARD_TO`` from the environment once, here; an empty allowlist means the
    token is never sent. The object holds no per-request state and may be shared by threads.
    """

    def __init__(self, forward_to: Iterable[str] | HostAllowlist | None = None) -> None:
        self.forward_to = HostAllowlist.coerce(forward_to)

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        value = authorization_for(r.url or "", r.headers, self.forward_to)
        if value is not None:
            r.headers["Authorization"] = value
        return r

    def __repr__(self) -> str:
        return f"PropagateTokenAuth(forward_to={list(self.forward_to.entries)!r})"


class PropagatingSession(requests.Session):
    """A ``requests.Session`` whose auth is :class:`PropagateTokenAuth`.

    On each redirect, after requests' own stripping, the current token is removed from the
    redirected request when its destination is not in the allowlist.
    """

    def __init__(self, forward_to: Iterable[str] | HostAllowlist | None = None) -> None:
        super().__init__()
        self.propagation = PropagateTokenAuth(forward_to)
        self.auth = self.propagation

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        strip_disallowed_hop(prepared_request, self.propagation.forward_to)


def strip_disallowed_hop(prepared_request: PreparedRequest, allowlist: HostAllowlist) -> None:
    """Remove the current token from a redirect hop whose destination is not allowed."""
    headers = prepared_request.headers
    if carries_current_token(headers.get("Authorization")) and not allowlist.permits(
        prepared_request.url or ""
    ):
        del headers["Authorization"]


def propagating_session(
    forward_to: Iterable[str] | HostAllowlist | None = None,
) -> requests.Session:
    """A new session that carries the current token to ``forward_to`` hosts on every call.

    ``forward_to=None`` reads ``TOKEN_MIDDLEWARE_FORWARD_TO`` from the environment now. An
    explicit ``Authorization`` header, or ``auth=`` on a call, takes precedence. Since the session
    has an auth of its own, ``~/.netrc`` credentials are not looked up for its calls. Share one
    session between threads and requests: the token is read per call, never stored.
    """
    return PropagatingSession(forward_to)
