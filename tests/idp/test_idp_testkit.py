"""The test kit's loopback servers and exact signer, as a user's tests would use them."""

from __future__ import annotations

import json

import pytest

from token_middleware.core import b64url
from token_middleware.core.errors import InvalidType, UnknownKey
from token_middleware.core.issuer import SigningKey
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LoopbackIntrospection, LoopbackJWKS, sign_exact


def test_loopback_jwks_serves_discovery_and_rotates() -> None:
    old, new = SigningKey.generate("ES256", kid="old"), SigningKey.generate("ES256", kid="new")
    with LoopbackJWKS([old]) as jwks:
        validator = TokenValidator(Settings.from_mapping(
            {"ISSUER": jwks.issuer, "AUDIENCE": "svc", "ACCEPTED_TYPES": "absent", "JWKS_MIN_REFRESH_SECONDS": 0}))
        claims = {"iss": jwks.issuer, "sub": "a", "aud": "svc", "iat": 1, "exp": 2**40}
        assert validator.validate(sign_exact(old, {"alg": "ES256", "kid": "old"}, claims)).subject == "a"
        assert jwks.requests == {"/.well-known/openid-configuration": 1, "/jwks": 1}
        jwks.rotate([new])
        assert validator.validate(sign_exact(new, {"alg": "ES256", "kid": "new"}, claims)).subject == "a"
        with pytest.raises(UnknownKey):
            validator.validate(sign_exact(old, {"alg": "ES256", "kid": "old"}, claims))


def test_sign_exact_writes_exactly_the_header_given() -> None:
    key = SigningKey.generate("RS256", kid="k")
    token = sign_exact(key, {"kid": "k", "alg": "RS256"}, {"a": 1})
    assert json.loads(b64url.decode(token.split(".")[0])) == {"kid": "k", "alg": "RS256"}  # no typ added
    with pytest.raises(ValueError, match="cannot sign ES256"):
        sign_exact(key, {"alg": "ES256"}, {})
    with pytest.raises(ValueError, match="RS\\* and ES\\*"):
        sign_exact(key, {"alg": "HS256"}, {})


def test_the_plugin_fixture_is_a_started_endpoint(introspection_endpoint: LoopbackIntrospection) -> None:
    settings = Settings.from_mapping({"ISSUER": introspection_endpoint.issuer, "AUDIENCE": "svc",
                                      "JWKS_URL": "https://unused.example/jwks", **introspection_endpoint.settings()})
    validator = TokenValidator(settings)
    token = introspection_endpoint.issue(scope="orders:read")
    assert validator.validate(token).scopes == {"orders:read"}
    introspection_endpoint.revoke(token)
    assert introspection_endpoint.answer_for(token) == {"active": False}
    with pytest.raises(ValueError, match="mode must be one of"):
        introspection_endpoint.mode = "sideways"


def test_a_typ_check_still_refuses_what_the_signer_can_make() -> None:
    key = SigningKey.generate("ES256", kid="k")
    with LoopbackJWKS([key]) as jwks:
        validator = TokenValidator(Settings.from_mapping({"ISSUER": jwks.issuer, "AUDIENCE": "svc"}))
        claims = {"iss": jwks.issuer, "sub": "a", "aud": "svc", "iat": 1, "exp": 2**40}
        with pytest.raises(InvalidType):
            validator.validate(sign_exact(key, {"alg": "ES256", "kid": "k"}, claims))
