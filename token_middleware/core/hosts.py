"""Hosts and ``FORWARD_TO``: the one host normaliser, entry parser and allowlist.

Everything that compares hosts goes through :func:`normalise_host`: the ``FORWARD_TO``
entries when the settings are validated (:class:`~token_middleware.core.settings.Settings`)
and the destination of every outgoing call (:func:`destination`). There is no looser second
parser anywhere, so an entry that could never match is refused at start-up, with a message
that names the fix.

- **An entry is ``host`` or ``host:port``.** ``host`` stands for the scheme's default port
  only (80 for ``http``, 443 for ``https``); ``host:port`` for that port only. Hosts are
  lower-cased; IP literals are made canonical; IPv6 addresses are written in brackets
  (``[::1]:8002``). No scheme, path, userinfo or wildcard: ``api.example`` never matches
  ``evil.api.example``.
- **A destination is what the URL really goes to.** Userinfo is ignored
  (``http://customers@evil.example/`` goes to ``evil.example``). URLs that parsers could read
  differently (whitespace, control characters, backslashes, percent-encoded hosts) and
  schemes other than ``http``/``https`` have no destination, so they never get the token.

Trusted: the entries (the deployer's settings). Not trusted: the URLs given to
:func:`destination`. This module reads no request and no token; it imports only the standard
library and :mod:`~token_middleware.core.errors`, so the settings can use it without an import
circle. Entries are parsed by :func:`parse_entry` into a :class:`HostEntry`; a later form of
entry would add a field there and leave the host rules alone.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_PORTS",
    "ENV_NAME",
    "Destination",
    "HostAllowlist",
    "HostEntry",
    "destination",
    "display",
    "normalise_host",
    "parse_entry",
]

#: The environment variable read when no allowlist is given.
ENV_NAME = "TOKEN_MIDDLEWARE_FORWARD_TO"

#: Schemes that may carry the token, with the port an entry without a port stands for.
DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}

SETTING = "FORWARD_TO"

_HOSTNAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?$")
_ENTRY_IPV6 = re.compile(r"^\[([^\]]+)\](?::([0-9]+))?$")
_ENTRY_HOST = re.compile(r"^([^:\[\]]+)(?::([0-9]+))?$")
# Anything a URL parser might read differently from another: whitespace, controls, backslash.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")

Destination = tuple[str, str, int]


def normalise_host(host: str) -> str | None:
    """Lower-case ``host``, canonicalise IP literals; ``None`` when it is not a plain host."""
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOSTNAME.match(host) is None:
        return None
    return host


class HostEntry(NamedTuple):
    """One parsed ``FORWARD_TO`` entry: a normalised host and its port (``None``: default)."""

    host: str
    port: int | None

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port is None else f"{shown}:{self.port}"


def _suggestion(raw: str) -> str:
    """The fix for an entry that is not ``host`` or ``host:port``, as the end of a message."""
    text = raw.strip()
    if "*" in text:
        return "; there are no wildcards: list each host"
    if text.count(":") > 1 and "[" not in text and "/" not in text:
        return " (write IPv6 addresses in brackets: '[::1]:8002')"
    try:
        netloc = urlsplit(text if "://" in text else "//" + text).netloc.rpartition("@")[2]
        guess = str(parse_entry(netloc)) if netloc and netloc != text else ""
    except ValueError:  # ConfigurationError included
        guess = ""
    if guess:
        return f"; write {guess!r}"
    return (
        "; write a host name or IP address, and ':port' for another port than the scheme's "
        "default, e.g. 'customers:8002'"
    )


def parse_entry(raw: str) -> HostEntry:
    """``raw`` (``host`` or ``host:port``) as a :class:`HostEntry`.

    Raises :class:`~token_middleware.core.errors.ConfigurationError` (``setting="FORWARD_TO"``)
    naming the fix for anything else.
    """
    entry = raw.strip().lower()
    match = _ENTRY_IPV6.match(entry)
    if match is not None:
        try:
            host: str | None = str(ipaddress.IPv6Address(match.group(1)))
        except ValueError:
            host = None
    else:
        match = _ENTRY_HOST.match(entry)
        host = normalise_host(match.group(1)) if match is not None else None
    if match is None or host is None:
        raise ConfigurationError(
            f"FORWARD_TO entries are 'host' or 'host:port', with no scheme, path, userinfo or "
            f"wildcard; got {raw!r}{_suggestion(raw)}",
            setting=SETTING,
        )
    port_text = match.group(2)
    if port_text is None:
        return HostEntry(host, None)
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"FORWARD_TO entry {raw!r} has a port outside 1-65535", setting=SETTING
        )
    return HostEntry(host, port)


def destination(url: str) -> Destination | None:
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
    host = normalise_host(parts.hostname)
    if host is None:
        return None
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


def display(dest: Destination | None) -> str:
    """``host:port`` of a destination, for logs (never a path, query or userinfo)."""
    if dest is None:
        return "<no http(s) host>"
    _, host, port = dest
    return str(HostEntry(host, port))


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
                    setting=SETTING,
                )
            if not raw.strip():
                continue
            entry = parse_entry(raw)
            if entry.port is None:
                default_port_hosts.add(entry.host)
            else:
                host_ports.add((entry.host, entry.port))
            if str(entry) not in normalised:
                normalised.append(str(entry))
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
        """The allowlist for a ``forward_to`` argument.

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
        return self.permits_destination(destination(url))

    def permits_destination(self, dest: Destination | None) -> bool:
        """True when ``dest`` (from :func:`destination`) is listed."""
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
