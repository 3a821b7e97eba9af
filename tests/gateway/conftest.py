"""Fixtures for the gateway tests: a real upstream HTTP server on loopback, a gateway wired to it,
and a core validator that checks the tokens the gateway forwards."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _gateway_support import FAST_HASH, ISSUER, PASSWORDS, SCOPES, Upstream, UpstreamServer, UpstreamHandler
from werkzeug.security import generate_password_hash
from werkzeug.test import Client

from token_middleware.gateway import Gateway, GatewayConfig, Route, UserStore
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A real HTTP/1.1 server on a free loopback port, recording every request."""
    server = UpstreamServer(("127.0.0.1", 0), UpstreamHandler)
    server.upstream = Upstream(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    # Ready when it accepts a connection.
    socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5).close()
    try:
        yield server.upstream
    finally:
        server.upstream.stop.set()
        server.upstream.first_chunk_read.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            {
                name: {"password_hash": generate_password_hash(pw, method=FAST_HASH), "scopes": SCOPES[name]}
                for name, pw in PASSWORDS.items()
            }
        )
    )
    return path


@pytest.fixture
def make_config(tmp_path: Path, users_file: Path, upstream: Upstream) -> Callable[..., GatewayConfig]:
    def make(**overrides: Any) -> GatewayConfig:
        values: dict[str, Any] = {
            "issuer": ISSUER,
            "routes": (
                Route("/orders", upstream.url, ("orders-service", "customers-service")),
                Route("/customers", upstream.url, ("customers-service",)),
            ),
            "users_file": users_file,
            "keys_dir": tmp_path / "keys",
            "key_check_interval": 0.0,
        }
        values.update(overrides)
        return GatewayConfig(**values)

    return make


@pytest.fixture
def gateway(make_config: Callable[..., GatewayConfig]) -> Iterator[Gateway]:
    gw = Gateway(make_config())
    yield gw
    gw.close()


@pytest.fixture
def client(gateway: Gateway) -> Client:
    return Client(gateway)


@pytest.fixture
def validator_for(tmp_path: Path) -> Callable[[Gateway, str], TokenValidator]:
    """A core validator for ``audience`` that trusts the gateway's published JWKS."""

    def make(gw: Gateway, audience: str) -> TokenValidator:
        jwks_path = tmp_path / f"jwks-{audience}.json"
        jwks_path.write_text(json.dumps(gw.keystore.jwks()))
        settings = Settings.from_mapping(
            {"ISSUER": gw.config.issuer, "AUDIENCE": audience, "PUBLIC_KEYS": str(jwks_path)}
        )
        return TokenValidator(settings, cache_size=0)

    return make


@pytest.fixture
def user_store(users_file: Path) -> UserStore:
    return UserStore.from_file(users_file)
