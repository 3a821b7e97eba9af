"""The gateway's own endpoints: keys, discovery, login with CSRF and cookie flags, the failed-login
limit, the demo page, nginx's auth_request endpoint, and hostile requests (4xx, never 500)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from _gateway_support import ISSUER, PASSWORDS, Upstream, basic, bearer_of
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from token_middleware.gateway import Gateway, GatewayConfig
from token_middleware.core import b64url
from token_middleware.core.validator import TokenValidator


def csrf_field(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def login(client: Client, user: str = "alice", password: str | None = None, **extra: str):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    form = {
        "csrf_token": csrf_field(page.get_data(as_text=True)),
        "username": user,
        "password": PASSWORDS[user] if password is None else password,
        **extra,
    }
    return client.post("/login", data=form)


# -- keys and discovery ---------------------------------------------------------------------------


def test_jwks_publishes_the_current_public_key(client: Client, gateway: Gateway) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=60"
    current, upcoming, later = response.json["keys"]  # type: ignore[index]
    assert current["kid"] == gateway.keystore.current().kid
    # The next two keys, published ahead of use (keystore: KEYS_AHEAD).
    assert len({current["kid"], upcoming["kid"], later["kid"]}) == 3
    for key in (current, upcoming, later):
        assert key["alg"] == "ES256" and key["use"] == "sig"
        assert "d" not in key, "a private key member was published"


def test_discovery_points_at_the_jwks(client: Client) -> None:
    doc = client.get("/.well-known/openid-configuration").json
    assert doc is not None
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert "orders:write" in doc["scopes_supported"]


def test_jwks_keeps_the_old_key_after_rotation(client: Client, gateway: Gateway) -> None:
    old = gateway.keystore.current().kid
    before = [k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]]  # type: ignore[index]
    new = gateway.keystore.rotate().kid
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]]  # type: ignore[index]
    assert new in before, "the new key was not published before it signed"
    assert kids[0] == new and old in kids


# -- login, session cookie, CSRF ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "secure", "cookie_name"),
    [
        pytest.param("http://127.0.0.1:8000", False, "gw_session", id="http-issuer"),
        pytest.param("https://gw.example", True, "__Host-gw_session", id="https-issuer-secure-host-prefix"),
    ],
)
def test_login_sets_a_hardened_session_cookie(
    make_config: Callable[..., GatewayConfig], issuer: str, secure: bool, cookie_name: str
) -> None:
    client = Client(Gateway(make_config(issuer=issuer)))
    response = login(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/app"
    (session_header,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(cookie_name + "=")]
    attributes = {a.strip().split("=")[0].lower() for a in session_header.split(";")[1:]}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=lax" in session_header.lower()
    assert ("secure" in attributes) is secure


def test_session_cookie_authenticates_forwarded_requests(
    client: Client, gateway: Gateway, upstream: Upstream, validator_for: Callable[[Gateway, str], TokenValidator]
) -> None:
    login(client, "bob", client_name="my-cli")
    assert client.get("/orders/whoami").status_code == 200
    token = validator_for(gateway, "orders-service").validate(bearer_of(upstream.last()))
    assert token.subject == "bob"
    assert token.client_id == "my-cli"
    assert gateway.session_cookie not in (upstream.last().header("Cookie") or "")


@pytest.mark.parametrize(
    ("form_change", "expected_status"),
    [
        pytest.param({"csrf_token": ""}, 403, id="missing-csrf"),
        pytest.param({"csrf_token": "forged"}, 403, id="forged-csrf"),
        pytest.param({"password": "wrong"}, 200, id="wrong-password-shows-form"),
        pytest.param({"username": "mallory"}, 200, id="unknown-user-shows-form"),
        pytest.param({"client_name": "bad name!"}, 400, id="bad-client-name"),
    ],
)
def test_failed_logins_set_no_session(client: Client, gateway: Gateway, form_change: dict[str, str], expected_status: int) -> None:
    page = client.get("/login")
    form = {"csrf_token": csrf_field(page.get_data(as_text=True)), "username": "alice", "password": "alice-password"}
    form.update(form_change)
    response = client.post("/login", data=form)
    assert response.status_code == expected_status
    assert not any(h.startswith(gateway.session_cookie + "=") for h in response.headers.getlist("Set-Cookie"))
    assert client.get("/app").status_code == 303


def test_csrf_token_from_another_browser_is_refused(gateway: Gateway) -> None:
    attacker, victim = Client(gateway), Client(gateway)
    token = csrf_field(attacker.get("/login").get_data(as_text=True))
    victim.get("/login")  # the victim has its own CSRF cookie
    response = victim.post("/login", data={"csrf_token": token, "username": "alice", "password": "alice-password"})
    assert response.status_code == 403


def test_app_page_needs_a_session_and_has_stable_ids(client: Client) -> None:
    assert client.get("/app").headers["Location"] == "/login"
    login(client)
    page = client.get("/app")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for element in ("orders-result", "chain-result", "chain-orders-sub", "chain-customers-sub"):
        assert f'id="{element}"' in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in html, "inline script would be blocked by the CSP"
    assert "fetch(" in client.get("/app.js").get_data(as_text=True)


def test_logout_needs_csrf_and_clears_the_session(client: Client, gateway: Gateway) -> None:
    login(client)
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/app").status_code == 200
    token = csrf_field(client.get("/app").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/app").status_code == 303


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, 403, id="no-origin"),
        pytest.param({"Origin": "https://evil.example"}, 403, id="foreign-origin"),
        pytest.param({"Origin": "null"}, 403, id="null-origin"),
        pytest.param({"Origin": ISSUER}, 200, id="own-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, 200, id="fetch-metadata-same-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, 403, id="fetch-metadata-cross-site"),
    ],
)
def test_cookie_authenticated_unsafe_requests_must_be_same_origin(
    client: Client, upstream: Upstream, headers: dict[str, str], expected: int
) -> None:
    login(client, "bob")
    response = client.post("/orders", json={"item": "x", "quantity": 1}, headers=headers)
    assert response.status_code == expected
    assert (len(upstream.requests) == 1) is (expected == 200)


# -- failed-login limiter -------------------------------------------------------------------------


def test_basic_failures_are_limited_per_client_address(
    make_config: Callable[..., GatewayConfig], upstream: Upstream
) -> None:
    client = Client(Gateway(make_config(login_max_failures=3)))
    attacker = {"REMOTE_ADDR": "198.51.100.1"}
    for _ in range(3):
        assert client.get("/orders/whoami", headers=basic("alice", "guess"), environ_base=attacker).status_code == 401
    blocked = client.get("/orders/whoami", headers=basic("alice"), environ_base=attacker)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    other = client.get("/orders/whoami", headers=basic("alice"), environ_base={"REMOTE_ADDR": "198.51.100.2"})
    assert other.status_code == 200
    assert len(upstream.requests) == 1


def test_form_failures_are_limited(make_config: Callable[..., GatewayConfig]) -> None:
    client = Client(Gateway(make_config(login_max_failures=2)))
    assert login(client, password="no").status_code == 200
    assert login(client, password="no").status_code == 200
    response = login(client)  # right password, but this address is blocked now
    assert response.status_code == 429
    assert "Retry-After" in response.headers


# -- nginx auth_request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected", "python_status", "audience"),
    [
        pytest.param({"X-Original-URI": "/orders/whoami?x=1", **basic("alice")}, 200, 200, "orders-service", id="basic-orders"),
        pytest.param({"X-Original-URI": "/customers/1", **basic("bob")}, 200, 200, "customers-service", id="basic-customers"),
        pytest.param({"X-Original-URI": "/orders/whoami"}, 401, 401, None, id="no-credentials"),
        pytest.param({"X-Original-URI": "/orders/whoami", "Authorization": "Bearer a.b.c"}, 401, 401, None, id="bearer-only"),
        pytest.param({"X-Original-URI": "/orders/whoami", **basic("alice", "wrong")}, 401, 401, None, id="wrong-password"),
        pytest.param({"X-Original-URI": "/elsewhere", **basic("alice")}, 403, 404, None, id="unknown-route"),
        pytest.param({"X-Original-URI": "//orders/whoami", **basic("alice")}, 403, 404, None, id="double-slash-is-no-route"),
        pytest.param({"X-Original-URI": "/orders/../admin", **basic("alice")}, 403, 400, None, id="dot-segments"),
        pytest.param({"X-Original-URI": "/orders/%2e%2e/admin", **basic("alice")}, 403, 400, None, id="encoded-dot-segments"),
        pytest.param({**basic("alice")}, 403, 400, None, id="no-original-uri"),
        pytest.param({"X-Original-URI": "/orders/x", "Authorization": "Basic !!!"}, 403, 400, None, id="bad-basic"),
        pytest.param({"X-Original-URI": "/orders/x", "X-Original-Method": "TRACE", **basic("alice")}, 403, 405, None, id="trace"),
    ],
)
def test_auth_request_endpoint(
    client: Client,
    gateway: Gateway,
    upstream: Upstream,
    validator_for: Callable[[Gateway, str], TokenValidator],
    headers: dict[str, str],
    expected: int,
    python_status: int,
    audience: str | None,
) -> None:
    """nginx passes only 200, 401 and 403 on: any other refusal is a 403 that says, in
    ``X-Auth-Status`` and ``X-Auth-Body``, what the Python edge answers to the same request."""
    response = client.get("/_auth", headers={"X-Original-Method": "GET", **headers})
    assert response.status_code == expected
    if expected == 200:
        assert audience is not None
        token = validator_for(gateway, audience).validate(response.headers["X-Access-Token"])
        user = base64.b64decode(headers["Authorization"].split()[1]).decode().split(":")[0]
        assert token.subject == user
        assert response.headers["Cache-Control"] == "no-store"
    else:
        assert "X-Access-Token" not in response.headers
        assert int(response.headers["X-Auth-Status"]) == python_status
        assert json.loads(response.headers["X-Auth-Body"]) == response.json
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="gateway"'
    assert upstream.requests == [], "auth_request must never forward"


@pytest.mark.parametrize(
    ("path", "environ"),
    [
        pytest.param("//orders/whoami", {}, id="double-slash"),
        pytest.param("/orders/../admin", {}, id="dot-segments"),
        pytest.param("/orders/x", {"REQUEST_METHOD": "TRACE"}, id="trace"),
        pytest.param("/elsewhere", {}, id="no-route"),
    ],
)
def test_auth_request_refuses_as_forwarding_does(
    gateway: Gateway, upstream: Upstream, path: str, environ: dict[str, str]
) -> None:
    """The same request, once through /_auth (nginx's view) and once forwarded (the Python
    edge's): the same status and the same JSON body."""
    method = environ.get("REQUEST_METHOD", "GET")
    auth = Client(gateway).get("/_auth", headers={"X-Original-URI": path, "X-Original-Method": method, **basic("alice")})
    env = EnvironBuilder(path="/", method=method, headers=basic("alice")).get_environ()
    env.update(PATH_INFO=unquote(path), RAW_URI=path, REQUEST_URI=path)
    app_iter, status, _ = run_wsgi_app(gateway, env)
    forwarded = b"".join(app_iter)
    assert auth.headers["X-Auth-Status"] == status.split()[0]
    assert json.loads(auth.headers["X-Auth-Body"]) == json.loads(forwarded)
    assert upstream.requests == []


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("cache_seconds", "later", "expected"),
    [
        pytest.param(30, 0, 30, id="fresh-token-capped"),
        pytest.param(30, 215, 25, id="never-past-the-remint-margin"),
        pytest.param(30, 239.5, 0, id="token-about-to-be-replaced"),
        pytest.param(30, 241, 30, id="replaced-token-fresh-again"),
        pytest.param(0, 0, 0, id="edge-cache-off"),
        pytest.param(300, 0, 240, id="long-cache-still-bounded-by-the-token"),
    ],
)
def test_auth_request_tells_nginx_how_long_it_may_cache(
    make_config: Callable[..., GatewayConfig], cache_seconds: int, later: float, expected: int
) -> None:
    """``X-Accel-Expires`` never lets nginx hand out a token with less life left than the
    gateway's re-mint margin (60 s for the default 300 s TTL)."""
    clock = Clock()
    gateway = Gateway(make_config(auth_cache_seconds=cache_seconds), clock=clock)
    client = Client(gateway)
    headers = {"X-Original-URI": "/orders/whoami", **basic("alice")}
    client.get("/_auth", headers=headers)
    clock.now += later
    response = client.get("/_auth", headers=headers)
    assert response.status_code == 200
    cacheable = int(response.headers["X-Accel-Expires"])
    assert cacheable == expected
    exp = json.loads(b64url.decode(response.headers["X-Access-Token"].split(".")[1]))["exp"]
    assert cacheable <= max(0, exp - clock.now - gateway.minter.margin)
    gateway.close()


def test_refusals_carry_no_cache_lifetime(client: Client) -> None:
    response = client.get("/_auth", headers={"X-Original-URI": "/orders/whoami", **basic("alice", "wrong")})
    assert response.status_code == 401
    assert "X-Accel-Expires" not in response.headers


def test_auth_request_token_is_the_same_as_the_forwarded_one(
    client: Client, upstream: Upstream
) -> None:
    minted = client.get("/_auth", headers={"X-Original-URI": "/orders/a", **basic("alice")}).headers["X-Access-Token"]
    client.get("/orders/b", headers=basic("alice"))
    assert bearer_of(upstream.last()) == minted


# -- hostile input: 4xx, never 500 ----------------------------------------------------------------


def _raw_request(gateway: Gateway, path: str, method: str = "GET", **environ: str) -> str:
    env = EnvironBuilder(path=path, method=method).get_environ()
    env.update(environ)
    app_iter, status, _ = run_wsgi_app(gateway, env)
    b"".join(app_iter)
    return status


@pytest.mark.parametrize(
    ("path", "method", "environ", "expected"),
    [
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic"}, 400, id="basic-empty"),
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic ####"}, 400, id="basic-not-base64"),
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"nocolon").decode()}, 400, id="basic-no-colon"),
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}, 400, id="basic-not-utf8"),
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic " + "QUFB" * 5000}, 400, id="basic-huge"),
        pytest.param("/orders/x", "GET", {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"al\nice:x").decode()}, 400, id="basic-crlf-in-user"),
        pytest.param("/orders/x", "GET", {"HTTP_X_HUGE": "a" * 70000}, 431, id="huge-headers"),
        pytest.param("/orders/x", "GET", {"HTTP_X_EVIL": "a\r\nX-User: root", **{"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}}, 400, id="crlf-in-header"),
        pytest.param("/orders/x", "TRACE", {"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}, 405, id="trace-refused"),
        pytest.param("/orders/x", "G E T", {"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}, 400, id="method-with-spaces"),
        pytest.param("/orders/x", "FOO", {}, 401, id="odd-method-unauthenticated"),
        pytest.param("/orders/../customers/1", "GET", {"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}, 400, id="dot-segments"),
        pytest.param("/orders/x", "GET", {"CONTENT_LENGTH": "abc", "HTTP_AUTHORIZATION": basic("alice")["Authorization"]}, 400, id="bad-content-length"),
        pytest.param("/login", "PUT", {}, 405, id="login-put"),
        pytest.param("/.well-known/jwks.json", "DELETE", {}, 405, id="jwks-delete"),
        pytest.param("/login", "POST", {"CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": "999999"}, 413, id="login-huge-form"),
        pytest.param("/orders/x", "GET", {"HTTP_COOKIE": "gw_session=" + "A" * 5000 + ".x"}, 401, id="huge-session-cookie"),
        pytest.param("/orders/x", "GET", {"HTTP_COOKIE": "gw_session=e30.%%%"}, 401, id="garbage-session-cookie"),
        pytest.param("/orders/x", "GET", {"CONTENT_LENGTH": "5", **{"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}}, 400, id="get-with-a-body"),
        pytest.param("/orders/x", "HEAD", {"HTTP_TRANSFER_ENCODING": "chunked", **{"HTTP_AUTHORIZATION": basic("alice")["Authorization"]}}, 400, id="head-with-a-chunked-body"),
        pytest.param("/login", "GET", {"CONTENT_LENGTH": "5"}, 400, id="get-with-a-body-at-the-gateway-itself"),
        pytest.param("/orders", "POST", {"HTTP_TRANSFER_ENCODING": "chunked, identity", **{"HTTP_AUTHORIZATION": basic("bob")["Authorization"]}}, 400, id="te-list"),
        pytest.param("/orders", "POST", {"HTTP_TRANSFER_ENCODING": "chunked,chunked", **{"HTTP_AUTHORIZATION": basic("bob")["Authorization"]}}, 400, id="te-chunked-twice"),
        pytest.param("/orders", "POST", {"HTTP_TRANSFER_ENCODING": "gzip, chunked", **{"HTTP_AUTHORIZATION": basic("bob")["Authorization"]}}, 400, id="te-gzip"),
        pytest.param("/orders", "POST", {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "5", **{"HTTP_AUTHORIZATION": basic("bob")["Authorization"]}}, 400, id="te-and-length"),
        pytest.param("/orders", "POST", {"CONTENT_LENGTH": str(2 * 1024 * 1024), **{"HTTP_AUTHORIZATION": basic("bob")["Authorization"]}}, 413, id="body-too-large"),
    ],
)
def test_hostile_requests_get_4xx(
    gateway: Gateway, upstream: Upstream, path: str, method: str, environ: dict[str, str], expected: int
) -> None:
    status = _raw_request(gateway, path, method, **environ)
    assert int(status.split()[0]) == expected, status
    assert upstream.requests == []


def test_odd_but_valid_method_is_forwarded(client: Client, upstream: Upstream) -> None:
    response = client.open("/orders/x", method="FOO", headers=basic("alice"))
    assert response.status_code == 200
    assert upstream.last().method == "FOO"


def test_healthz_and_index(client: Client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/").headers["Location"] == "/app"


_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=300)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "FOO", "TRACE", "CONNECT", "G@T", ""]),
    path=st.sampled_from(["/orders/x", "/_auth", "/login", "/logout", "/app", "/customers/1", "/zzz"]),
    authorization=st.one_of(
        _HEADER_TEXT,
        _HEADER_TEXT.map(lambda t: "Basic " + t),
        st.binary(max_size=200).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    ),
    cookie=_HEADER_TEXT,
    other=_HEADER_TEXT,
)
def test_random_requests_never_cause_a_5xx(
    gateway: Gateway, upstream: Upstream, method: str, path: str, authorization: str, cookie: str, other: str
) -> None:
    status = _raw_request(
        gateway,
        path,
        method or "GET",
        REQUEST_METHOD=method,
        HTTP_AUTHORIZATION=authorization,
        HTTP_COOKIE=cookie,
        HTTP_X_ORIGINAL_URI=other,
        HTTP_X_USER=other,
    )
    assert int(status.split()[0]) < 500, status
    assert upstream.requests == [], "a request without valid credentials was forwarded"
