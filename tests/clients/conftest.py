"""Fixtures for the outgoing-propagation tests: real keys, real tokens, real loopback servers.

``echo`` and ``other_echo`` are HTTP servers on free loopback ports that answer every request
with JSON naming the ``Authorization`` they received (these are test servers; echoing it is
their whole job). ``/redirect?to=<url>`` answers 302 to ``<url>``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator

ISSUER = "https://issuer.test"
AUDIENCE = "orders-service"


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            target = parse_qs(parts.query)["to"][0]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(
            {
                "authorization": self.headers.get("Authorization"),
                "path": parts.path,
                "host": self.headers.get("Host"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@dataclass
class Echo:
    """A running echo server: ``url("/x")`` on 127.0.0.1, ``url("/x", host="localhost")``."""

    port: int

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/echo", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def redirect(self, to: str) -> str:
        from urllib.parse import quote

        return self.url("/redirect?to=" + quote(to, safe=""))


@contextmanager
def serve(server: ThreadingHTTPServer) -> Iterator[int]:
    """Serve in a thread; the socket listens from construction, so it is ready at once."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def echo() -> Iterator[Echo]:
    with serve(ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)) as port:
        yield Echo(port)


@pytest.fixture
def other_echo() -> Iterator[Echo]:
    with serve(ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)) as port:
        yield Echo(port)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="session")
def token_issuer(signing_key: SigningKey) -> TokenIssuer:
    return TokenIssuer(ISSUER, signing_key, ttl=600)


@pytest.fixture(scope="session")
def service_settings(signing_key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    keys = tmp_path_factory.mktemp("keys") / "jwks.json"
    keys.write_text(json.dumps(jwks_document([signing_key])))
    return Settings.from_mapping(
        {"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(Path(keys)), "ALGORITHMS": "ES256"}
    )


@pytest.fixture(scope="session")
def validator(service_settings: Settings) -> TokenValidator:
    return TokenValidator(service_settings)


MintToken = Callable[[str], AccessToken]


@pytest.fixture(scope="session")
def mint_token(token_issuer: TokenIssuer, validator: TokenValidator) -> MintToken:
    """A validated AccessToken for ``sub``, minted and checked with the real key."""

    def mint(sub: str) -> AccessToken:
        raw = token_issuer.mint(sub=sub, audience=[AUDIENCE], scopes=["orders:read"])
        return validator.validate(raw)

    return mint


@contextmanager
def current(token: AccessToken | None) -> Iterator[AccessToken | None]:
    """Make ``token`` the current token for the block, as the middleware does per request."""
    handle = bind_token(token)
    try:
        yield token
    finally:
        reset_token(handle)


@pytest.fixture
def alice(mint_token: MintToken) -> Iterator[AccessToken]:
    """Alice's token, current for the whole test."""
    token = mint_token("alice")
    with current(token):
        yield token


@pytest.fixture
def as_current() -> Callable[[AccessToken | None], Any]:
    """``with as_current(token): ...`` binds ``token`` for the block."""
    return current
