"""nginx in front, with deploy/nginx/nginx.conf.template: the auth_request answer is cached per route
and credential, and never where that could let through what the gateway would refuse.

Real processes on loopback: Debian's nginx (skipped when missing), the gateway served by
werkzeug's threaded server and counted at ``/_auth``, and the recording upstream for both routes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from _gateway_support import Upstream, bearer_of
from werkzeug.serving import make_server

from demo_gateway import supervisor
from token_middleware.gateway import Gateway, GatewayConfig
from token_middleware.core import b64url

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = pytest.mark.skipif(supervisor.nginx_binary() is None, reason="nginx is not installed")

ALICE = ("alice", "alice-password")
BOB = ("bob", "bob-password")


class AuthCounter:
    """WSGI middleware counting the ``/_auth`` calls that reach the gateway."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_auth":
            with self._lock:
                self.calls += 1
        return self.app(environ, start_response)


@dataclass
class Edge:
    url: str
    counter: AuthCounter
    upstream: Upstream
    prefix: Path

    def get(self, path: str, auth: tuple[str, str] | None = ALICE, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def edge(make_config: Callable[..., GatewayConfig], upstream: Upstream, tmp_path: Path) -> Iterator[Edge]:
    gateway = Gateway(make_config())
    counter = AuthCounter(gateway)
    server = make_server("127.0.0.1", 0, counter, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    upstream_port = int(upstream.url.rsplit(":", 1)[1])
    config = supervisor.DemoConfig(
        ports=supervisor.DemoPorts(gateway=server.server_port, orders=upstream_port, customers=upstream_port)
    )
    port = supervisor.free_port()
    prefix = tmp_path / "nginx"
    nginx = supervisor.start_nginx(config, port=port, prefix=prefix)
    try:
        yield Edge(f"http://127.0.0.1:{port}", counter, upstream, prefix)
    finally:
        nginx.stop()
        server.shutdown()
        server.server_close()
        thread.join(5)
        gateway.close()


def claims(token: str) -> dict[str, object]:
    data = json.loads(b64url.decode(token.split(".")[1]))
    assert isinstance(data, dict)
    return data


def test_auth_answers_are_cached_per_route_and_credential(edge: Edge) -> None:
    for _ in range(3):
        assert edge.get("/orders/whoami").status_code == 200
    assert edge.counter.calls == 1
    orders_tokens = {bearer_of(r) for r in edge.upstream.requests}
    assert len(orders_tokens) == 1
    (orders_token,) = orders_tokens
    assert claims(orders_token)["aud"] == ["orders-service", "customers-service"]

    assert edge.get("/customers/1").status_code == 200  # another route: its own entry and token
    assert edge.counter.calls == 2
    customers_token = bearer_of(edge.upstream.last())
    assert claims(customers_token)["aud"] == ["customers-service"]
    assert claims(customers_token)["sub"] == "alice"

    assert edge.get("/orders/whoami", auth=BOB).status_code == 200  # another credential
    assert edge.counter.calls == 3
    assert claims(bearer_of(edge.upstream.last()))["sub"] == "bob"

    assert edge.get("/orders/whoami", headers={"Cookie": "theme=dark"}).status_code == 200  # another Cookie
    assert edge.counter.calls == 4


def test_the_client_credential_never_reaches_the_service(edge: Edge) -> None:
    edge.get("/orders/whoami")
    edge.get("/orders/whoami")
    for seen in edge.upstream.requests:
        assert [v for k, v in seen.headers if k.lower() == "authorization"] == [f"Bearer {bearer_of(seen)}"]


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(("alice", "wrong"), id="wrong-password"),
        pytest.param(None, id="no-credentials"),
    ],
)
def test_refusals_are_never_cached(edge: Edge, auth: tuple[str, str] | None) -> None:
    for calls in (1, 2):
        response = edge.get("/orders/whoami", auth=auth)
        assert response.status_code == 401
        assert edge.counter.calls == calls
    assert edge.upstream.requests == []


def test_the_right_password_after_a_wrong_one_is_checked_afresh(edge: Edge) -> None:
    assert edge.get("/orders/whoami", auth=("alice", "wrong")).status_code == 401
    assert edge.get("/orders/whoami").status_code == 200
    assert edge.counter.calls == 2


def test_unsafe_methods_always_ask_the_gateway(edge: Edge) -> None:
    for calls in (1, 2):
        response = requests.post(edge.url + "/orders", auth=ALICE, data=b"{}", timeout=10)
        assert response.status_code == 200
        assert edge.counter.calls == calls


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/orders/%2e%2e/orders/whoami", id="encoded-dot-segment"),
        pytest.param("/orders/x/%2E%2E/whoami", id="encoded-dot-segment-upper"),
    ],
)
def test_uris_the_gateway_may_refuse_always_ask_it(edge: Edge, path: str) -> None:
    assert edge.get("/orders/whoami").status_code == 200  # an entry for this route and credential
    response = requests.get(edge.url + path, auth=ALICE, timeout=10)
    assert response.status_code == 403
    assert edge.counter.calls == 2
    assert len(edge.upstream.requests) == 1


def test_the_cache_directory_is_private(edge: Edge) -> None:
    edge.get("/orders/whoami")
    cache = edge.prefix / "auth_cache"
    assert cache.is_dir()
    assert cache.stat().st_mode & 0o077 == 0
