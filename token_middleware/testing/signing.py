"""Signing tokens with exactly the header you give: tokens shaped like another provider's.

:meth:`LocalIssuer.mint <token_middleware.testing.LocalIssuer.mint>` always writes an RFC 9068
header (``typ: at+jwt``), and python-jose adds ``typ: JWT`` to every header it signs. A test of
an Okta or Cognito recipe needs a header with no ``typ`` at all, and an Entra one needs its
``x5t`` and ``kid``; :func:`sign_exact` signs the header and claims you pass, byte for byte
(compact JSON, in your order), with a :class:`~token_middleware.core.issuer.SigningKey`::

    token = sign_exact(key, {"kid": key.kid, "alg": "RS256"}, {"iss": …, "client_id": …})

Trusted: nothing leaves the machine; this module is for tests only. It uses ``cryptography``
directly (RSA PKCS#1 v1.5 and ECDSA with the JWS raw ``r || s`` encoding, RFC 7518 §3.3-3.4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..core import b64url
from ..core.issuer import SigningKey

__all__ = ["sign_exact"]

_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512,
}


def _segment(part: Mapping[str, Any]) -> str:
    return b64url.encode(json.dumps(dict(part), separators=(",", ":")).encode("utf-8"))


def sign_exact(key: SigningKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A compact JWS of ``claims`` under exactly ``header``, signed by ``key``.

    ``header["alg"]`` chooses the hash (``RS256``, ``ES384`` …) and must suit the key; nothing
    is added to the header, not even ``kid`` or ``typ``.
    """
    alg = header.get("alg")
    if not isinstance(alg, str) or alg[:2] not in ("RS", "ES") or alg[2:] not in _HASHES:
        raise ValueError(f"sign_exact signs RS* and ES* tokens; the header's alg is {alg!r}")
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    private = serialization.load_pem_private_key(key.private_pem(), password=None)
    digest = _HASHES[alg[2:]]()
    if alg.startswith("RS") and isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(signing_input, padding.PKCS1v15(), digest)
    elif alg.startswith("ES") and isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(digest)))
        size = (private.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        raise ValueError(f"the key ({key.alg}) cannot sign {alg}")
    return f"{signing_input.decode('ascii')}.{b64url.encode(signature)}"
