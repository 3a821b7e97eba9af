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
- **An entry may name an audience:** ``host:port=audience`` (``customers:8002=customers-service``).
  Calls to that host carry a token exchanged for that audience (RFC 8693; see
  :mod:`token_middleware.core.exchange`) instead of the current token. The audience is one
  word or URI: no whitespace, control character or comma. One host (and port) has one
  meaning: listing it twice with different audiences, or with and without one, is refused.
- **A destination is what the URL really goes to.** Userinfo is ignored
  (``http://customers@evil.example/`` goes to ``evil.example``). URLs that parsers could read
  differently (whitespace, control characters, backslashes, percent-encoded hosts) and
  schemes other than ``http``/``https`` have no destination, so they never get the token.

Trusted: the entries (the deployer's settings). Not trusted: the URLs given to
:func:`destination`. This module reads no request and no token; it imports only the standard
library and :mod:`~token_middleware.core.errors`, so the settings can use it without an import
circle. Entries are parsed by :func:`parse_entry` into a :class:`HostEntry` (host, port and
audience); :meth:`HostAllowlist.entry_for` gives the entry a destination falls under.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple
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
    """One parsed ``FORWARD_TO`` entry: a normalised host, its port (``None``: the scheme's
    default) and the audience to exchange the token for (``None``: forward it as it is)."""

    host: str
    port: int | None
    audience: str | None = None

    @property
    def address(self) -> str:
        """``host`` or ``host:port``, without the audience (for logs)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port is None else f"{shown}:{self.port}"

    def __str__(self) -> str:
        return self.address if self.audience is None else f"{self.address}={self.audience}"


def _suggestion(raw: str, tail: str = "") -> str:
    """The fix for an address that is not ``host`` or ``host:port``, as the end of a message.

    ``tail`` (``"=audience"`` or ``""``) is appended to the corrected entry it suggests.
    """
    text = raw.strip()
    if "*" in text:
        return "; there are no wildcards: list each host"
    if text.count(":") > 1 and "[" not in text and "/" not in text:
        return f" (write IPv6 addresses in brackets: '[::1]:8002{tail}')"
    try:
        netloc = urlsplit(text if "://" in text else "//" + text).netloc.rpartition("@")[2]
        guess = str(parse_entry(netloc)) if netloc and netloc != text else ""
    except ValueError:  # ConfigurationError included
        guess = ""
    if guess:
        return f"; write {guess + tail!r}"
    return (
        "; write a host name or IP address, and ':port' for another port than the scheme's "
        f"default, e.g. 'customers:8002{tail}'"
    )


def _audience(raw: str, address: str, audience: str) -> str:
    """The audience of an entry ``address=audience``, checked; raises naming the fix."""
    audience = audience.strip()
    if not audience:
        raise ConfigurationError(
            f"FORWARD_TO entry {raw!r} names no audience after '='; write "
            f"'{address}=<audience>' (e.g. '{address}=customers-service') to exchange the token "
            f"for that audience, or drop the '=' to forward the token as it is",
            setting=SETTING,
        )
    if _AMBIGUOUS.search(audience) is not None or "," in audience or not audience.isprintable():
        raise ConfigurationError(
            f"FORWARD_TO entry {raw!r}: the audience after '=' must be one word or URI, without "
            "spaces, control characters or commas, e.g. 'customers:8002=customers-service'",
            setting=SETTING,
        )
    return audience


def parse_entry(raw: str) -> HostEntry:
    """``raw`` (``host`` or ``host:port``, either with ``=audience``) as a :class:`HostEntry`.

    Raises :class:`~token_middleware.core.errors.ConfigurationError` (``setting="FORWARD_TO"``)
    naming the fix for anything else.
    """
    address, sep, audience = raw.partition("=")
    tail = "=" + audience.strip() if sep and audience.strip() else ""
    entry = _parse_address(address, raw, tail)
    if not sep:
        return entry
    return entry._replace(audience=_audience(raw, entry.address, audience))


def _parse_address(address: str, raw: str, tail: str) -> HostEntry:
    entry = address.strip().lower()
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
            f"FORWARD_TO entries are 'host' or 'host:port' (either with '=audience'), with no "
            f"scheme, path, userinfo or wildcard; got {raw!r}{_suggestion(address, tail)}",
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


def _conflict(first: HostEntry, second: HostEntry) -> None:
    raise ConfigurationError(
        f"FORWARD_TO lists {second.address} twice, as {str(first)!r} and {str(second)!r}; keep "
        "one: a host gets either the token as it is, or a token exchanged for one audience",
        setting=SETTING,
    )


def _add(table: dict[Any, HostEntry], key: Any, entry: HostEntry) -> None:
    previous = table.get(key)
    if previous is not None and previous.audience != entry.audience:
        _conflict(previous, entry)
    table[key] = entry


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

    ``entries`` are ``host`` or ``host:port`` strings, either with ``=audience`` (see the module
    docstring for the exact rules). An empty allowlist permits nothing: the token is never sent.
    Invalid entries, and one host listed with two meanings, raise
    :class:`~token_middleware.core.errors.ConfigurationError` at construction.

    List only hosts that you reach over TLS (or a network you trust as much) in production: the
    allowlist permits both ``http`` and ``https`` to a listed host.
    """

    __slots__ = ("_default_port_hosts", "_host_ports", "audiences", "entries")

    entries: tuple[str, ...]
    #: The audiences that some entry exchanges the token for (empty: forwarding only).
    audiences: frozenset[str]

    def __init__(self, entries: Iterable[str] = ()) -> None:
        if isinstance(entries, str):
            raise TypeError(
                "HostAllowlist takes an iterable of entries, not a string; "
                "use HostAllowlist.parse() for a comma-separated string"
            )
        default_port_hosts: dict[str, HostEntry] = {}
        host_ports: dict[tuple[str, int], HostEntry] = {}
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
                _add(default_port_hosts, entry.host, entry)
            else:
                _add(host_ports, (entry.host, entry.port), entry)
            if str(entry) not in normalised:
                normalised.append(str(entry))
        for host, entry in default_port_hosts.items():
            for port in DEFAULT_PORTS.values():
                other = host_ports.get((host, port))
                if other is not None and other.audience != entry.audience:
                    _conflict(entry, other)
        self._default_port_hosts: Mapping[str, HostEntry] = default_port_hosts
        self._host_ports: Mapping[tuple[str, int], HostEntry] = host_ports
        self.entries = tuple(normalised)
        self.audiences = frozenset(
            e.audience for e in (*default_port_hosts.values(), *host_ports.values()) if e.audience
        )

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
        return self.entry_for(dest) is not None

    def entry_for(self, dest: Destination | None) -> HostEntry | None:
        """The entry ``dest`` falls under (its ``audience`` says whether to exchange), or ``None``."""
        if dest is None:
            return None
        scheme, host, port = dest
        entry = self._host_ports.get((host, port))
        if entry is None and port == DEFAULT_PORTS[scheme]:
            entry = self._default_port_hosts.get(host)
        return entry

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
        return hash((frozenset(self._default_port_hosts.items()), frozenset(self._host_ports.items())))

    def __repr__(self) -> str:
        return f"HostAllowlist({list(self.entries)!r})"
