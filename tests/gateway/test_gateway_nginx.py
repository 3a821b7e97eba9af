"""nginx in front, with deploy/nginx/nginx.conf.template: the auth_request answer is cached per route
and credential, and never where that could let through what the gateway would refuse; refusals
carry the gateway's own JSON; the headers nginx drops are the gateway's list.

Real processes on loopback: Debian's nginx (skipped when missing), the gateway served by
werkzeug's threaded server and counted at ``/_auth``, and the recording upstream for both routes.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from _gateway_support import Upstream, bearer_of
from werkzeug.serving import make_server
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from demo_gateway import supervisor
from token_middleware.gateway import Gateway, GatewayConfig
from token_middleware.gateway.edge.proxy import IDENTITY_HEADERS, OVERRIDE_HEADERS, is_stripped
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


@contextmanager
def nginx_edge(gateway: Gateway, upstream: Upstream, tmp_path: Path) -> Iterator[Edge]:
    """nginx on a free port, with ``gateway`` (counted, under werkzeug's threaded server) behind
    it and the recording upstream as both services."""
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


@pytest.fixture
def edge(make_config: Callable[..., GatewayConfig], upstream: Upstream, tmp_path: Path) -> Iterator[Edge]:
    with nginx_edge(Gateway(make_config()), upstream, tmp_path) as running:
        yield running


def basic_header(auth: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}


@dataclass
class RawResponse:
    status: int
    head: str
    body: bytes


def send_raw(
    url: str, request_line: str, headers: dict[str, str], body: bytes = b"", extra_lines: Sequence[str] = ()
) -> RawResponse:
    """One request exactly as written (no client library normalising it), one answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [request_line, f"Host: {host}:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items()), *extra_lines]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # a server that refuses a body may reset after answering
            if not data:
                raise
    head, _, rest = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    return RawResponse(int(text.split(" ", 2)[1]), text, rest)


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
    ("path", "status"),
    [
        pytest.param("//orders/whoami", 404, id="double-slash"),
        pytest.param("/orders/%2e%2e/orders/whoami", 400, id="encoded-dot-segment"),
        pytest.param("/orders/x/%2E%2E/whoami", 400, id="encoded-dot-segment-upper"),
        pytest.param("/customers/..%2Forders/whoami", 400, id="encoded-slash-dot-segment"),
        pytest.param("/orders/../orders/whoami", 400, id="dot-segment"),
        pytest.param("/%6Frders/whoami", 200, id="encoded-letter-allowed-but-asked"),
        pytest.param("/orders//whoami", 200, id="inner-double-slash-allowed-but-asked"),
    ],
)
def test_a_uri_nginx_sees_differently_always_asks_the_gateway(
    edge: Edge, make_config: Callable[..., GatewayConfig], path: str, status: int
) -> None:
    """The auth-cache finding: nginx served ``//orders/whoami`` from alice's cached answer,
    although the gateway refuses that URI. Now the gateway decides, and its answer (status and
    JSON) is what the Python edge gives for the same request."""
    assert edge.get("/orders/whoami").status_code == 200  # an entry for this route and credential
    forwarded = len(edge.upstream.requests)
    response = send_raw(edge.url, f"GET {path} HTTP/1.1", basic_header(ALICE))
    assert response.status == status
    assert edge.counter.calls == 2, "answered from the cache"
    if status != 200:
        assert len(edge.upstream.requests) == forwarded
        python_edge = Client(Gateway(make_config())).get(path, headers=basic_header(ALICE))
        assert response.status == python_edge.status_code
        assert json.loads(response.body) == python_edge.json


def test_refusals_carry_the_gateways_json_and_challenge(edge: Edge) -> None:
    response = edge.get("/orders/whoami", auth=("alice", "wrong"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials", "error_description": "wrong username or password"}
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.raw.headers.getlist("WWW-Authenticate") == ['Basic realm="gateway"']
    anonymous = edge.get("/orders/whoami", auth=None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"


def test_the_failed_login_limit_answers_429_through_nginx(
    make_config: Callable[..., GatewayConfig], upstream: Upstream, tmp_path: Path
) -> None:
    with nginx_edge(Gateway(make_config(login_max_failures=1)), upstream, tmp_path) as limited:
        assert limited.get("/orders/whoami", auth=("alice", "wrong")).status_code == 401
        response = limited.get("/orders/whoami")
        assert response.status_code == 429
        assert response.json()["error"] == "too_many_requests"
        assert 0 < int(response.headers["Retry-After"]) <= 300


@pytest.mark.parametrize(
    ("request_line", "headers", "body", "status"),
    [
        pytest.param("GET /orders/whoami HTTP/1.1", {"Content-Length": "5"}, b"hello", 400, id="get-with-a-body"),
        pytest.param("HEAD /orders/whoami HTTP/1.1", {"Content-Length": "5"}, b"hello", 400, id="head-with-a-body"),
        pytest.param("GET /orders/whoami HTTP/1.1", {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n", 400, id="get-chunked"),
        pytest.param("GET /orders/whoami HTTP/1.1", {"Content-Length": "0"}, b"", 200, id="get-with-length-0-is-fine"),
        pytest.param("POST /orders HTTP/1.1", {"Content-Length": str(2 * 1024 * 1024)}, b"", 413, id="body-too-large"),
    ],
)
def test_requests_the_gateway_refuses_are_refused_alike(
    edge: Edge, make_config: Callable[..., GatewayConfig],
    request_line: str, headers: dict[str, str], body: bytes, status: int,
) -> None:
    response = send_raw(edge.url, request_line, {**basic_header(ALICE), **headers}, body)
    assert response.status == status
    if status != 200:
        assert edge.upstream.requests == []
        method, target, _ = request_line.split(" ")
        environ = EnvironBuilder(path=target, method=method, headers=basic_header(ALICE)).get_environ()
        environ.update({"CONTENT_LENGTH": headers.get("Content-Length", ""), "wsgi.input": io.BytesIO(body)})
        if "Transfer-Encoding" in headers:
            environ["HTTP_TRANSFER_ENCODING"] = headers["Transfer-Encoding"]
        app_iter, python_status, _ = run_wsgi_app(Gateway(make_config()), environ)
        python_body = b"".join(app_iter)
        assert int(python_status.split()[0]) == status
        if method != "HEAD":
            assert json.loads(response.body) == json.loads(python_body)


@pytest.mark.parametrize(
    "codings",
    [
        pytest.param(["chunked", "chunked"], id="twice"),
        pytest.param(["chunked, chunked"], id="listed-twice"),
        pytest.param(["chunked, identity"], id="chunked-identity"),
        pytest.param(["gzip, chunked"], id="gzip-chunked"),
    ],
)
def test_a_duplicated_or_ambiguous_transfer_encoding_is_refused(edge: Edge, codings: list[str]) -> None:
    lines = [f"Transfer-Encoding: {c}" for c in codings]
    response = send_raw(edge.url, "POST /orders HTTP/1.1", basic_header(BOB), b"5\r\nhello\r\n0\r\n\r\n", lines)
    assert response.status in (400, 501)  # nginx: 400 for a repeated header, 501 for other codings
    assert edge.upstream.requests == []


OVERRIDES_AND_IDENTITIES = {
    "X-Original-URL": "/orders/admin", "X-Rewrite-URL": "/orders/admin", "X-Original-URI": "/orders/admin",
    "X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE",
    "X-Original-Method": "DELETE", "X-User": "bob", "X-Forwarded-User": "bob", "Remote-User": "bob",
    "X-Auth-Request-User": "bob", "X-Access-Token": "forged", "X-Real-Ip": "10.0.0.1",
}


@pytest.mark.parametrize("path", ["/orders/whoami", "/customers/1"])
def test_path_method_and_identity_overrides_never_reach_a_service(edge: Edge, path: str) -> None:
    """Finding: X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override and X-Method-Override
    reached the services through nginx."""
    assert edge.get(path, headers=OVERRIDES_AND_IDENTITIES).status_code == 200
    seen = edge.upstream.last()
    assert {name.lower() for name in OVERRIDES_AND_IDENTITIES}.isdisjoint(seen.names())


def proxy_dropped_headers(location: str) -> set[str]:
    """The headers the template sets to "" (drops) in ``location``."""
    text = supervisor.NGINX_TEMPLATE.read_text()
    block = text[text.index(f"location ~ ^/{location}(/|$)"):]
    block = block[: block.index("proxy_pass")]
    return {m.lower() for m in re.findall(r'proxy_set_header\s+([A-Za-z0-9-]+)\s+""', block)}


@pytest.mark.parametrize("location", ["orders", "customers"])
def test_nginx_drops_every_header_the_gateway_strips(location: str) -> None:
    dropped = proxy_dropped_headers(location)
    # Set by nginx itself in these locations, with its own values:
    own = {"authorization", "x-request-id", "connection", "host", "x-forwarded-for", "x-forwarded-proto",
           "x-forwarded-host"}
    assert (IDENTITY_HEADERS | OVERRIDE_HEADERS) - own <= dropped
    # nginx drops the whole Cookie header; the gateway drops only its own cookies from it.
    assert all(is_stripped(name) for name in dropped - {"cookie"}), "nginx drops a header the gateway forwards"


def test_the_cache_directory_is_private(edge: Edge) -> None:
    edge.get("/orders/whoami")
    cache = edge.prefix / "auth_cache"
    assert cache.is_dir()
    assert cache.stat().st_mode & 0o077 == 0
