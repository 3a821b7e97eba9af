"""The gateway's configuration: ``GATEWAY_*`` environment variables, validated once at start-up.

Everything here is trusted: it comes from the operator, never from a request. Bad values raise
:class:`~token_middleware.core.errors.ConfigurationError` with a message naming the variable and the
fix, so a gateway with a typo in its routes refuses to start instead of failing per request.

=========================== ================================================================
``GATEWAY_ISSUER``          its own issuer URL (``iss``), default ``http://127.0.0.1:8000``
``GATEWAY_ROUTES``          ``prefix=upstream`` pairs, comma-separated
``GATEWAY_AUDIENCES``       ``prefix=aud1 aud2`` pairs, comma-separated
``GATEWAY_USERS_FILE``      JSON users file (werkzeug password hashes and scopes)
``GATEWAY_KEYS_DIR``        signing keys and the session secret
``GATEWAY_TOKEN_TTL``       lifetime of minted tokens in seconds, default 300
``GATEWAY_ALG``             ``ES256`` (default) or ``RS256``
``GATEWAY_UPSTREAM_TIMEOUT`` connect and read timeout towards the services, default 10
``GATEWAY_TRUSTED_PROXIES`` IP addresses whose ``X-Forwarded-For`` is believed, default none
``GATEWAY_MAX_BODY_BYTES``  largest request body forwarded (413 beyond), default 1048576
``GATEWAY_BODY_TIMEOUT``    seconds a request body may take to arrive (408 after), default 30
``GATEWAY_CLIENTS_FILE``    JSON clients of ``POST /oauth2/token`` (token exchange); unset: none
``GATEWAY_LOGIN_NOTE``      a line of text shown on ``/login`` (the demo lists its users); unset: none
=========================== ================================================================

Example::

    config = GatewayConfig.from_env(os.environ)
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from token_middleware.core.errors import ConfigurationError

DEFAULT_ISSUER = "http://127.0.0.1:8000"
DEFAULT_ROUTES = "/orders=http://127.0.0.1:8001,/customers=http://127.0.0.1:8002"
#: One audience per route: the next hop gets its own token by exchange (``/oauth2/token``).
DEFAULT_AUDIENCES = "/orders=orders-service,/customers=customers-service"
DEFAULT_TOKEN_TTL = 300
DEFAULT_ALG = "ES256"
DEFAULT_UPSTREAM_TIMEOUT = 10.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
SUPPORTED_ALGS = ("ES256", "RS256")

#: Paths the gateway answers itself; no route prefix may shadow them.
RESERVED_PATHS = ("/.well-known", "/login", "/logout", "/app", "/app.js", "/_auth", "/healthz", "/metrics", "/oauth2")


@dataclass(frozen=True)
class Route:
    """Requests under ``prefix`` go to ``upstream`` with a token whose ``aud`` is ``audiences``."""

    prefix: str
    upstream: str
    audiences: tuple[str, ...]

    def matches(self, path: str) -> bool:
        """True when ``path`` is the prefix itself or lies below it (``/orders``, ``/orders/1``)."""
        return path == self.prefix or path.startswith(self.prefix + "/")


def route_for(routes: Iterable[Route], path: str) -> Route | None:
    """The route with the longest prefix that ``path`` lies under, or ``None``."""
    best: Route | None = None
    for route in routes:
        if route.matches(path) and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best


@dataclass(frozen=True)
class GatewayConfig:
    """Validated gateway settings; build with :meth:`from_env` or directly (tests)."""

    issuer: str
    routes: tuple[Route, ...]
    users_file: Path
    keys_dir: Path
    token_ttl: int = DEFAULT_TOKEN_TTL
    alg: str = DEFAULT_ALG
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    trusted_proxies: tuple[str, ...] = ()
    session_ttl: int = 8 * 3600
    #: Failed logins per user name and client address in ``login_window`` seconds, and for all
    #: names from one address (see :mod:`.limits`).
    login_max_failures: int = 5
    login_max_failures_per_address: int = 50
    login_window: int = 300
    #: ``GATEWAY_REDIS_URL``: keep the login failure counts in Redis, shared by every worker and
    #: replica (:class:`token_middleware.redis_store.RedisFailureStore`); ``None``: per process.
    redis_url: str | None = None
    #: Request bodies: the largest forwarded, the part kept in memory, how long one may take.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_memory_bytes: int = 64 * 1024
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_request_header_bytes: int = 64 * 1024
    key_check_interval: float = 1.0
    #: Longest time an edge proxy may cache a ``/_auth`` answer (``X-Accel-Expires``); 0: never.
    auth_cache_seconds: int = 30
    #: ``GATEWAY_CLIENTS_FILE``: the token endpoint's clients (:mod:`.issuing.exchange`); ``None``:
    #: no token endpoint.
    clients_file: Path | None = None
    #: ``GATEWAY_LOGIN_NOTE``: plain text shown above the login form (escaped; at most 500 chars).
    login_note: str = ""

    def __post_init__(self) -> None:
        _check_issuer(self.issuer)
        if not self.routes:
            raise ConfigurationError("GATEWAY_ROUTES: at least one route is needed", setting="ROUTES")
        if self.alg not in SUPPORTED_ALGS:
            raise ConfigurationError(
                f"GATEWAY_ALG: {self.alg!r} is not supported; use one of {', '.join(SUPPORTED_ALGS)}",
                setting="ALG",
            )
        if not 10 <= self.token_ttl <= 86400:
            raise ConfigurationError(
                "GATEWAY_TOKEN_TTL: must be between 10 and 86400 seconds", setting="TOKEN_TTL"
            )
        if not 0 <= self.auth_cache_seconds <= 300:
            raise ConfigurationError(
                "auth_cache_seconds: must be between 0 and 300 seconds", setting="AUTH_CACHE_SECONDS"
            )
        if not 0 < self.max_body_bytes <= 1 << 40:
            raise ConfigurationError(
                "GATEWAY_MAX_BODY_BYTES: must be a positive number of bytes", setting="MAX_BODY_BYTES"
            )
        if not 0 < self.body_timeout <= 3600:
            raise ConfigurationError(
                "GATEWAY_BODY_TIMEOUT: must be a positive number of seconds (at most 3600)",
                setting="BODY_TIMEOUT",
            )
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_address(proxy)
            except ValueError:
                raise ConfigurationError(
                    f"GATEWAY_TRUSTED_PROXIES: {proxy!r} is not an IP address; list the exact "
                    "addresses your proxies connect from, e.g. 127.0.0.1,10.0.0.5",
                    setting="TRUSTED_PROXIES",
                ) from None
        if not 0 < self.upstream_timeout <= 3600:
            raise ConfigurationError(
                "GATEWAY_UPSTREAM_TIMEOUT: must be a positive number of seconds (at most 3600)",
                setting="UPSTREAM_TIMEOUT",
            )

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` (and the ``__Host-`` prefix) when the issuer is https."""
        return self.issuer.startswith("https://")

    @property
    def issuer_base(self) -> str:
        """The issuer without a trailing slash, for building endpoint URLs."""
        return self.issuer.rstrip("/")

    def route_for(self, path: str) -> Route | None:
        """The route with the longest prefix that ``path`` lies under, or ``None``."""
        return route_for(self.routes, path)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        default_users_file: str | Path | None = None,
    ) -> GatewayConfig:
        """Read ``GATEWAY_*`` from ``environ`` (usually ``os.environ``), with the documented defaults.

        ``default_users_file`` is used when ``GATEWAY_USERS_FILE`` is unset; without either the
        gateway refuses to start, since it would have nobody to authenticate.
        """
        issuer = environ.get("GATEWAY_ISSUER", "").strip() or DEFAULT_ISSUER
        routes = parse_routes(
            environ.get("GATEWAY_ROUTES", "").strip() or DEFAULT_ROUTES,
            environ.get("GATEWAY_AUDIENCES", "").strip() or DEFAULT_AUDIENCES,
        )
        users_raw = environ.get("GATEWAY_USERS_FILE", "").strip()
        if users_raw:
            users_file = Path(users_raw).expanduser()
        elif default_users_file is not None:
            users_file = Path(default_users_file)
        else:
            raise ConfigurationError(
                "GATEWAY_USERS_FILE is not set: point it at a JSON users file "
                '({"alice": {"password_hash": "...", "scopes": ["orders:read"]}})',
                setting="USERS_FILE",
            )
        if not users_file.is_file():
            raise ConfigurationError(
                f"GATEWAY_USERS_FILE: {users_file} does not exist or is not a file",
                setting="USERS_FILE",
            )
        keys_raw = environ.get("GATEWAY_KEYS_DIR", "").strip()
        keys_dir = Path(keys_raw).expanduser() if keys_raw else default_keys_dir(environ)
        return cls(
            issuer=issuer,
            routes=routes,
            users_file=users_file,
            keys_dir=keys_dir,
            token_ttl=_int(environ, "GATEWAY_TOKEN_TTL", DEFAULT_TOKEN_TTL),
            alg=(environ.get("GATEWAY_ALG", "").strip() or DEFAULT_ALG).upper(),
            upstream_timeout=_float(environ, "GATEWAY_UPSTREAM_TIMEOUT", DEFAULT_UPSTREAM_TIMEOUT),
            trusted_proxies=tuple(
                p.strip() for p in environ.get("GATEWAY_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            max_body_bytes=_int(environ, "GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, "bytes"),
            body_timeout=_float(environ, "GATEWAY_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT),
            clients_file=_clients_file(environ),
            redis_url=environ.get("GATEWAY_REDIS_URL", "").strip() or None,
            login_note=environ.get("GATEWAY_LOGIN_NOTE", "").strip()[:500],
        )


def _clients_file(environ: Mapping[str, str]) -> Path | None:
    raw = environ.get("GATEWAY_CLIENTS_FILE", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigurationError(
            f"GATEWAY_CLIENTS_FILE: {path} does not exist or is not a file; point it at a JSON "
            'object {"<client_id>": {"secret_hash": "...", "audience": "...", "may_exchange_for": '
            '{"<target>": ["<scope>"]}}}, or unset it to turn the token endpoint off',
            setting="CLIENTS_FILE",
        )
    return path


def default_keys_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/token-middleware/gateway-keys``, else ``~/.local/state/…``, else tmp."""
    xdg = environ.get("XDG_STATE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "token-middleware" / "gateway-keys"
    home = environ.get("HOME", "").strip()
    if home and os.path.isdir(home) and os.access(home, os.W_OK):
        return Path(home) / ".local" / "state" / "token-middleware" / "gateway-keys"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"token-middleware-{uid}" / "gateway-keys"


def parse_routes(routes: str, audiences: str) -> tuple[Route, ...]:
    """Parse ``GATEWAY_ROUTES`` and ``GATEWAY_AUDIENCES`` into routes; every prefix needs both."""
    upstreams = _pairs(routes, "GATEWAY_ROUTES", "ROUTES")
    auds = _pairs(audiences, "GATEWAY_AUDIENCES", "AUDIENCES")
    for prefix in auds:
        if prefix not in upstreams:
            raise ConfigurationError(
                f"GATEWAY_AUDIENCES names {prefix!r}, which is not a prefix in GATEWAY_ROUTES",
                setting="AUDIENCES",
            )
    result = []
    for prefix, upstream in upstreams.items():
        _check_upstream(prefix, upstream)
        if prefix not in auds:
            raise ConfigurationError(
                f"GATEWAY_AUDIENCES has no audiences for {prefix!r}: add '{prefix}=<audience> ...'",
                setting="AUDIENCES",
            )
        audience_list = tuple(a for a in auds[prefix].split() if a)
        if not audience_list:
            raise ConfigurationError(
                f"GATEWAY_AUDIENCES: the audience list for {prefix!r} is empty", setting="AUDIENCES"
            )
        result.append(Route(prefix, upstream.rstrip("/"), audience_list))
    return tuple(result)


def _pairs(raw: str, name: str, setting: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        prefix, sep, value = item.partition("=")
        prefix, value = prefix.strip(), value.strip()
        if not sep or not value:
            raise ConfigurationError(
                f"{name}: {item!r} is not a 'prefix=value' pair", setting=setting
            )
        if prefix != "/":
            prefix = prefix.rstrip("/")
        if not prefix.startswith("/") or prefix == "/" or any(c in prefix for c in " ?#%\\"):
            raise ConfigurationError(
                f"{name}: prefix {prefix!r} must look like '/orders' (a path, not '/')",
                setting=setting,
            )
        if "/." in prefix:
            raise ConfigurationError(f"{name}: prefix {prefix!r} has a dot segment", setting=setting)
        for reserved in RESERVED_PATHS:
            if prefix == reserved or prefix.startswith(reserved + "/"):
                raise ConfigurationError(
                    f"{name}: prefix {prefix!r} is one of the gateway's own paths", setting=setting
                )
        if prefix in pairs:
            raise ConfigurationError(f"{name}: prefix {prefix!r} appears twice", setting=setting)
        pairs[prefix] = value
    if not pairs:
        raise ConfigurationError(f"{name}: no routes given", setting=setting)
    return pairs


def _check_issuer(issuer: str) -> None:
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(
            f"GATEWAY_ISSUER: {issuer!r} must be an http(s) URL without query or fragment, "
            "e.g. http://127.0.0.1:8000",
            setting="ISSUER",
        )


def _check_upstream(prefix: str, upstream: str) -> None:
    try:
        parts = urlsplit(upstream)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigurationError(
            f"GATEWAY_ROUTES: upstream {upstream!r} for {prefix!r} must be an http(s) URL "
            "such as http://127.0.0.1:8001",
            setting="ROUTES",
        )


def _int(environ: Mapping[str, str], name: str, default: int, unit: str = "seconds") -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: {raw!r} is not a whole number of {unit}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: {raw!r} is not a number of seconds") from None
