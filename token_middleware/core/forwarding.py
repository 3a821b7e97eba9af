"""Whether an outgoing request may carry the current token: the one decision every client makes.

A service passes the caller's access token on to its own downstream calls, but only to hosts
the deployer listed in ``FORWARD_TO``. Everything else (third-party APIs, a redirect to another
host, a typo'd port, a proxy in the middle) gets no token. requests
(:mod:`token_middleware.requests_auth`), httpx (:mod:`token_middleware.httpx_auth`) and the
opt-in instrumentation (:mod:`token_middleware.instrument`) all decide through
:func:`authorization_for` and :func:`may_carry_token`, so they follow the same rules:

- **Which allowlist.** A client given an allowlist by hand uses it, always. A client given
  none (:class:`AllowlistSource` with ``None``) uses, on each call, the ``FORWARD_TO`` of the
  settings that validated the current token, wherever they were set: environment, Flask
  ``app.config`` or Django's ``TOKEN_MIDDLEWARE``
  (:func:`~token_middleware.core.context.get_current_settings`). Where no settings are bound
  (outside a request, or a token bound by hand), it uses ``TOKEN_MIDDLEWARE_FORWARD_TO`` as it
  was when the client was built.
- **Exact host and port.** See :mod:`token_middleware.core.hosts`: ``host`` is the scheme's
  default port only, ``host:port`` that port only, no wildcards, userinfo ignored, ambiguous
  URLs never match.
- **Schemes.** Only ``http`` and ``https`` URLs can get the token. Both are allowed to a listed
  host: plain ``http`` is what services on one private network or on loopback use. In
  production, list only hosts that you reach over TLS (or over a network you trust as much).
- **No token in clear through a proxy.** When a proxy would carry a plain ``http`` call (from
  ``HTTP_PROXY``/``ALL_PROXY`` in the environment, or set on the session or client), the proxy
  would read the token: it is not attached, and a WARNING says so. A host that ``NO_PROXY``
  covers is reached directly and gets the token. ``https`` through a proxy is a ``CONNECT``
  tunnel that the proxy cannot read, so it keeps the token. Each client says which proxy it
  would use (``proxy_for``) with its own library's rules; the default,
  :func:`environment_proxy`, is the standard library's reading of the environment.
- **The caller wins.** If the outgoing request already has an ``Authorization`` header (set by
  hand or by another auth object), it is never overwritten.
- **No current token, no header.**

Trusted: the entries (they come from the deployer's settings), the current token (the validator
accepted it) and the settings bound with it. Not trusted: the destination URL, which may come
from user input or a redirect. Only the decision, the destination host and a proxy's host are
logged, on the ``token_middleware.forwarding`` logger (DEBUG; WARNING for a proxy); never the
token, the ``Authorization`` header or a proxy's credentials.

Example::

    allow = HostAllowlist(["customers:8002", "billing.internal"])
    allow.permits("http://customers:8002/customers/1")   # True
    allow.permits("http://customers:9000/")              # False: another port
"""

from __future__ import annotations

import hmac
import logging
import os
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union
from urllib.parse import urlsplit

from .context import get_current_settings, get_current_token
from .hosts import DEFAULT_PORTS, ENV_NAME, Destination, HostAllowlist, destination, display
from .token import AccessToken

__all__ = [
    "DEFAULT_PORTS",
    "ENV_NAME",
    "AllowlistSource",
    "ForwardTo",
    "HostAllowlist",
    "ProxyLookup",
    "authorization_for",
    "bearer_value",
    "carries_current_token",
    "destination",
    "environment_has_proxies",
    "environment_proxy",
    "may_carry_token",
    "proxy_display",
]

logger = logging.getLogger("token_middleware.forwarding")

#: What a client's ``forward_to`` argument may be: entries, a comma-separated string, an
#: allowlist, or ``None`` for the current settings' ``FORWARD_TO``.
ForwardTo = Union[Iterable[str], HostAllowlist, None]

#: ``proxy_for(url)``: the URL of the proxy the client would send ``url`` through, or ``None``
#: when it connects directly.
ProxyLookup = Callable[[str], Union[str, None]]


class AllowlistSource:
    """Where an outgoing client finds its allowlist, call by call (see the module docstring).

    ``forward_to`` given: that allowlist on every call, whatever the settings. ``None``: the
    allowlist of the settings that validated the current token
    (:attr:`~token_middleware.core.settings.Settings.allowlist`, parsed once per settings
    object), or, where no settings are bound, ``TOKEN_MIDDLEWARE_FORWARD_TO`` read now.
    """

    __slots__ = ("environment", "explicit")

    def __init__(self, forward_to: ForwardTo | AllowlistSource = None) -> None:
        if isinstance(forward_to, AllowlistSource):
            self.explicit: HostAllowlist | None = forward_to.explicit
            self.environment: HostAllowlist = forward_to.environment
        elif forward_to is None:
            self.explicit = None
            self.environment = HostAllowlist.from_env()
        else:
            self.explicit = HostAllowlist.coerce(forward_to)
            self.environment = self.explicit

    def current(self) -> HostAllowlist:
        """The allowlist that applies to a call made now."""
        if self.explicit is not None:
            return self.explicit
        settings = get_current_settings()
        return self.environment if settings is None else settings.allowlist

    def describe(self) -> str:
        """For reprs: the entries, or where they come from."""
        if self.explicit is not None:
            return repr(list(self.explicit.entries))
        return f"<the current settings' FORWARD_TO; outside a request {list(self.environment.entries)!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AllowlistSource):
            return NotImplemented
        return (self.explicit, self.environment) == (other.explicit, other.environment)

    def __hash__(self) -> int:
        return hash((self.explicit, self.environment))

    def __repr__(self) -> str:
        return f"AllowlistSource({self.describe()})"


def environment_has_proxies() -> bool:
    """False when the environment certainly names no proxy; cheap enough to ask on every call.

    Where the standard library reads proxies from the environment alone (not macOS or Windows,
    which have system settings), ``getproxies()`` finds nothing unless some variable whose name
    ends in ``_proxy`` (any case) is set and not empty. This checks that, and nothing else: the
    proxy itself is always found by the client library's own resolution.
    """
    if urllib.request.getproxies is not urllib.request.getproxies_environment:
        return True
    environ = os.environ
    return any(name[-6:].lower() == "_proxy" and environ[name] for name in environ)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as the standard library reads it, or ``None``.

    ``urllib.request.getproxies()`` (``<scheme>_proxy``, then ``all_proxy``; on macOS and
    Windows the system settings too) and ``urllib.request.proxy_bypass()`` for ``NO_PROXY``.
    """
    if not environment_has_proxies():
        return None
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy:
        return None
    netloc = parts.netloc.rpartition("@")[2]
    if netloc and urllib.request.proxy_bypass(netloc):
        return None
    return proxy


def proxy_display(proxy: str) -> str:
    """``host:port`` of a proxy URL, for logs: never its credentials."""
    try:
        parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<unreadable proxy URL>"
    if not host:
        return "<unreadable proxy URL>"
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def may_carry_token(url: str, allowlist: HostAllowlist, *, proxy_for: ProxyLookup | None) -> bool:
    """True when a request for ``url`` may carry the token: the destination rules alone.

    The destination must be in ``allowlist``, and a plain ``http`` call must not go through a
    proxy (``proxy_for(url)``, asked only then; ``None`` means the client connects directly).
    A refusal is logged with the host: at DEBUG when the host is not listed, at WARNING for a
    proxy, with the proxy's host.
    """
    return _may_carry(url, destination(url), allowlist, proxy_for)


def _may_carry(
    url: str, dest: Destination | None, allowlist: HostAllowlist, proxy_for: ProxyLookup | None
) -> bool:
    if dest is None or not allowlist.permits_destination(dest):
        logger.debug("token not forwarded to %s: not in FORWARD_TO", display(dest))
        return False
    if dest[0] == "http" and proxy_for is not None:
        proxy = proxy_for(url)
        if proxy:
            logger.warning(
                "token not forwarded to %s: this plain-http call would go through the proxy %s, "
                "which would read it; call the host over https, or exempt it from the proxy "
                "(NO_PROXY)",
                display(dest),
                proxy_display(proxy),
            )
            return False
    return True


def bearer_value(token: AccessToken) -> str:
    """The ``Authorization`` value that carries ``token`` (RFC 6750 §2.1)."""
    return f"Bearer {token.raw}"


def _has_authorization(headers: Mapping[Any, Any] | None) -> bool:
    if headers is None:
        return False
    for name in headers.keys():
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(name, str) and name.lower() == "authorization":
            return True
    return False


def authorization_for(
    url: str,
    existing_headers: Mapping[Any, Any] | None,
    allowlist: HostAllowlist,
    *,
    proxy_for: ProxyLookup | None = environment_proxy,
) -> str | None:
    """The ``Authorization`` value to add to a request for ``url``, or ``None`` to add nothing.

    ``"Bearer <current token>"`` only when there is a current token, ``existing_headers`` (any
    mapping; names compared case-insensitively) has no ``Authorization`` of its own, and
    :func:`may_carry_token` allows the destination. ``proxy_for`` says which proxy the client
    would use (default: :func:`environment_proxy`; ``None``: the client connects directly).
    Logs the decision and the destination host, never the token.
    """
    dest = destination(url)
    token = get_current_token()
    if token is None or not token.raw:
        logger.debug("no current token; nothing forwarded to %s", display(dest))
        return None
    if _has_authorization(existing_headers):
        logger.debug("Authorization set by the caller kept for %s", display(dest))
        return None
    if not _may_carry(url, dest, allowlist, proxy_for):
        return None
    logger.debug("token forwarded to %s (jti=%s)", display(dest), token.jti)
    return bearer_value(token)


def carries_current_token(value: str | bytes | None) -> bool:
    """True when the header ``value`` is the current token's ``Bearer`` credential.

    Used on redirects to remove the token from a hop whose host is not allowed, whoever put it
    there.
    """
    token = get_current_token()
    if value is None or token is None or not token.raw:
        return False
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    return hmac.compare_digest(value, bearer_value(token).encode("latin-1", "replace"))
