"""Names shared by the exchange tests (imported by ``conftest.py`` and the test modules).

A unique module name (not ``conftest``): another test directory's ``conftest`` may already be
in ``sys.modules`` under that name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _endpoint import Client, TokenEndpoint

from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken

CLIENTS = [
    "requests-session",
    "requests-auth",
    "httpx-client",
    "httpx-async",
    "instrumented-requests",
    "instrumented-httpx",
]
SECRET = "orders-secret:with+odd/chars"  # form-encoding of the Basic credential is exercised
ORDERS = "orders-service"
CUSTOMERS = "customers-service"


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        seen = self.headers.get("Authorization")
        self.server.record(self.path, seen)
        body = json.dumps({"authorization": seen, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrent tests connect at once: no SYN dropped, no 1 s retry

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.seen: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def record(self, path: str, authorization: str | None) -> None:
        with self._lock:
            self.seen.append((path, authorization))


@dataclass
class Downstream:
    """A running recording server: ``url()``, ``netloc``, and ``seen`` (path, Authorization)."""

    port: int
    seen: list[tuple[str, str | None]] = field(repr=False)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/whoami") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def running(server: RecordingServer) -> Iterator[Downstream]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Downstream(server.server_address[1], server.seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


CLIENTS_FILE = {
    ORDERS: Client(SECRET, ORDERS, {CUSTOMERS: ["customers:read"], "billing-service": ["billing:read"]}),
    "billing-service": Client("billing-secret", "billing-service", {CUSTOMERS: ["customers:read"]}),
}


def service_settings(endpoint: TokenEndpoint, jwks_file: str, **names: Any) -> Settings:
    """The orders service's settings, pointed at ``endpoint`` as its issuer."""
    return Settings.from_mapping({
        "ISSUER": endpoint.issuer, "AUDIENCE": ORDERS, "PUBLIC_KEYS": jwks_file, "ALGORITHMS": "ES256",
        "CLIENT_ID": ORDERS, "CLIENT_SECRET": SECRET, **names,
    })


MintFor = Callable[..., AccessToken]


@contextmanager
def bound(token: AccessToken | None, settings: Settings | None) -> Iterator[None]:
    """``token`` current with ``settings``, as the middleware binds a validated request."""
    handle = bind_token(token, settings)
    try:
        yield
    finally:
        reset_token(handle)


Caller = Callable[[str], "str | None"]
