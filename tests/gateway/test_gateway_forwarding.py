"""What the gateway forwards to a real upstream: the minted token, and nothing the client claimed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from token_middleware.core.errors import InvalidAudience
from token_middleware.gateway import Gateway, GatewayConfig, Route
from token_middleware.core import b64url
from token_middleware.core.validator import TokenValidator

from _gateway_support import ISSUER, SCOPES, Upstream, basic, bearer_of, free_port


@pytest.mark.parametrize(
    ("path", "audience", "expected_aud"),
    [
        pytest.param("/orders/whoami", "orders-service", ["orders-service", "customers-service"], id="orders-chain-aud"),
        pytest.param("/orders/whoami", "customers-service", ["orders-service", "customers-service"], id="orders-token-ok-downstream"),
        pytest.param("/customers/7", "customers-service", ["customers-service"], id="customers-aud"),
    ],
)
def test_forwarded_token_is_valid_for_the_route_audiences(
    client: Client,
    gateway: Gateway,
    upstream: Upstream,
    validator_for: Callable[[Gateway, str], TokenValidator],
    path: str,
    audience: str,
    expected_aud: list[str],
) -> None:
    response = client.get(path, headers=basic("bob"))
    assert response.status_code == 200
    token = validator_for(gateway, audience).validate(bearer_of(upstream.last()))
    assert token.subject == "bob"
    assert token.issuer == ISSUER
    assert list(token.audience) == expected_aud
    assert token.scopes == frozenset(SCOPES["bob"])
    assert token.client_id == "gateway"
    assert token.jti
    assert token.claims["exp"] - token.claims["iat"] == gateway.config.token_ttl
    assert token.key_id == gateway.keystore.current().kid


def test_token_for_one_route_is_refused_by_a_service_outside_its_audience(
    client: Client,
    gateway: Gateway,
    upstream: Upstream,
    validator_for: Callable[[Gateway, str], TokenValidator],
) -> None:
    client.get("/customers/1", headers=basic("alice"))
    with pytest.raises(InvalidAudience):
        validator_for(gateway, "orders-service").validate(bearer_of(upstream.last()))


SPOOFED = [
    ("X-User", "spoofed-1"),
    ("X-User-Id", "spoofed-2"),
    ("X-Userinfo", "spoofed-3"),
    ("X-Forwarded-User", "spoofed-4"),
    ("X-Auth-User", "spoofed-5"),
    ("X-Auth-Request-Email", "spoofed-6@example"),
    ("X-Authenticated-Userid", "spoofed-7"),
    ("X-Remote-User", "spoofed-8"),
    ("Remote-User", "spoofed-9"),
    ("X-Access-Token", "spoofed.jwt.value"),
    ("X-Id-Token", "spoofed-10"),
    ("Forwarded", "for=spoofed-11;proto=https"),
    ("X-Real-Ip", "spoofed-12"),
    ("Proxy-Authorization", "Basic c3Bvb2ZlZDpzcG9vZmVk"),
    # path and method overrides: a framework behind the gateway could act on another route
    ("X-Original-URL", "/orders/admin-only"),
    ("X-Rewrite-URL", "/orders/admin-only-2"),
    ("X-Original-URI", "/orders/admin-only-3"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-HTTP-Method", "PUT"),
    ("X-Method-Override", "PATCH"),
    ("X-Original-Method", "POST"),
    ("X-Client-IP", "10.9.9.9"),
    ("True-Client-IP", "10.9.9.8"),
]


@pytest.mark.parametrize(("name", "value"), [pytest.param(n, v, id=n.lower()) for n, v in SPOOFED])
def test_client_identity_headers_are_not_forwarded(
    client: Client, upstream: Upstream, name: str, value: str
) -> None:
    assert client.get("/orders/whoami", headers={**basic("alice"), name: value}).status_code == 200
    seen = upstream.last()
    assert name.lower() not in seen.names()
    assert all(value not in v for _, v in seen.headers)
    authorization = seen.header("Authorization")
    assert authorization is not None and authorization.startswith("Bearer ")


def test_client_authorization_is_replaced_by_the_minted_token(client: Client, upstream: Upstream) -> None:
    client.get("/orders/whoami", headers=basic("alice"))
    assert all("Basic" not in v for _, v in upstream.last().headers)
    assert len([k for k, _ in upstream.last().headers if k.lower() == "authorization"]) == 1


def test_identity_header_with_underscores_is_not_forwarded(client: Client, upstream: Upstream) -> None:
    # X_User and X-User collapse into the same WSGI key; both must go.
    builder = EnvironBuilder(path="/orders/whoami", headers=basic("alice"))
    environ = builder.get_environ()
    environ["HTTP_X_USER"] = "root"
    environ["HTTP_X_AUTH_TOKEN"] = "x"
    app_iter, status, _ = run_wsgi_app(client.application, environ)
    b"".join(app_iter)
    assert status.startswith("200")
    assert {"x-user", "x-auth-token"}.isdisjoint(upstream.last().names())


def test_gateway_cookies_are_removed_and_others_kept(gateway: Gateway, upstream: Upstream) -> None:
    cookie = f"theme=dark; {gateway.session_cookie}=forged; {gateway.csrf_cookie}=n; lang=en"
    client = Client(gateway, use_cookies=False)  # send the Cookie header exactly as written
    client.get("/orders/whoami", headers={**basic("alice"), "Cookie": cookie})
    assert upstream.last().header("Cookie") == "theme=dark; lang=en"


def test_forwarded_headers_and_request_id(client: Client, upstream: Upstream) -> None:
    response = client.get(
        "/orders/whoami",
        headers={
            **basic("alice"),
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Request-ID": "abc-123",
            "Host": "gw.example:8000",
        },
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    seen = upstream.last()
    assert seen.header("X-Forwarded-For") == "192.0.2.10"
    assert seen.header("X-Forwarded-Host") == "gw.example:8000"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Request-ID") == "abc-123"
    assert response.headers["X-Request-ID"] == "abc-123"
    assert seen.header("Host") == upstream.url.removeprefix("http://")


def test_trusted_proxy_forwarded_for_is_appended(
    make_config: Callable[..., GatewayConfig], upstream: Upstream
) -> None:
    client = Client(Gateway(make_config(trusted_proxies=("127.0.0.1",))))
    client.get(
        "/orders/whoami",
        headers={**basic("alice"), "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert upstream.last().header("X-Forwarded-For") == "203.0.113.5, 127.0.0.1"
    assert upstream.last().header("X-Forwarded-Proto") == "https"


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("x" * 200, id="too-long"),
        pytest.param("a b", id="space"),
        pytest.param("<script>", id="markup"),
    ],
)
def test_insane_request_id_is_replaced(client: Client, upstream: Upstream, incoming: str) -> None:
    client.get("/orders/whoami", headers={**basic("alice"), "X-Request-ID": incoming})
    rid = upstream.last().header("X-Request-ID")
    assert rid and rid != incoming and len(rid) == 32


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/orders/whoami", id="plain"),
        pytest.param("/orders", id="prefix-itself"),
        pytest.param("/orders/a%20b/%2Fslash?x=1&y=%C3%A9&x=2", id="encoded-and-query"),
        pytest.param("/orders/whoami?access_token=&empty", id="odd-query"),
        pytest.param("/customers/42?fields=name", id="customers"),
    ],
)
def test_path_and_query_are_forwarded_unchanged(client: Client, upstream: Upstream, target: str) -> None:
    assert client.get(target, headers=basic("alice")).status_code == 200
    assert upstream.last().target == target


def test_hop_by_hop_response_headers_are_removed(client: Client, upstream: Upstream) -> None:
    response = client.get("/orders/hop", headers=basic("alice"))
    assert response.status_code == 200
    names = {k.lower() for k in response.headers.keys()}
    assert {"keep-alive", "x-hop-secret", "proxy-authenticate", "upgrade", "connection"}.isdisjoint(names)
    assert response.headers["X-Kept"] == "yes"
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.get_data() == b"hop"


def test_hop_by_hop_request_headers_are_removed(client: Client, upstream: Upstream) -> None:
    client.get(
        "/orders/whoami",
        headers={
            **basic("alice"),
            "Connection": "X-Private",
            "X-Private": "secret",
            "Keep-Alive": "timeout=1",
            "TE": "trailers",
            "Trailer": "X-T",
            "Upgrade": "websocket",
            "Proxy-Connection": "keep-alive",
            "X-Custom": "kept",
        },
    )
    seen = upstream.last()
    assert {"x-private", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"}.isdisjoint(seen.names())
    assert seen.header("X-Custom") == "kept"


def test_large_response_body_arrives_intact(client: Client, upstream: Upstream) -> None:
    response = client.get("/orders/big", headers=basic("alice"))
    assert response.get_data() == bytes(range(256)) * 4096
    assert response.headers["Content-Length"] == str(256 * 4096)


def test_response_is_streamed_not_buffered(gateway: Gateway, upstream: Upstream) -> None:
    environ = EnvironBuilder(path="/orders/stream", headers=basic("alice")).get_environ()
    app_iter, status, headers = run_wsgi_app(gateway, environ, buffered=False)
    try:
        assert status.startswith("200")
        assert "transfer-encoding" not in {k.lower() for k, _ in headers}
        chunks = iter(app_iter)
        first = next(chunks)  # arrives while the upstream still waits for us
        upstream.first_chunk_read.set()
        rest = b"".join(chunks)
    finally:
        getattr(app_iter, "close", lambda: None)()
    assert first + rest == b"first-chunk;second-chunk"
    assert upstream.released_by_client == [True], "the gateway buffered the whole response"


@pytest.mark.parametrize("size", [pytest.param(0, id="empty"), pytest.param(3 * 65536 + 17, id="several-chunks")])
def test_request_body_with_length_is_forwarded(client: Client, upstream: Upstream, size: int) -> None:
    body = b"x" * size
    response = client.post("/orders", data=body, headers={**basic("bob"), "Content-Type": "text/plain"})
    assert response.status_code == 200
    seen = upstream.last()
    assert seen.body == body
    assert seen.header("Content-Length") == str(size)


@pytest.mark.parametrize("size", [pytest.param(17, id="small"), pytest.param(200_000, id="spooled")])
def test_chunked_request_body_is_buffered_and_sent_with_its_length(
    gateway: Gateway, upstream: Upstream, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    environ = EnvironBuilder(path="/orders", method="POST", data=payload, headers=basic("bob")).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"  # as a server passes a chunked body on, decoded
    environ["wsgi.input_terminated"] = True
    app_iter, status, _ = run_wsgi_app(gateway, environ)
    b"".join(app_iter)
    assert status.startswith("200")
    seen = upstream.last()
    assert seen.body == payload
    assert seen.header("Content-Length") == str(size)
    assert seen.header("Transfer-Encoding") is None


def test_refused_upstream_connection_is_502(
    make_config: Callable[..., GatewayConfig],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = Client(Gateway(make_config(routes=(Route("/orders", dead, ("orders-service",)),))))
    response = client.get("/orders/whoami", headers=basic("alice"))
    assert response.status_code == 502
    assert response.json == {"error": "bad_gateway", "error_description": "the upstream service is unreachable"}


def test_slow_upstream_is_504(make_config: Callable[..., GatewayConfig], upstream: Upstream) -> None:
    client = Client(Gateway(make_config(upstream_timeout=0.2)))
    response = client.get("/orders/slow", headers=basic("alice"))
    assert response.status_code == 504
    assert response.json is not None and response.json["error"] == "gateway_timeout"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig"}, id="bearer-only"),
        pytest.param({"Authorization": "Digest username=alice"}, id="other-scheme"),
        pytest.param({"X-User": "alice", "X-Forwarded-User": "alice"}, id="identity-headers-only"),
        pytest.param({"Cookie": "gw_session=alice"}, id="forged-session-cookie"),
    ],
)
def test_requests_without_gateway_credentials_are_refused_and_not_forwarded(
    client: Client, upstream: Upstream, headers: dict[str, str]
) -> None:
    response = client.get("/orders/whoami", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="gateway"'
    assert upstream.requests == []


def test_unknown_prefix_is_404_and_not_forwarded(client: Client, upstream: Upstream) -> None:
    for path in ("/ordersX", "/nothing/here", "/order"):
        response = client.get(path, headers=basic("alice"))
        assert response.status_code == 404, path
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "user", "calls"),
    [
        pytest.param("/orders/a", "alice", [("alice", "/orders/b")], id="same-user-same-route"),
        pytest.param("/orders/a", "alice", [("alice", "/customers/1")], id="same-user-other-route"),
        pytest.param("/orders/a", "alice", [("bob", "/orders/a")], id="other-user-same-route"),
    ],
)
def test_tokens_are_reused_per_principal_and_route(
    client: Client, upstream: Upstream, path: str, user: str, calls: list[tuple[str, str]]
) -> None:
    client.get(path, headers=basic(user))
    first = bearer_of(upstream.last())
    for other_user, other_path in calls:
        client.get(other_path, headers=basic(other_user))
        again = bearer_of(upstream.last())
        same_route = other_path.split("/")[1] == path.split("/")[1]
        assert (again == first) == (same_route and other_user == user)


def test_concurrent_requests_each_carry_their_own_identity(gateway: Gateway, upstream: Upstream) -> None:
    results: dict[str, list[str]] = {"alice": [], "bob": []}

    def run(user: str) -> None:
        local = Client(gateway)
        for _ in range(10):
            r = local.get(f"/orders/whoami?u={user}", headers=basic(user))
            assert r.status_code == 200

    threads = [threading.Thread(target=run, args=(u,)) for u in ("alice", "bob") for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for rec in upstream.requests:
        claims = json.loads(b64url.decode(bearer_of(rec).split(".")[1]))
        results[claims["sub"]].append(rec.target)
    assert all(t.endswith("u=alice") for t in results["alice"]) and len(results["alice"]) == 30
    assert all(t.endswith("u=bob") for t in results["bob"]) and len(results["bob"]) == 30


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("\n", id="lf"),
        pytest.param("a=1\r\nX-Injected: 1", id="crlf-header-injection"),
        pytest.param("a=1 HTTP/1.1", id="space"),
        pytest.param("a=\x00", id="nul"),
        pytest.param("a=1#frag", id="hash"),
    ],
)
def test_control_characters_in_the_query_are_refused_not_forwarded(
    gateway: Gateway, upstream: Upstream, query: str
) -> None:
    # A synthesized environ: werkzeug's Client would encode these, a raw WSGI server may not.
    client = Client(gateway)
    overrides = {"QUERY_STRING": query, "RAW_URI": "", "REQUEST_URI": ""}
    response = client.get("/orders/whoami", headers=basic("alice"), environ_overrides=overrides)
    assert response.status_code == 400
    assert not upstream.requests


def test_non_ascii_query_is_percent_encoded(gateway: Gateway, upstream: Upstream) -> None:
    client = Client(gateway)
    overrides = {"QUERY_STRING": "q=\xe9&x=%41", "RAW_URI": "", "REQUEST_URI": ""}
    response = client.get("/orders/whoami", headers=basic("alice"), environ_overrides=overrides)
    assert response.status_code == 200
    assert upstream.last().target == "/orders/whoami?q=%E9&x=%41"  # the raw byte 0xE9, re-encoded
