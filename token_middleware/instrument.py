"""Opt-in automatic injection: every requests and httpx call carries the current token.

**This is opt-in and patches the client classes, process-wide.** Nothing happens on import.
After :func:`instrument` (or :meth:`Instrumentor.instrument`), in the style of OpenTelemetry's
requests and httpx instrumentors, every call made with requests or httpx, by your code or by any
library in the process, carries the current access token to the hosts in the ``FORWARD_TO``
allowlist, with no change at the call sites. :func:`uninstrument` puts the original methods back.
Prefer :func:`~token_middleware.requests_auth.propagating_session` or the httpx
:class:`~token_middleware.httpx_auth.PropagateTokenAuth` when you can pass them explicitly.

What is patched (only for the libraries that are importable):

- ``requests.Session.prepare_request``: once per call (``requests.get``, ``session.get``, ...);
  requests' own auth, ``auth=`` and an explicit ``Authorization`` header win. A
  ``PreparedRequest`` built by hand and passed to ``Session.send`` is not given the token.
- ``requests.Session.send``: right before a request leaves (redirect hops included), the
  current token is removed if the proxies requests resolved for that call (a call's
  ``proxies=``, the session's, the environment's) would carry it in clear.
- ``requests.Session.rebuild_auth``: on every redirect hop, after requests' own stripping, the
  current token is removed when the hop's host is not in the allowlist.
- ``httpx.Client.send`` and ``httpx.AsyncClient.send``: the request is copied with the header
  added (the caller's ``Request`` object is left unchanged); httpx drops it on a redirect that
  leaves the origin. A client's own ``auth`` still applies after it and wins. The proxy is the
  one the client itself picks (:func:`token_middleware.httpx_auth.client_proxy`).

The rules (which allowlist, exact host and port, no token in clear through a proxy, the
caller's header wins, no token no header, only hosts are logged) are those of
:mod:`token_middleware.core.forwarding`. So is token exchange: a host listed as
``host:port=audience`` gets a token exchanged for that audience (``httpx.AsyncClient`` awaits a
cold exchange without blocking the loop), and a failed exchange raises
:class:`~token_middleware.core.exchange.ExchangeFailed` before anything is sent. ``forward_to=None`` (the default) means, on each call,
the ``FORWARD_TO`` of the settings that validated the current token, and outside a request
``TOKEN_MIDDLEWARE_FORWARD_TO`` as it was at :func:`instrument`. Example, in the service's
start-up code::

    from token_middleware.instrument import instrument, uninstrument
    instrumentor = instrument()        # or instrument(forward_to=["customers:8002"])
    ...
    uninstrument()      # or instrumentor.uninstrument()

The patch state (the original methods) lives on the :class:`Instrumentor` object the app owns;
the patched classes point back to it, so :func:`uninstrument` finds the active one. Only one
instrumentor can be active at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from .core.forwarding import (
    AllowlistSource,
    ForwardTo,
    HostAllowlist,
    authorization_for,
    authorization_for_async,
)

__all__ = ["Instrumentor", "active_instrumentor", "instrument", "uninstrument"]

_MARKER = "__token_middleware_instrumentor__"
_MISSING = object()

# Serialises patching and unpatching of the shared client classes (not state: a lock).
_PATCH_LOCK = threading.Lock()

_Patch = tuple[type, str, Callable[[Any, AllowlistSource], Callable[..., Any]]]


def _requests_patches() -> list[_Patch]:
    try:
        import requests
    except ImportError:
        return []
    from .requests_auth import session_proxy, strip_before_send, strip_disallowed_hop

    def prepare_request(original: Any, allow: AllowlistSource) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: requests.Session, request: requests.Request) -> Any:
            prepared = original(self, request)
            value = authorization_for(
                prepared.url or "", prepared.headers, allow.current(),
                proxy_for=lambda _: session_proxy(self, prepared),
            )
            if value is not None:
                prepared.headers["Authorization"] = value
            return prepared

        return wrapper

    def send(original: Any, allow: AllowlistSource) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: requests.Session, request: Any, **kwargs: Any) -> Any:
            strip_before_send(self, request, kwargs.get("proxies"), allow.current())
            return original(self, request, **kwargs)

        return wrapper

    def rebuild_auth(original: Any, allow: AllowlistSource) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: requests.Session, prepared_request: Any, response: Any) -> None:
            original(self, prepared_request, response)
            strip_disallowed_hop(prepared_request, allow.current())

        return wrapper

    return [
        (requests.Session, "prepare_request", prepare_request),
        (requests.Session, "send", send),
        (requests.Session, "rebuild_auth", rebuild_auth),
    ]


def _httpx_patches() -> list[_Patch]:
    try:
        import httpx
    except ImportError:
        return []
    from .httpx_auth import client_proxy, with_authorization

    def decide(client: httpx.Client, request: httpx.Request, allow: AllowlistSource) -> str | None:
        url = request.url
        return authorization_for(
            str(url), request.headers, allow.current(), proxy_for=lambda _: client_proxy(client, url)
        )

    async def decide_async(client: httpx.AsyncClient, request: httpx.Request, allow: AllowlistSource) -> str | None:
        url = request.url
        return await authorization_for_async(
            str(url), request.headers, allow.current(), proxy_for=lambda _: client_proxy(client, url)
        )

    def client_send(original: Any, allow: AllowlistSource) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> Any:
            value = decide(self, request, allow)
            if value is not None:
                request = with_authorization(request, value)
            return original(self, request, **kwargs)

        return wrapper

    def async_client_send(original: Any, allow: AllowlistSource) -> Callable[..., Any]:
        @functools.wraps(original)
        async def wrapper(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
            value = await decide_async(self, request, allow)
            if value is not None:
                request = with_authorization(request, value)
            return await original(self, request, **kwargs)

        return wrapper

    return [
        (httpx.Client, "send", client_send),
        (httpx.AsyncClient, "send", async_client_send),
    ]


def _owner(cls: type, name: str) -> Instrumentor | None:
    owner = getattr(cls.__dict__.get(name), _MARKER, None)
    return owner if isinstance(owner, Instrumentor) else None


class Instrumentor:
    """Patches requests and httpx so their calls carry the current token to ``forward_to`` hosts.

    ``forward_to`` is the allowlist (entries, a comma-separated string or a
    :class:`~token_middleware.core.forwarding.HostAllowlist`), which wins over any settings;
    ``None`` means the current settings' ``FORWARD_TO`` on each call, and outside a request
    ``TOKEN_MIDDLEWARE_FORWARD_TO`` read here. :meth:`instrument` and :meth:`uninstrument` are
    idempotent; the original methods are kept on this object.
    """

    def __init__(self, forward_to: ForwardTo | AllowlistSource = None) -> None:
        self.source = AllowlistSource(forward_to)
        self._originals: dict[tuple[type, str], object] = {}
        self._libraries: tuple[str, ...] = ()

    @property
    def forward_to(self) -> HostAllowlist:
        """The allowlist that applies to a call made now."""
        return self.source.current()

    @property
    def is_instrumented(self) -> bool:
        return bool(self._originals)

    @property
    def instrumented_libraries(self) -> tuple[str, ...]:
        """The libraries patched by this instrumentor (``"requests"``, ``"httpx"``)."""
        return self._libraries

    def instrument(self) -> Instrumentor:
        """Patch every importable client library; a no-op if this instrumentor already did.

        Raises ``RuntimeError`` if another instrumentor is active.
        """
        with _PATCH_LOCK:
            if self._originals:
                return self
            groups = {"requests": _requests_patches(), "httpx": _httpx_patches()}
            for patches in groups.values():
                for cls, name, _ in patches:
                    owner = _owner(cls, name)
                    if owner is not None:
                        raise RuntimeError(
                            f"{cls.__module__}.{cls.__qualname__}.{name} is already instrumented "
                            f"by {owner!r}; uninstrument it first"
                        )
            for patches in groups.values():
                for cls, name, make_wrapper in patches:
                    self._originals[(cls, name)] = cls.__dict__.get(name, _MISSING)
                    wrapper = make_wrapper(getattr(cls, name), self.source)
                    setattr(wrapper, _MARKER, self)
                    setattr(cls, name, wrapper)
            self._libraries = tuple(lib for lib, patches in groups.items() if patches)
            return self

    def uninstrument(self) -> None:
        """Put back exactly the methods :meth:`instrument` replaced; a no-op if not instrumented.

        Raises ``RuntimeError`` (and changes nothing) if another tool has since patched the same
        methods on top of ours: undo that one first.
        """
        with _PATCH_LOCK:
            for cls, name in self._originals:
                if _owner(cls, name) is not self:
                    raise RuntimeError(
                        f"{cls.__module__}.{cls.__qualname__}.{name} was patched again after "
                        "token-middleware instrumented it; undo that patch first"
                    )
            for (cls, name), original in self._originals.items():
                if original is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._originals.clear()
            self._libraries = ()

    def __repr__(self) -> str:
        state = "on" if self._originals else "off"
        return f"<Instrumentor {state} forward_to={self.source.describe()}>"


def active_instrumentor() -> Instrumentor | None:
    """The instrumentor whose patches are in place, if any."""
    for patches in (_requests_patches(), _httpx_patches()):
        for cls, name, _ in patches:
            owner = _owner(cls, name)
            if owner is not None:
                return owner
    return None


def instrument(forward_to: ForwardTo | AllowlistSource = None) -> Instrumentor:
    """Turn automatic injection on, with a new :class:`Instrumentor`; returns it.

    Idempotent: if an instrumentor with the same allowlist is active, that one is returned.
    ``RuntimeError`` if one with another allowlist is active (uninstrument it first).
    """
    allow = AllowlistSource(forward_to)
    active = active_instrumentor()
    if active is not None:
        if active.source == allow:
            return active
        raise RuntimeError(
            f"automatic injection is already on with another allowlist ({active!r}); "
            "call uninstrument() first"
        )
    return Instrumentor(allow).instrument()


def uninstrument(instrumentor: Instrumentor | None = None) -> None:
    """Turn automatic injection off: ``instrumentor``'s, or the active one's. A no-op if off."""
    target = instrumentor if instrumentor is not None else active_instrumentor()
    if target is not None:
        target.uninstrument()
