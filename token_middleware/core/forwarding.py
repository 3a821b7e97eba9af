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
- **Exchange where an entry names an audience.** A host listed as ``host:port=audience`` gets,
  instead of the current token, one exchanged for that audience (RFC 8693) by the
  :class:`~token_middleware.core.exchange.TokenExchanger` of the settings that validated the
  current token (:func:`exchanger_for`: one per settings object, so every client of an app
  shares its cache). Decided first, exchanged second: a host the rules refuse costs no
  exchange. A failed exchange raises
  :class:`~token_middleware.core.exchange.ExchangeFailed` and the call is not made; it never
  falls back to the current token. Sync clients call :func:`authorization_for`, async ones
  :func:`authorization_for_async`, which never blocks the event loop.

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
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Union
from urllib.parse import urlsplit

from .context import get_current_settings, get_current_token
from .exchange import ExchangeUnavailable, TokenExchanger
from .hosts import DEFAULT_PORTS, ENV_NAME, Destination, HostAllowlist, HostEntry, destination, display
from .settings import Settings
from .token import AccessToken

__all__ = [
    "DEFAULT_PORTS",
    "ENV_NAME",
    "AllowlistSource",
    "Carry",
    "ForwardTo",
    "HostAllowlist",
    "ProxyLookup",
    "authorization_for",
    "authorization_for_async",
    "bearer_value",
    "carries_current_token",
    "decide",
    "destination",
    "environment_has_proxies",
    "environment_proxy",
    "exchanger_for",
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
    return _entry_to_carry(url, destination(url), allowlist, proxy_for) is not None


def _entry_to_carry(
    url: str, dest: Destination | None, allowlist: HostAllowlist, proxy_for: ProxyLookup | None
) -> HostEntry | None:
    """The allowlist entry ``url`` falls under when it may carry a token, else ``None``."""
    entry = allowlist.entry_for(dest)
    if entry is None:
        logger.debug("token not forwarded to %s: not in FORWARD_TO", display(dest))
        return None
    if dest is not None and dest[0] == "http" and proxy_for is not None:
        proxy = proxy_for(url)
        if proxy:
            logger.warning(
                "token not forwarded to %s: this plain-http call would go through the proxy %s, "
                "which would read it; call the host over https, or exempt it from the proxy "
                "(NO_PROXY)",
                display(dest),
                proxy_display(proxy),
            )
            return None
    return entry


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


class Carry(NamedTuple):
    """What an outgoing request carries: the current ``token``, exchanged for ``audience`` first
    unless that is ``None``; ``dest`` is where the request goes (for logs)."""

    token: AccessToken
    audience: str | None
    dest: Destination | None


def decide(
    url: str,
    existing_headers: Mapping[Any, Any] | None,
    allowlist: HostAllowlist,
    *,
    proxy_for: ProxyLookup | None = environment_proxy,
) -> Carry | None:
    """Whether a request for ``url`` carries a token, and which: no I/O, no exchange yet.

    A :class:`Carry` only when there is a current token, ``existing_headers`` (any mapping;
    names compared case-insensitively) has no ``Authorization`` of its own, and
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
    entry = _entry_to_carry(url, dest, allowlist, proxy_for)
    if entry is None:
        return None
    return Carry(token, entry.audience, dest)


def authorization_for(
    url: str,
    existing_headers: Mapping[Any, Any] | None,
    allowlist: HostAllowlist,
    *,
    proxy_for: ProxyLookup | None = environment_proxy,
) -> str | None:
    """The ``Authorization`` value to add to a request for ``url``, or ``None`` to add nothing.

    ``"Bearer <current token>"`` when :func:`decide` says the request carries it; for a host
    whose entry names an audience, ``"Bearer <the token exchanged for it>"``, exchanged now if
    not cached (blocking). Raises :class:`~token_middleware.core.exchange.ExchangeFailed` when
    the exchange fails: the caller must not send the request.
    """
    carry = decide(url, existing_headers, allowlist, proxy_for=proxy_for)
    if carry is None:
        return None
    if carry.audience is None:
        logger.debug("token forwarded to %s (jti=%s)", display(carry.dest), carry.token.jti)
        return bearer_value(carry.token)
    raw = _exchanger(carry).exchange(carry.token, carry.audience)
    logger.debug("token exchanged for %r forwarded to %s (jti=%s)", carry.audience, display(carry.dest),
                 carry.token.jti)
    return f"Bearer {raw}"


async def authorization_for_async(
    url: str,
    existing_headers: Mapping[Any, Any] | None,
    allowlist: HostAllowlist,
    *,
    proxy_for: ProxyLookup | None = environment_proxy,
) -> str | None:
    """:func:`authorization_for` for async clients: a cold exchange never blocks the event loop."""
    carry = decide(url, existing_headers, allowlist, proxy_for=proxy_for)
    if carry is None:
        return None
    if carry.audience is None:
        logger.debug("token forwarded to %s (jti=%s)", display(carry.dest), carry.token.jti)
        return bearer_value(carry.token)
    raw = await _exchanger(carry).exchange_async(carry.token, carry.audience)
    logger.debug("token exchanged for %r forwarded to %s (jti=%s)", carry.audience, display(carry.dest),
                 carry.token.jti)
    return f"Bearer {raw}"


# Serialises creating an app's exchanger (not state: a lock).
_EXCHANGER_LOCK = threading.Lock()


def exchanger_for(settings: Settings) -> TokenExchanger:
    """The :class:`~token_middleware.core.exchange.TokenExchanger` of ``settings``, made once.

    It is kept with the settings object (the app owns both), so every client of the app shares
    one cache and one in-flight table. ``ConfigurationError`` if the settings have no
    ``CLIENT_ID``/``CLIENT_SECRET``.
    """
    found: TokenExchanger | None = settings.__dict__.get("_exchanger")
    if found is None:
        with _EXCHANGER_LOCK:
            found = settings.__dict__.get("_exchanger")
            if found is None:
                found = TokenExchanger.from_settings(settings, proxy_for=environment_proxy)
                object.__setattr__(settings, "_exchanger", found)
    return found


def _exchanger(carry: Carry) -> TokenExchanger:
    settings = get_current_settings()
    assert carry.audience is not None
    if settings is None or settings.client_id is None or settings.client_secret is None:
        logger.warning("token not exchanged for %r: no CLIENT_ID/CLIENT_SECRET", carry.audience)
        raise ExchangeUnavailable(
            f"the token could not be exchanged for {carry.audience!r}", audience=carry.audience,
            cause="FORWARD_TO names an audience for this host, but the settings bound with the "
                  "current token have no CLIENT_ID/CLIENT_SECRET (or no settings are bound)",
        )
    return exchanger_for(settings)


def carries_current_token(value: str | bytes | None) -> bool:
    """True when the header ``value`` is the current token's ``Bearer`` credential, or a token
    the current settings' exchanger obtained in exchange for it.

    Used on redirects and right before sending to remove the token from a hop that may not
    carry it, whoever put it there.
    """
    token = get_current_token()
    if value is None or token is None or not token.raw:
        return False
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if hmac.compare_digest(value, bearer_value(token).encode("latin-1", "replace")):
        return True
    settings = get_current_settings()
    exchanger: TokenExchanger | None = None if settings is None else settings.__dict__.get("_exchanger")
    if exchanger is None or value[:7] != b"Bearer ":
        return False
    return exchanger.issued_for(token, value[7:].decode("latin-1"))
