"""Test kit: a local token issuer and helpers for testing your own protected views.

Trusted: nothing leaves the machine. :func:`create_issuer` generates a fresh signing key, writes
its public half as a JWKS file, and points the settings at that file (``PUBLIC_KEYS``), so the
service under test validates real signed tokens without any network. The pytest plugin
(:mod:`token_middleware.testing.pytest_plugin`, registered through the ``pytest11`` entry point)
wraps this module in fixtures: ``token_issuer``, ``make_token`` and ``introspection_endpoint``.

For tokens from elsewhere: :class:`~token_middleware.testing.servers.LoopbackJWKS` serves keys
over loopback HTTP (with discovery), :class:`~token_middleware.testing.servers.LoopbackIntrospection`
is an RFC 7662 endpoint for opaque tokens, and :func:`~token_middleware.testing.signing.sign_exact`
signs a token under exactly the header you give (no ``typ``, as Okta's and Cognito's have none).

This module imports no web framework at import time; the Django helpers import Django only when
called.

    issuer = create_issuer(tmp_path, audience="orders-service")
    configure_flask(app, issuer)              # before TokenAuth().init_app(app)
    token = issuer.mint(sub="alice", scopes=["orders:read"])
    client.get("/orders", headers=bearer(token))
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.issuer import SigningKey, TokenIssuer, jwks_document
from ..core.token import act_claim
from ..core.settings import PREFIX
from .servers import LoopbackIntrospection, LoopbackJWKS
from .signing import sign_exact

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER_URL",
    "LocalIssuer",
    "LoopbackIntrospection",
    "LoopbackJWKS",
    "bearer",
    "configure_flask",
    "create_issuer",
    "django_settings",
    "override_django_settings",
    "sign_exact",
]

DEFAULT_ISSUER_URL = "https://issuer.test"
DEFAULT_AUDIENCE = "test-service"

# How far in the past an expired token's "exp" is: well beyond any sensible LEEWAY.
_EXPIRED_BY = 3600


@dataclass(frozen=True)
class LocalIssuer:
    """A token issuer for tests, with its JWKS written to ``jwks_path``.

    ``other_key`` is a second key that is *not* in the JWKS: tokens signed with it
    (``mint(unknown_key=True)``) must be refused.
    """

    url: str
    audience: str
    key: SigningKey
    other_key: SigningKey
    jwks_path: Path

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings NAMEs pointing a service at this issuer; ``overrides`` add or replace NAMEs."""
        return {
            "ISSUER": self.url,
            "AUDIENCE": self.audience,
            "PUBLIC_KEYS": str(self.jwks_path),
            **overrides,
        }

    def flask_config(self, **overrides: Any) -> dict[str, Any]:
        """The same settings as ``app.config`` keys (``TOKEN_MIDDLEWARE_ISSUER`` …)."""
        return {PREFIX + name: value for name, value in self.settings(**overrides).items()}

    def mint(
        self,
        sub: str = "alice",
        scopes: Iterable[str] = (),
        *,
        audience: str | Sequence[str] | None = None,
        client_id: str = "test-client",
        ttl: int | None = None,
        expired: bool = False,
        not_yet_valid: bool = False,
        issuer: str | None = None,
        typ: str | None = None,
        alg: str | None = None,
        unknown_key: bool = False,
        headers: Mapping[str, Any] | None = None,
        act: str | Sequence[str] | Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed access token; every variant a test needs is one argument away.

        ``audience`` (default: this issuer's), ``expired=True``, ``not_yet_valid=True``,
        ``issuer="https://other.example"`` (the ``iss`` claim), ``typ="JWT"`` (the header),
        ``alg="none"`` / any header via ``headers``, ``unknown_key=True`` (signed by a key the
        service does not know). ``act=["orders-service", "gateway"]``: an exchanged token's actor
        chain, nearest first (nested ``act`` claims, RFC 8693 §4.1); a mapping is used as the
        claim as it is (for malformed chains). Extra ``claims`` are added; a claim set to
        ``None`` is removed.
        """
        now = int(time.time())
        extra: dict[str, Any] = dict(claims)
        if act is not None:
            extra["act"] = dict(act) if isinstance(act, Mapping) else act_claim(
                [act] if isinstance(act, str) else list(act)
            )
        if expired:
            extra.setdefault("iat", now - 2 * _EXPIRED_BY)
            extra.setdefault("exp", now - _EXPIRED_BY)
        if not_yet_valid:
            extra.setdefault("nbf", now + _EXPIRED_BY)
        if issuer is not None:
            extra["iss"] = issuer
        header: dict[str, Any] = dict(headers or {})
        if typ is not None:
            header["typ"] = typ
        if alg is not None:
            header["alg"] = alg
        key = self.other_key if unknown_key else self.key
        return TokenIssuer(self.url, key).mint(
            sub=sub,
            audience=self.audience if audience is None else audience,
            scopes=list(scopes),
            client_id=client_id,
            ttl=ttl,
            headers=header,
            **extra,
        )


def create_issuer(
    directory: str | Path,
    *,
    url: str = DEFAULT_ISSUER_URL,
    audience: str = DEFAULT_AUDIENCE,
    alg: str = "ES256",
) -> LocalIssuer:
    """A :class:`LocalIssuer` with fresh keys; its JWKS is written to ``directory/jwks.json``."""
    key = SigningKey.generate(alg)
    other = SigningKey.generate(alg)
    path = Path(directory) / "jwks.json"
    path.write_text(json.dumps(jwks_document([key])), encoding="utf-8")
    return LocalIssuer(url=url, audience=audience, key=key, other_key=other, jwks_path=path)


def bearer(token: str) -> dict[str, str]:
    """Request headers carrying ``token``: ``client.get(url, headers=bearer(token))``."""
    return {"Authorization": f"Bearer {token}"}


def configure_flask(app: Flask, issuer: LocalIssuer, **overrides: Any) -> None:
    """Point ``app.config`` at ``issuer``. Call it before ``TokenAuth().init_app(app)``."""
    app.config.update(issuer.flask_config(**overrides))


def django_settings(issuer: LocalIssuer, **overrides: Any) -> dict[str, Any]:
    """The value for Django's ``TOKEN_MIDDLEWARE`` setting, pointing at ``issuer``."""
    return issuer.settings(**overrides)


def override_django_settings(issuer: LocalIssuer, **overrides: Any) -> Any:
    """``override_settings(TOKEN_MIDDLEWARE=…)`` for ``issuer``: a context manager or decorator."""
    from django.test import override_settings

    return override_settings(TOKEN_MIDDLEWARE=django_settings(issuer, **overrides))
