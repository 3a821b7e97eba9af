"""The one place python-jose is called.

Everything else in token-middleware goes through the functions here, so the cryptographic
library can be audited (or replaced) in one file. python-jose is used the fast way:

* key objects are constructed once per key set (never per request) and reused;
* signatures are checked on the exact signing input the validator already split and decoded, so
  the token is parsed once, by our own strict parser, and never again by python-jose;
* the algorithm is always the one the validator already matched against the allowlist and the
  key's type, never read from the token by this module.

Only the ``cryptography`` backend is accepted: importing this module fails loudly if python-jose
fell back to its pure-Python backends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from jose import jws
from jose.backends import ECKey, HMACKey, RSAKey
from jose.backends.base import Key
from jose.exceptions import JOSEError

from .errors import ConfigurationError

if RSAKey is None or RSAKey.__name__ != "CryptographyRSAKey" or ECKey.__name__ != "CryptographyECKey":
    raise ImportError(
        "token-middleware needs python-jose's cryptography backend: pip install 'python-jose[cryptography]'"
    )


class JoseKey(Protocol):
    """What the validator needs from a prepared key."""

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


_KEY_CLASSES: Mapping[str, Any] = {"RS": RSAKey, "ES": ECKey, "HS": HMACKey}


def build_key(material: Mapping[str, Any] | str | bytes, alg: str) -> JoseKey:
    """A prepared public (or shared-secret) key for ``alg`` from a JWK dict or PEM.

    Private key material is reduced to its public half. Raises :class:`ConfigurationError`
    when the material is not a usable key for ``alg``.
    """
    cls = _KEY_CLASSES.get(alg[:2])
    if cls is None:
        raise ConfigurationError(f"unsupported algorithm {alg!r}")
    try:
        key: JoseKey = cls(dict(material) if isinstance(material, Mapping) else material, alg)
        if alg[:2] != "HS" and not key.is_public():  # type: ignore[attr-defined]
            key = key.public_key()  # type: ignore[attr-defined]
    except (JOSEError, ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"not a usable {alg} key: {exc}") from None
    return key


def ec_curve_name(key: JoseKey) -> str | None:
    """The curve name of an EC key (``"secp256r1"``, ``"secp384r1"``, ...), ``None`` for other keys.

    Reads the ``cryptography`` key python-jose keeps in ``prepared_key``; the curve name is the
    ``cryptography`` one (SEC 2), not the JOSE one (``"P-256"``, ...).
    """
    prepared = getattr(key, "prepared_key", None)
    curve = getattr(prepared, "curve", None)
    name = getattr(curve, "name", None)
    return name if isinstance(name, str) else None


def verify(key: JoseKey, signing_input: bytes, signature: bytes) -> bool:
    """True when ``signature`` over ``signing_input`` verifies with ``key``."""
    try:
        return bool(key.verify(signing_input, signature))
    except (JOSEError, ValueError, TypeError):
        return False


def build_signing_key(private_pem: bytes | str, alg: str) -> Key:
    """A prepared private key for signing (the issuer side)."""
    cls = _KEY_CLASSES.get(alg[:2])
    if cls is None or alg[:2] == "HS":
        raise ConfigurationError(f"signing supports RS* and ES* algorithms, not {alg!r}")
    try:
        key: Key = cls(private_pem, alg)
    except (JOSEError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"not a usable {alg} private key: {exc}") from None
    if key.is_public():  # type: ignore[attr-defined]
        raise ConfigurationError("a private key is needed for signing, got a public key")
    return key


def public_jwk(signing_key: Key) -> dict[str, Any]:
    """The public JWK of a prepared private key (without ``kid``/``alg``/``use``)."""
    jwk: dict[str, Any] = signing_key.public_key().to_dict()
    jwk.pop("alg", None)
    return jwk


def sign(claims: Mapping[str, Any], headers: Mapping[str, Any], signing_key: Key, alg: str) -> str:
    """A compact JWS of ``claims`` with ``headers`` (``alg`` is set from ``alg``)."""
    payload = json.dumps(dict(claims), separators=(",", ":"))
    token: str = jws.sign(payload.encode(), signing_key, headers=dict(headers), algorithm=alg)
    return token
