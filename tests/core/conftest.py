"""Fixtures for the core tests: real RSA and EC keys, real signed tokens, a fixed clock, static
key files and a JWKS server on loopback (see ``_support.py``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))

from _support import AUDIENCE, ISSUER, NOW, FakeClock, JWKSServer, Kit  # noqa: E402

from token_middleware.core.issuer import SigningKey, jwks_document  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.core.validator import TokenValidator  # noqa: E402

__all__ = ["AUDIENCE", "ISSUER", "NOW", "Kit"]


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey.generate("RS256", kid="rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey.generate("ES256", kid="ec-1")


@pytest.fixture(scope="session")
def p384_key() -> SigningKey:
    return SigningKey.generate("ES384", kid="p384-1")


@pytest.fixture(scope="session")
def attacker_keys() -> dict[str, SigningKey]:
    """Keys nobody trusts, under the *same* kids as the trusted ones."""
    return {"RS256": SigningKey.generate("RS256", kid="rsa-1"), "ES256": SigningKey.generate("ES256", kid="ec-1")}


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory, rsa_key: SigningKey, ec_key: SigningKey) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps(jwks_document([rsa_key, ec_key])))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def make_settings(keys_file: Path) -> Callable[..., Settings]:
    """``make_settings(**NAMEs)``: settings with static keys from ``keys_file`` unless overridden."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"ISSUER": ISSUER, "AUDIENCE": AUDIENCE}
        if "JWKS_URL" not in overrides:
            values["PUBLIC_KEYS"] = str(keys_file)
        values.update(overrides)
        return Settings.from_mapping(values)

    return make


@pytest.fixture
def make_validator(make_settings: Callable[..., Settings], clock: FakeClock) -> Callable[..., TokenValidator]:
    def make(cache_size: int = 0, **overrides: Any) -> TokenValidator:
        return TokenValidator(make_settings(**overrides), cache_size=cache_size, clock=clock)

    return make


@pytest.fixture
def validator(make_validator: Callable[..., TokenValidator]) -> TokenValidator:
    return make_validator()


@pytest.fixture(params=["RS256", "ES256"])
def kit(request: pytest.FixtureRequest, rsa_key: SigningKey, ec_key: SigningKey,
        attacker_keys: dict[str, SigningKey], clock: FakeClock) -> Kit:
    key = rsa_key if request.param == "RS256" else ec_key
    return Kit(key=key, other=attacker_keys[request.param], clock=clock)


@pytest.fixture
def jwks_server(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[JWKSServer]:
    with JWKSServer([rsa_key, ec_key]) as server:
        yield server


@pytest.fixture
def attacker_server() -> Iterator[JWKSServer]:
    with JWKSServer([SigningKey.generate("ES256", kid="attacker")]) as server:
        yield server
