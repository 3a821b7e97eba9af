"""Fixtures for the outgoing-propagation tests: real keys, real tokens, real loopback servers.

``echo`` and ``other_echo`` are HTTP servers on free loopback ports that answer every request
with JSON naming the ``Authorization`` they received (these are test servers; echoing it is
their whole job). ``/redirect?to=<url>`` answers 302 to ``<url>``.

``make_caller(client, forward_to)`` builds one outgoing client the way an app does at start-up
(requests session or auth object, httpx auth on ``Client`` or ``AsyncClient``, or the
instrumentation) and returns a function that GETs a URL with it and gives back the
``Authorization`` the server saw. ``clean_environment`` removes every ``TOKEN_MIDDLEWARE_*``
and ``*_proxy`` variable for the test.

``proxy`` is a forward proxy on a free loopback port that records the request line and the
``Authorization`` of every request it receives and answers 200 itself, in the echo servers'
format (``"via": "proxy"``), so a test sees both what the client got and what the proxy read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))

from _clients_support import Caller  # noqa: E402

from token_middleware.core.context import bind_token, reset_token  # noqa: E402
from token_middleware.core.forwarding import ForwardTo  # noqa: E402
from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402
from token_middleware.core.token import AccessToken  # noqa: E402
from token_middleware.core.validator import TokenValidator  # noqa: E402
from token_middleware.httpx_auth import PropagateTokenAuth as HttpxAuth  # noqa: E402
from token_middleware.instrument import instrument  # noqa: E402
from token_middleware.requests_auth import PropagateTokenAuth as RequestsAuth  # noqa: E402
from token_middleware.requests_auth import propagating_session  # noqa: E402

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


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingProxyServer

    def do_GET(self) -> None:
        self.server.seen.append((self.requestline, self.headers.get("Authorization")))
        body = json.dumps(
            {"authorization": self.headers.get("Authorization"), "path": "/echo", "via": "proxy"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class RecordingProxyServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str | None]] = []  # (request line, Authorization)


@dataclass
class Proxy:
    """A running recording proxy; ``url`` carries credentials that must never be logged."""

    port: int
    seen: list[tuple[str, str | None]]

    @property
    def url(self) -> str:
        return f"http://proxy-user:proxy-secret@127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = RecordingProxyServer()
    with serve(server) as port:
        yield Proxy(port, server.seen)


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


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``TOKEN_MIDDLEWARE_*`` and no proxy variable (any case) during the test."""
    for name in list(os.environ):
        if name.startswith("TOKEN_MIDDLEWARE_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)



def _seen(response: requests.Response | httpx.Response) -> str | None:
    response.raise_for_status()
    seen: str | None = response.json()["authorization"]
    return seen


@pytest.fixture
def make_caller() -> Iterator[Callable[[str, ForwardTo], Caller]]:
    """``make_caller(client, forward_to)``: build ``client`` now; GET a URL with it later.

    The clients are closed, and the instrumentation turned off, when the test ends.
    """
    with ExitStack() as stack:

        def make(client: str, forward_to: ForwardTo = None) -> Caller:
            if client == "requests-session":
                session = stack.enter_context(propagating_session(forward_to))
                return lambda url: _seen(session.get(url, timeout=10))
            if client == "requests-auth":
                auth = RequestsAuth(forward_to)
                return lambda url: _seen(requests.get(url, auth=auth, timeout=10))
            if client == "httpx-client":
                sync = stack.enter_context(httpx.Client(auth=HttpxAuth(forward_to), timeout=10))
                return lambda url: _seen(sync.get(url))
            if client == "httpx-async":
                async_auth = HttpxAuth(forward_to)

                async def get(url: str) -> httpx.Response:
                    async with httpx.AsyncClient(auth=async_auth, timeout=10) as client:
                        return await client.get(url)

                # asyncio.run's task runs in a copy of the caller's context, token included.
                return lambda url: _seen(asyncio.run(get(url)))
            if client.startswith("instrumented-"):
                stack.callback(instrument(forward_to).uninstrument)
                if client == "instrumented-requests":
                    return lambda url: _seen(requests.get(url, timeout=10))
                return lambda url: _seen(httpx.get(url, timeout=10))
            raise AssertionError(client)

        yield make
