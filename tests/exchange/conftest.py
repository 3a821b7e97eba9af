"""Fixtures for the token-exchange tests: a real token endpoint, real downstream servers, real keys.

``endpoint`` is the loopback RFC 8693 endpoint of ``_endpoint.py`` (also the issuer: discovery,
JWKS). ``downstream`` and ``plain_downstream`` are HTTP servers on free loopback ports that
record every request they receive (so a test can prove that *nothing* arrived) and answer with
the ``Authorization`` they saw. ``orders`` is the orders service's settings: ``FORWARD_TO``
exchanges for ``customers-service`` towards ``downstream`` and forwards the token as it is to
``plain_downstream``; the token endpoint is discovered. ``alice`` is a validated token, bound as
the middleware binds it (with the settings that validated it) for the whole test.

``make_caller(client)`` builds one outgoing client (see ``CLIENTS``) the way an app does at
start-up and returns a function that GETs a URL and gives back the ``Authorization`` the server
saw; exceptions (``ExchangeFailed``) come out of it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))

from _endpoint import TokenEndpoint  # noqa: E402
from _exchange_support import (  # noqa: E402
    CLIENTS_FILE,
    CUSTOMERS,
    ORDERS,
    Caller,
    Downstream,
    MintFor,
    RecordingServer,
    bound,
    running,
    service_settings,
)

from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.core.token import AccessToken  # noqa: E402
from token_middleware.core.validator import TokenValidator  # noqa: E402
from token_middleware.httpx_auth import PropagateTokenAuth as HttpxAuth  # noqa: E402
from token_middleware.instrument import instrument  # noqa: E402
from token_middleware.requests_auth import PropagateTokenAuth as RequestsAuth  # noqa: E402
from token_middleware.requests_auth import propagating_session  # noqa: E402


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    with running(RecordingServer()) as server:
        yield server


@pytest.fixture
def plain_downstream() -> Iterator[Downstream]:
    with running(RecordingServer()) as server:
        yield server


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="session")
def jwks_file(signing_key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("exchange-keys") / "jwks.json"
    path.write_text(json.dumps(jwks_document([signing_key])))
    return str(path)


@pytest.fixture
def endpoint(signing_key: SigningKey) -> Iterator[TokenEndpoint]:
    with TokenEndpoint(signing_key, CLIENTS_FILE) as running_endpoint:
        yield running_endpoint


@pytest.fixture
def orders(endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream, plain_downstream: Downstream) -> Settings:
    return service_settings(
        endpoint, jwks_file, FORWARD_TO=f"{downstream.netloc}={CUSTOMERS},{plain_downstream.netloc}"
    )


@pytest.fixture
def issuer(endpoint: TokenEndpoint, signing_key: SigningKey) -> TokenIssuer:
    return TokenIssuer(endpoint.issuer, signing_key, ttl=600)


@pytest.fixture
def mint(issuer: TokenIssuer, orders: Settings) -> MintFor:
    """``mint("alice", **claims)``: a token for the orders service, validated by its settings."""
    validator = TokenValidator(orders)

    def make(sub: str = "alice", **claims: Any) -> AccessToken:
        claims.setdefault("audience", [ORDERS])
        claims.setdefault("scopes", ["orders:read", "customers:read"])
        return validator.validate(issuer.mint(sub=sub, **claims))

    return make


@pytest.fixture
def alice(mint: MintFor, orders: Settings) -> Iterator[AccessToken]:
    token = mint("alice")
    with bound(token, orders):
        yield token


@pytest.fixture
def customers_validator(endpoint: TokenEndpoint, jwks_file: str) -> TokenValidator:
    """How the customers service validates what it receives."""
    return TokenValidator(Settings.from_mapping({
        "ISSUER": endpoint.issuer, "AUDIENCE": CUSTOMERS, "PUBLIC_KEYS": jwks_file, "ALGORITHMS": "ES256",
    }))


def _seen(response: requests.Response | httpx.Response) -> str | None:
    response.raise_for_status()
    seen: str | None = response.json()["authorization"]
    return seen


@pytest.fixture
def make_caller() -> Iterator[Callable[[str], Caller]]:
    """``make_caller(client)``: build ``client`` now (no allowlist by hand); GET a URL with it later."""
    with ExitStack() as stack:

        def make(client: str) -> Caller:
            if client == "requests-session":
                session = stack.enter_context(propagating_session())
                return lambda url: _seen(session.get(url, timeout=10))
            if client == "requests-auth":
                auth = RequestsAuth()
                return lambda url: _seen(requests.get(url, auth=auth, timeout=10))
            if client == "httpx-client":
                sync = stack.enter_context(httpx.Client(auth=HttpxAuth(), timeout=10))
                return lambda url: _seen(sync.get(url))
            if client == "httpx-async":
                async_auth = HttpxAuth()

                async def get(url: str) -> httpx.Response:
                    async with httpx.AsyncClient(auth=async_auth, timeout=10) as client:
                        return await client.get(url)

                return lambda url: _seen(asyncio.run(get(url)))  # the task copies this context
            if client.startswith("instrumented-"):
                stack.callback(instrument().uninstrument)
                if client == "instrumented-requests":
                    return lambda url: _seen(requests.get(url, timeout=10))
                return lambda url: _seen(httpx.get(url, timeout=10))
            raise AssertionError(client)

        yield make
