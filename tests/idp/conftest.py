"""Fixtures for the identity-provider tests: one RSA key served from a loopback JWKS, a clock
that tests move by hand, and a helper to sign tokens shaped exactly as a provider documents."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))

from _idp_support import NOW, FakeClock  # noqa: E402

from token_middleware.core.issuer import SigningKey  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.core.validator import TokenValidator  # noqa: E402
from token_middleware.testing import LoopbackJWKS, sign_exact  # noqa: E402

__all__ = ["NOW", "FakeClock"]


@pytest.fixture(scope="session")
def idp_key() -> SigningKey:
    """The provider's signing key (RS256: what every provider here signs access tokens with)."""
    return SigningKey.generate("RS256", kid="idp-key-1")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """A key nobody publishes, under the same kid."""
    return SigningKey.generate("RS256", kid="idp-key-1")


@pytest.fixture(scope="session")
def jwks(idp_key: SigningKey) -> Iterator[LoopbackJWKS]:
    with LoopbackJWKS([idp_key]) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sign(idp_key: SigningKey) -> Callable[[Mapping[str, Any], Mapping[str, Any]], str]:
    """``sign(header, claims)``: a token under exactly ``header``, signed by the provider's key."""
    return lambda header, claims: sign_exact(idp_key, header, claims)


@pytest.fixture
def make_validator(jwks: LoopbackJWKS, clock: FakeClock) -> Callable[..., TokenValidator]:
    """``make_validator(ISSUER=…, …)``: a validator reading keys from the loopback JWKS."""

    def make(**names: Any) -> TokenValidator:
        values = {"ISSUER": "https://idp.example", "AUDIENCE": "orders-service", **names}
        values.setdefault("JWKS_URL", jwks.jwks_url)
        return TokenValidator(Settings.from_mapping(values), clock=clock)

    return make
