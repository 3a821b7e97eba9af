"""The ``FORWARD_TO`` host allowlist, and the one decision every outgoing client makes.

A service passes the caller's access token on to its own downstream calls, but only to hosts
the deployer listed in ``TOKEN_MIDDLEWARE_FORWARD_TO``. Everything else (third-party APIs, a
redirect to another host, a typo'd port) gets no token. requests
(:mod:`token_middleware.requests_auth`), httpx (:mod:`token_middleware.httpx_auth`) and the
opt-in instrumentation (:mod:`token_middleware.instrument`) all decide through
:func:`authorization_for`, so they follow the same rules:

- **Exact host and port.** An entry ``host`` matches that host on the scheme's default port
  only (80 for ``http``, 443 for ``https``); ``host:port`` matches that port only. Hosts compare
  case-insensitively; IPv6 addresses are written in brackets (``[::1]:8002``). There are no
  wildcards and no suffix matching: ``api.example`` does not match ``evil.api.example``.
- **Userinfo is ignored.** ``http://customers@evil.example/`` goes to ``evil.example``, and is
  matched as such. URLs that parsers could read differently (whitespace, control characters,
  backslashes, percent-encoded hosts) never get the token.
- **Schemes.** Only ``http`` and ``https`` URLs can get the token. Both are allowed to a listed
  host: the list is explicit, and plain ``http`` is what services on one private network or on
  loopback use. In production, list only hosts that you reach over TLS (or over a network you
  trust as much): a bearer token sent in clear is readable by anyone on the path.
- **The caller wins.** If the outgoing request already has an ``Authorization`` header (set by
  hand or by another auth object), it is never overwritten.
- **No current token, no header.**

Trusted: the entries (they come from the deployer's settings) and the current token (the
validator accepted it). Not trusted: the destination URL, which may come from user input or a
redirect. Only the decision and the destination host are logged, at DEBUG, on the
``token_middleware.core.forwarding`` logger; the token and the ``Authorization`` header never are.

Example::

    allow = HostAllowlist(["customers:8002", "billing.internal"])
    allow.permits("http://customers:8002/customers/1")   # True
    allow.permits("http://customers:9000/")              # False: another port
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from .context import get_current_token
from .errors import ConfigurationError
from .token import AccessToken

__all__ = [
    "DEFAULT_PORTS",
    "ENV_NAME",
    "HostAllowlist",
    "authorization_for",
    "bearer_value",
    "carries_current_token",
    "destination",
]

logger = logging.getLogger("token_middleware.forwarding")

#: The environment variable read when no allowlist is given.
ENV_NAME = "TOKEN_MIDDLEWARE_FORWARD_TO"

#: Schemes that may carry the token, with the port an entry without a port stands for.
DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}

_HOSTNAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?$")
_ENTRY_IPV6 = re.compile(r"^\[([^\]]+)\](?::([0-9]+))?$")
_ENTRY_HOST = re.compile(r"^([^:\[\]]+)(?::([0-9]+))?$")
# Anything a URL parser might read differently from another: whitespace, controls, backslash.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")


def _normalise_host(host: str) -> str | None:
    """Lower-case ``host``, canonicalise IP literals; ``None`` when it is not a plain host."""
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOSTNAME.match(host) is None:
        return None
    return host


def _port(text: str | None, entry: str) -> int | None:
    if text is None:
        return None
    port = int(text)
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"FORWARD_TO entry {entry!r} has a port outside 1-65535", setting="FORWARD_TO"
        )
    return port


def _parse_entry(raw: str) -> tuple[str, int | None]:
    entry = raw.strip().lower()
    match = _ENTRY_IPV6.match(entry)
    if match is not None:
        try:
            host: str | None = str(ipaddress.IPv6Address(match.group(1)))
        except ValueError:
            host = None
    else:
        match = _ENTRY_HOST.match(entry)
        host = _normalise_host(match.group(1)) if match is not None else None
    if match is None or host is None:
        hint = " (write IPv6 addresses in brackets: '[::1]:8002')" if entry.count(":") > 1 else ""
        raise ConfigurationError(
            f"FORWARD_TO entries are 'host' or 'host:port', with no scheme, path, userinfo or "
            f"wildcard; got {raw!r}{hint}",
            setting="FORWARD_TO",
        )
    return host, _port(match.group(2), raw)


def destination(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` that ``url`` really goes to, or ``None`` if it cannot get a token.

    ``None`` for schemes other than http/https, missing or malformed hosts and ports, and URLs
    that different parsers could read differently. The host is lower-case without userinfo or
    brackets; IP literals are canonical; the port is explicit or the scheme's default.
    """
    if _AMBIGUOUS.search(url) is not None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = _normalise_host(parts.hostname)
    if host is None:
        return None
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


def _display(dest: tuple[str, str, int] | None) -> str:
    if dest is None:
        return "<no http(s) host>"
    _, host, port = dest
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HostAllowlist:
    """The hosts that outgoing requests may carry the current token to (``FORWARD_TO``).

    ``entries`` are ``host`` or ``host:port`` strings (see the module docstring for the exact
    rules). An empty allowlist permits nothing: the token is never sent. Invalid entries raise
    :class:`~token_middleware.core.errors.ConfigurationError` at construction.

    List only hosts that you reach over TLS (or a network you trust as much) in production: the
    allowlist permits both ``http`` and ``https`` to a listed host.
    """

    __slots__ = ("_default_port_hosts", "_host_ports", "entries")

    entries: tuple[str, ...]

    def __init__(self, entries: Iterable[str] = ()) -> None:
        if isinstance(entries, str):
            raise TypeError(
                "HostAllowlist takes an iterable of entries, not a string; "
                "use HostAllowlist.parse() for a comma-separated string"
            )
        default_port_hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        normalised: list[str] = []
        for raw in entries:
            if not isinstance(raw, str):
                raise ConfigurationError(
                    f"FORWARD_TO entries must be strings, got {type(raw).__name__}",
                    setting="FORWARD_TO",
                )
            if not raw.strip():
                continue
            host, port = _parse_entry(raw)
            shown = f"[{host}]" if ":" in host else host
            if port is None:
                default_port_hosts.add(host)
            else:
                host_ports.add((host, port))
                shown = f"{shown}:{port}"
            if shown not in normalised:
                normalised.append(shown)
        self._default_port_hosts = frozenset(default_port_hosts)
        self._host_ports = frozenset(host_ports)
        self.entries = tuple(normalised)

    @classmethod
    def parse(cls, text: str) -> HostAllowlist:
        """An allowlist from a comma-separated string, as in the environment variable."""
        return cls(text.split(","))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostAllowlist:
        """``TOKEN_MIDDLEWARE_FORWARD_TO`` from ``environ`` (default ``os.environ``); unset: empty."""
        env = os.environ if environ is None else environ
        return cls.parse(env.get(ENV_NAME, ""))

    @classmethod
    def coerce(cls, forward_to: Iterable[str] | HostAllowlist | None) -> HostAllowlist:
        """The allowlist for a client's ``forward_to`` argument.

        ``None`` reads the environment now (:meth:`from_env`); a string is comma-separated; an
        iterable of entries or an allowlist is used as given.
        """
        if forward_to is None:
            return cls.from_env()
        if isinstance(forward_to, HostAllowlist):
            return forward_to
        if isinstance(forward_to, str):
            return cls.parse(forward_to)
        return cls(forward_to)

    def permits(self, url: str) -> bool:
        """True when ``url`` is an http(s) URL whose host and port are listed."""
        return self._permits(destination(url))

    def _permits(self, dest: tuple[str, str, int] | None) -> bool:
        if dest is None:
            return False
        scheme, host, port = dest
        if (host, port) in self._host_ports:
            return True
        return port == DEFAULT_PORTS[scheme] and host in self._default_port_hosts

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HostAllowlist):
            return NotImplemented
        return (self._default_port_hosts, self._host_ports) == (
            other._default_port_hosts,
            other._host_ports,
        )

    def __hash__(self) -> int:
        return hash((self._default_port_hosts, self._host_ports))

    def __repr__(self) -> str:
        return f"HostAllowlist({list(self.entries)!r})"


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
    url: str, existing_headers: Mapping[Any, Any] | None, allowlist: HostAllowlist
) -> str | None:
    """The ``Authorization`` value to add to a request for ``url``, or ``None`` to add nothing.

    ``"Bearer <current token>"`` only when there is a current token, the destination is in
    ``allowlist``, and ``existing_headers`` (any mapping; names compared case-insensitively) has
    no ``Authorization`` of its own. Logs the decision and the destination host at DEBUG.
    """
    dest = destination(url)
    token = get_current_token()
    if token is None or not token.raw:
        logger.debug("no current token; nothing forwarded to %s", _display(dest))
        return None
    if _has_authorization(existing_headers):
        logger.debug("Authorization set by the caller kept for %s", _display(dest))
        return None
    if not allowlist._permits(dest):
        logger.debug("token not forwarded to %s: not in FORWARD_TO", _display(dest))
        return None
    logger.debug("token forwarded to %s (jti=%s)", _display(dest), token.jti)
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
