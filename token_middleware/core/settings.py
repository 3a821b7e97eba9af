"""Settings: every ``TOKEN_MIDDLEWARE_*`` name, parsed and validated once, at start-up.

The same NAMEs are read from a plain mapping (Django's ``TOKEN_MIDDLEWARE = {"ISSUER": …}``),
from prefixed keys (Flask's ``app.config["TOKEN_MIDDLEWARE_ISSUER"]``) or from the environment
(``TOKEN_MIDDLEWARE_ISSUER``). Lists may be given as Python sequences or comma-separated
strings; durations are seconds. ``FORWARD_TO`` entries are checked by the one host parser,
:func:`token_middleware.core.hosts.parse_entry`, so an entry that could never match stops the
app here; the parsed :class:`~token_middleware.core.hosts.HostAllowlist` is kept with the
settings (:attr:`Settings.allowlist`) for the outgoing clients.

Nothing here is trusted from a request: settings come only from the deployer. Invalid settings
raise :class:`~token_middleware.core.errors.ConfigurationError` naming the setting and the fix, so a
misconfigured service refuses to start instead of refusing every request.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .hosts import HostAllowlist

PREFIX = "TOKEN_MIDDLEWARE_"

#: Every algorithm this library can verify. ``none`` is never among them.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
SUPPORTED_ALGORITHMS = ASYMMETRIC_ALGORITHMS | SYMMETRIC_ALGORITHMS

#: Defaults, in one place (shared/DESIGN.md).
DEFAULTS: Mapping[str, Any] = {
    "JWKS_URL": None,
    "PUBLIC_KEYS": None,
    "ALGORITHMS": ("RS256", "ES256"),
    "LEEWAY": 30,
    "ACCEPTED_TYPES": ("at+jwt", "application/at+jwt"),
    "REQUIRED_CLAIMS": ("exp", "iat", "iss", "aud", "sub"),
    "SCOPE_CLAIMS": ("scope", "scp"),
    "FORWARD_TO": (),
    "JWKS_CACHE_SECONDS": 300,
    "JWKS_MIN_REFRESH_SECONDS": 30,
    "HTTP_TIMEOUT": 5.0,
    "MAX_TOKEN_BYTES": 8192,
    "ALLOW_QUERY_TOKEN": False,
    # Tokens from other identity providers (docs/identity-providers.md).
    "AUDIENCE_CLAIMS": ("aud",),
    # RFC 7662 introspection of opaque tokens (core/introspection.py).
    "INTROSPECTION_URL": None,
    "CLIENT_ID": None,
    "CLIENT_SECRET": None,
    "INTROSPECTION_REQUIRED_CLAIMS": ("exp",),
    "INTROSPECTION_CACHE_SECONDS": 60,
    # RFC 8693 token exchange for FORWARD_TO entries naming an audience (core/exchange.py).
    "TOKEN_ENDPOINT": None,
}

NAMES = ("ISSUER", "AUDIENCE", *DEFAULTS)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _as_list(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ConfigurationError(
            f"{name} must be a list of strings or a comma-separated string, got {type(value).__name__}",
            setting=name,
        )
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{name} must contain only strings", setting=name)
        item = item.strip()
        if item:
            out.append(item)
    return tuple(out)


def _as_number(name: str, value: Any, *, minimum: float, integer: bool) -> float:
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number of seconds, not a boolean", setting=name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {value!r}", setting=name) from None
    if not math.isfinite(number) or number < minimum or (integer and number != int(number)):
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"{name} must be {kind} >= {minimum:g}, got {value!r}", setting=name)
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}", setting=name)


def _check_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{name} must be an absolute http(s) URL, got {url!r}", setting=name
        )
    return url


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string", setting=name)
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _audience_claims(merged: Mapping[str, Any]) -> tuple[str, ...]:
    claims = _as_list("AUDIENCE_CLAIMS", merged["AUDIENCE_CLAIMS"])
    if not claims:
        raise ConfigurationError("AUDIENCE_CLAIMS must name at least one claim, e.g. aud", setting="AUDIENCE_CLAIMS")
    required = _as_list("REQUIRED_CLAIMS", merged["REQUIRED_CLAIMS"])
    if claims != ("aud",) and not set(claims) & set(required):
        # A new setting never silently turns the audience check off for tokens without the claim.
        raise ConfigurationError(
            f"AUDIENCE_CLAIMS={','.join(claims)} but none of them is in REQUIRED_CLAIMS: tokens "
            f"without them would skip the audience check. Add {claims[0]} to REQUIRED_CLAIMS",
            setting="AUDIENCE_CLAIMS",
        )
    return claims


def _introspection(merged: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7662 settings, checked: an endpoint needs the client credential, over TLS."""
    url = _optional_text("INTROSPECTION_URL", merged["INTROSPECTION_URL"])
    client_id = _optional_text("CLIENT_ID", merged["CLIENT_ID"])
    client_secret = _optional_text("CLIENT_SECRET", merged["CLIENT_SECRET"])
    if url is not None:
        _check_url("INTROSPECTION_URL", url)
        parts = urlsplit(url)
        if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
            # RFC 7662 §4: the endpoint MUST be protected by TLS (it gets tokens and our secret).
            raise ConfigurationError(
                f"INTROSPECTION_URL must be an https URL (RFC 7662 §4), got {url!r}; "
                "plain http is allowed only to a loopback address",
                setting="INTROSPECTION_URL",
            )
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise ConfigurationError(
                "INTROSPECTION_URL must not carry credentials or a fragment; "
                "set CLIENT_ID and CLIENT_SECRET instead",
                setting="INTROSPECTION_URL",
            )
        if client_id is None or client_secret is None:
            missing = "CLIENT_ID" if client_id is None else "CLIENT_SECRET"
            raise ConfigurationError(
                f"INTROSPECTION_URL needs {missing}: the credential this service authenticates "
                "with at the introspection endpoint (HTTP Basic, client_secret_basic)",
                setting=missing,
            )
    return {
        "introspection_url": url,
        "client_id": client_id,
        "client_secret": client_secret,
        "introspection_required_claims": _as_list(
            "INTROSPECTION_REQUIRED_CLAIMS", merged["INTROSPECTION_REQUIRED_CLAIMS"]
        ),
        "introspection_cache_seconds": int(_as_number(
            "INTROSPECTION_CACHE_SECONDS", merged["INTROSPECTION_CACHE_SECONDS"], minimum=0, integer=True
        )),
    }


def _token_endpoint(merged: Mapping[str, Any]) -> str | None:
    """``TOKEN_ENDPOINT``, checked: it gets tokens and our secret, so TLS unless on loopback."""
    url = _optional_text("TOKEN_ENDPOINT", merged["TOKEN_ENDPOINT"])
    if url is not None:
        check_endpoint_url("TOKEN_ENDPOINT", url)
    return url


def check_endpoint_url(name: str, url: str) -> str:
    """An endpoint that receives a token and the client secret: https, or http to loopback only.

    RFC 6749 §3.2: the token endpoint MUST be protected by TLS. No userinfo, no fragment.
    """
    _check_url(name, url)
    parts = urlsplit(url)
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        raise ConfigurationError(
            f"{name} must be an https URL (RFC 6749 §3.2), got {url!r}; plain http is allowed "
            "only to a loopback address",
            setting=name,
        )
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ConfigurationError(
            f"{name} must not carry credentials or a fragment; set CLIENT_ID and CLIENT_SECRET "
            "instead",
            setting=name,
        )
    return url


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with :meth:`from_mapping`, :meth:`from_env` or :meth:`from_prefixed`.

    Frozen: an app's settings never change while it runs. ``forward_to`` holds the normalised
    ``FORWARD_TO`` entries and :attr:`allowlist` the same entries parsed, both set once, at
    construction.
    """

    issuers: tuple[str, ...]
    audience: str
    jwks_url: str | None
    public_keys: str | None
    algorithms: tuple[str, ...]
    leeway: int
    accepted_types: tuple[str, ...]
    required_claims: tuple[str, ...]
    scope_claims: tuple[str, ...]
    forward_to: tuple[str, ...]
    jwks_cache_seconds: int
    jwks_min_refresh_seconds: int
    http_timeout: float
    max_token_bytes: int
    allow_query_token: bool
    audience_claims: tuple[str, ...] = ("aud",)
    introspection_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)  # never in repr or logs
    introspection_required_claims: tuple[str, ...] = ("exp",)
    introspection_cache_seconds: int = 60
    token_endpoint: str | None = None

    def __post_init__(self) -> None:
        # FORWARD_TO is parsed here, once per Settings object, by the one host parser: a bad
        # entry raises ConfigurationError at start-up. The allowlist is not a field (equality,
        # repr and as_mapping ignore it); outgoing calls read it without parsing again.
        allowlist = HostAllowlist(self.forward_to)
        object.__setattr__(self, "forward_to", allowlist.entries)
        object.__setattr__(self, "_allowlist", allowlist)
        if allowlist.audiences:
            self._check_exchange(allowlist)

    def _check_exchange(self, allowlist: HostAllowlist) -> None:
        """An entry naming an audience needs a credential and a token endpoint, at start-up."""
        entry = next(e for e in allowlist.entries if "=" in e)
        audience = entry.partition("=")[2]
        if self.client_id is None or self.client_secret is None:
            missing = "CLIENT_ID" if self.client_id is None else "CLIENT_SECRET"
            raise ConfigurationError(
                f"FORWARD_TO entry {entry!r} exchanges the token for {audience!r}, which needs "
                "this service's own credential at the token endpoint: set CLIENT_ID and "
                "CLIENT_SECRET (TOKEN_MIDDLEWARE_CLIENT_ID, TOKEN_MIDDLEWARE_CLIENT_SECRET), or "
                f"drop '={audience}' to forward the token as it is",
                setting=missing,
            )
        if self.token_endpoint is None:
            for iss in self.issuers:
                parts = urlsplit(iss)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ConfigurationError(
                        f"FORWARD_TO entry {entry!r} exchanges the token, and the token endpoint "
                        f"cannot be discovered from the issuer {iss!r} (not an http(s) URL): "
                        "set TOKEN_ENDPOINT",
                        setting="TOKEN_ENDPOINT",
                    )

    @property
    def allowlist(self) -> HostAllowlist:
        """The ``FORWARD_TO`` hosts as a :class:`~token_middleware.core.hosts.HostAllowlist`."""
        allowlist: HostAllowlist = self.__dict__["_allowlist"]
        return allowlist

    @property
    def realm(self) -> str:
        """The realm of the ``WWW-Authenticate`` challenge: this service's audience."""
        return self.audience

    @property
    def issuer(self) -> str:
        """The first (usually only) trusted issuer."""
        return self.issuers[0]

    @property
    def uses_symmetric_keys(self) -> bool:
        return all(alg in SYMMETRIC_ALGORITHMS for alg in self.algorithms)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping of NAMEs (``{"ISSUER": …, "AUDIENCE": …}``)."""
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            raise ConfigurationError(
                f"unknown setting {unknown[0]!r}; known settings are: {', '.join(NAMES)}",
                setting=unknown[0],
            )
        merged = {**DEFAULTS, **{k: v for k, v in values.items() if v is not None}}

        issuers = _as_list("ISSUER", merged.get("ISSUER"))
        if not issuers:
            raise ConfigurationError(
                "ISSUER is required: set TOKEN_MIDDLEWARE_ISSUER (or ISSUER in the settings) "
                "to the exact 'iss' of the tokens you accept, e.g. https://gateway.example",
                setting="ISSUER",
            )
        audience = merged.get("AUDIENCE")
        if not isinstance(audience, str) or not audience.strip():
            raise ConfigurationError(
                "AUDIENCE is required: set TOKEN_MIDDLEWARE_AUDIENCE (or AUDIENCE in the settings) "
                "to this service's audience, e.g. orders-service",
                setting="AUDIENCE",
            )

        algorithms = _as_list("ALGORITHMS", merged["ALGORITHMS"])
        if not algorithms:
            raise ConfigurationError("ALGORITHMS must list at least one algorithm", setting="ALGORITHMS")
        for alg in algorithms:
            if alg.lower() == "none":
                raise ConfigurationError(
                    "ALGORITHMS must not contain 'none': unsigned tokens are never accepted",
                    setting="ALGORITHMS",
                )
            if alg not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(
                    f"unsupported algorithm {alg!r} in ALGORITHMS; "
                    f"choose from {', '.join(sorted(SUPPORTED_ALGORITHMS))}",
                    setting="ALGORITHMS",
                )
        symmetric = [a for a in algorithms if a in SYMMETRIC_ALGORITHMS]
        if symmetric and len(symmetric) != len(algorithms):
            raise ConfigurationError(
                f"ALGORITHMS mixes {', '.join(symmetric)} with asymmetric algorithms: an HMAC "
                "secret beside public keys allows key-confusion attacks (RFC 8725 §2.1). "
                "Remove the HS* entries.",
                setting="ALGORITHMS",
            )

        jwks_url = merged.get("JWKS_URL") or None
        public_keys = merged.get("PUBLIC_KEYS") or None
        if jwks_url is not None:
            if not isinstance(jwks_url, str):
                raise ConfigurationError("JWKS_URL must be a URL string", setting="JWKS_URL")
            _check_url("JWKS_URL", jwks_url)
        if public_keys is not None:
            public_keys = os.fspath(public_keys)
            if jwks_url is not None:
                raise ConfigurationError(
                    "set either JWKS_URL or PUBLIC_KEYS, not both", setting="PUBLIC_KEYS"
                )
            if not os.path.isfile(public_keys):
                raise ConfigurationError(
                    f"PUBLIC_KEYS file not found: {public_keys!r}; point it at a PEM, JWK or JWKS file",
                    setting="PUBLIC_KEYS",
                )
        if symmetric and public_keys is None:
            raise ConfigurationError(
                "HS* algorithms need a shared secret in a PUBLIC_KEYS file (a JWK with kty 'oct'); "
                "secrets are never fetched over HTTP",
                setting="ALGORITHMS",
            )
        if jwks_url is None and public_keys is None:
            for iss in issuers:
                _check_url("ISSUER", iss)  # discovery needs an http(s) issuer

        accepted_types = _as_list("ACCEPTED_TYPES", merged["ACCEPTED_TYPES"])
        if not accepted_types:
            raise ConfigurationError(
                "ACCEPTED_TYPES must list at least one 'typ' value, e.g. at+jwt",
                setting="ACCEPTED_TYPES",
            )
        scope_claims = _as_list("SCOPE_CLAIMS", merged["SCOPE_CLAIMS"])
        min_refresh = int(_as_number("JWKS_MIN_REFRESH_SECONDS", merged["JWKS_MIN_REFRESH_SECONDS"], minimum=0, integer=True))
        return cls(
            issuers=issuers,
            audience=audience.strip(),
            jwks_url=jwks_url,
            public_keys=public_keys,
            algorithms=algorithms,
            leeway=int(_as_number("LEEWAY", merged["LEEWAY"], minimum=0, integer=True)),
            accepted_types=tuple(t.lower() for t in accepted_types),
            required_claims=_as_list("REQUIRED_CLAIMS", merged["REQUIRED_CLAIMS"]),
            scope_claims=scope_claims,
            forward_to=_as_list("FORWARD_TO", merged["FORWARD_TO"]),  # parsed in __post_init__
            jwks_cache_seconds=int(_as_number("JWKS_CACHE_SECONDS", merged["JWKS_CACHE_SECONDS"], minimum=0, integer=True)),
            jwks_min_refresh_seconds=min_refresh,
            http_timeout=_as_number("HTTP_TIMEOUT", merged["HTTP_TIMEOUT"], minimum=0.001, integer=False),
            max_token_bytes=int(_as_number("MAX_TOKEN_BYTES", merged["MAX_TOKEN_BYTES"], minimum=64, integer=True)),
            allow_query_token=_as_bool("ALLOW_QUERY_TOKEN", merged["ALLOW_QUERY_TOKEN"]),
            audience_claims=_audience_claims(merged),
            **_introspection(merged),
            token_endpoint=_token_endpoint(merged),
        )

    @classmethod
    def from_prefixed(
        cls,
        values: Mapping[str, Any],
        *,
        prefix: str = PREFIX,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from ``<prefix><NAME>`` keys (Flask's ``app.config``).

        A NAME missing from ``values`` is read from ``environ`` (default: ``os.environ``) under the
        same prefixed key; pass ``environ={}`` to disable the fallback.
        """
        env = os.environ if environ is None else environ
        picked: dict[str, Any] = {}
        for name in NAMES:
            key = prefix + name
            if key in values and values[key] is not None:
                picked[name] = values[key]
            elif key in env:
                picked[name] = env[key]
        return cls.from_mapping(picked)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, prefix: str = PREFIX) -> Settings:
        """Settings from ``TOKEN_MIDDLEWARE_*`` environment variables."""
        return cls.from_prefixed({}, prefix=prefix, environ=os.environ if environ is None else environ)

    def as_mapping(self) -> dict[str, Any]:
        """The settings as NAMEs (for display and for building a modified copy)."""
        out = {f.name.upper(): getattr(self, f.name) for f in fields(self)}
        out["ISSUER"] = out.pop("ISSUERS")
        return out
