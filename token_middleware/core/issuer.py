"""Minting RFC 9068 access tokens: the gateway's half of the pattern (also the test kit's and the CLI's).

Trusted: the private key handed in, and the claims the caller (the gateway, after it has
authenticated the client) decides on. Private keys never leave this object except through
:meth:`SigningKey.private_pem`, which the gateway's key store writes with mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import _jose, b64url
from .errors import ConfigurationError

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("thumbprints are defined here for RSA and EC keys only")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url.encode(hashlib.sha256(canonical.encode()).digest())


class SigningKey:
    """A private signing key with its ``kid`` (the RFC 7638 thumbprint unless given)."""

    def __init__(self, private_pem: bytes, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self._pem = private_pem
        self._key = _jose.build_signing_key(private_pem, alg)
        jwk = _jose.public_jwk(self._key)
        self.kid = kid or jwk_thumbprint(jwk)
        self._public_jwk = {**jwk, "kid": self.kid, "alg": alg, "use": "sig"}

    @classmethod
    def generate(cls, alg: str = "ES256", kid: str | None = None) -> SigningKey:
        """A fresh key: EC on the curve ``alg`` needs, or RSA-2048 for RS*."""
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if alg in _CURVES:
            curve: Any = _CURVES[alg]
            private = ec.generate_private_key(curve())
        elif alg in ("RS256", "RS384", "RS512"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ConfigurationError(f"cannot generate a key for {alg!r}; use ES256 or RS256")
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(pem, alg, kid)

    @classmethod
    def from_pem(cls, pem: bytes | str, alg: str, kid: str | None = None) -> SigningKey:
        return cls(pem.encode() if isinstance(pem, str) else pem, alg, kid)

    def private_pem(self) -> bytes:
        return self._pem

    def public_pem(self) -> bytes:
        private = serialization.load_pem_private_key(self._pem, password=None)
        return private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public_jwk)

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """A compact JWS; ``kid`` is set unless ``headers`` overrides it."""
        return _jose.sign(claims, {"kid": self.kid, **(headers or {})}, self._key, self.alg)

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


def jwks_document(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """A JWKS of the public halves of ``keys``."""
    return {"keys": [k.public_jwk() for k in keys]}


class TokenIssuer:
    """Mints RFC 9068 access tokens (``typ: at+jwt``) signed with one :class:`SigningKey`."""

    def __init__(
        self,
        issuer: str,
        key: SigningKey,
        *,
        ttl: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.key = key
        self.ttl = ttl
        self._clock = clock

    def claims(
        self,
        *,
        sub: str,
        audience: str | Sequence[str],
        scopes: Iterable[str] = (),
        client_id: str = "gateway",
        ttl: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(self._clock())
        aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": client_id,
            "iat": now,
            "exp": now + (self.ttl if ttl is None else ttl),
            "jti": uuid.uuid4().hex,
        }
        scope_list = list(scopes)
        if scope_list:
            claims["scope"] = " ".join(scope_list)
        for name, value in extra.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(
        self,
        *,
        sub: str,
        audience: str | Sequence[str],
        scopes: Iterable[str] = (),
        client_id: str = "gateway",
        ttl: int | None = None,
        headers: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """A signed access token. ``extra`` claims override the computed ones; ``None`` removes one."""
        claims = self.claims(sub=sub, audience=audience, scopes=scopes, client_id=client_id, ttl=ttl, **extra)
        return self.key.sign(claims, {"typ": "at+jwt", **(headers or {})})
