"""What the gateway publishes so that services need nothing but its issuer URL.

Trusted: the configuration and the key store; nothing here reads a request. The discovery
document (OpenID Connect Discovery 1.0 §3, the subset a resource server reads) names the issuer
and where its keys are; the key set itself comes from :meth:`.keystore.KeyStore.jwks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"

#: Key sets change at rotation, discovery almost never; both may be cached by services and CDNs.
JWKS_HEADERS = {"Cache-Control": "public, max-age=60", "Access-Control-Allow-Origin": "*"}
DISCOVERY_HEADERS = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}


def discovery_document(
    issuer: str, issuer_base: str, algorithms: Sequence[str], scopes: Sequence[str],
    *, token_endpoint: str | None = None,
) -> dict[str, Any]:
    """The discovery document for ``issuer``, whose endpoints live under ``issuer_base``;
    with ``token_endpoint``, also the RFC 8693 exchange it offers (RFC 8414 §2 names)."""
    document: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": f"{issuer_base}{JWKS_PATH}",
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algorithms),
        "scopes_supported": list(scopes),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id"],
    }
    if token_endpoint is not None:
        document["token_endpoint"] = token_endpoint
        document["grant_types_supported"] = ["urn:ietf:params:oauth:grant-type:token-exchange"]
        document["token_endpoint_auth_methods_supported"] = ["client_secret_basic"]
        document["claims_supported"].append("act")
    return document
