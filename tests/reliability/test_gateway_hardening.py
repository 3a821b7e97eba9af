"""Gateway hardening: password hashes, the unknown-user path, cookie flags, CSRF, the failed-login
limit (per worker), and upstream failures that end as 502/504 instead of hanging.

The gateway runs in process (werkzeug's test client) and forwards to real loopback servers.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_stack import Recorder, blackhole, write_users_file
from werkzeug.security import generate_password_hash
from werkzeug.test import Client, TestResponse

from demo_gateway.supervisor import free_port
from token_middleware.core.errors import ConfigurationError
from token_middleware.gateway import Gateway, GatewayConfig, Route, UserStore

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
HTTP_ISSUER = "http://gateway.test"
HTTPS_ISSUER = "https://gateway.test"
#: Where werkzeug's test client sends requests by default (its cookies are for this host).
LOCAL = "http://localhost"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_users_file(tmp_path_factory.mktemp("users") / "users.json", PASSWORDS)


@pytest.fixture
def make_gateway(tmp_path: Path, users_file: Path, upstream: Recorder) -> Iterator[Callable[..., Gateway]]:
    """``make_gateway(**config_overrides)``; every gateway made here shares one keys dir, as the
    workers of one gunicorn do, and is closed after the test."""
    made: list[Gateway] = []

    def make(**overrides: Any) -> Gateway:
        values: dict[str, Any] = {
            "issuer": HTTP_ISSUER,
            "routes": (Route("/orders", upstream.url, ("orders-service",)),),
            "users_file": users_file,
            "keys_dir": tmp_path / "keys",
            "upstream_timeout": 5.0,
        }
        values.update(overrides)
        gateway = Gateway(GatewayConfig(**values))
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


def set_cookies(response: TestResponse) -> dict[str, str]:
    """``cookie name -> full Set-Cookie header`` of a response."""
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def csrf_field(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert match, "the login form has no csrf_token field"
    return match.group(1)


# --- passwords ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["pbkdf2:sha256:1000", "scrypt:1024:8:1"], ids=["pbkdf2", "scrypt"]
)
def test_users_file_hashes_of_any_werkzeug_method_are_checked(tmp_path: Path, method: str) -> None:
    store = UserStore({"alice": {"password_hash": generate_password_hash("s3cret", method=method)}})

    assert store.authenticate("alice", "s3cret") is not None
    assert store.authenticate("alice", "S3cret") is None


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"password_hash": "alice-password"}, id="plaintext-password"),
        pytest.param({"password": "alice-password"}, id="password-field"),
        pytest.param({"password_hash": ""}, id="empty-hash"),
    ],
)
def test_a_users_file_without_a_real_hash_stops_the_gateway(entry: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="password_hash"):
        UserStore({"alice": entry})


@pytest.mark.parametrize(
    ("user", "password"),
    [
        pytest.param("alice", "wrong-password", id="wrong-password"),
        pytest.param("mallory", "alice-password", id="unknown-user"),
        pytest.param("alice", "", id="empty-password"),
        pytest.param("ALICE", "alice-password", id="case-changed-user"),
    ],
)
def test_unknown_users_and_wrong_passwords_get_the_same_answer_and_the_same_hash_check(
    make_gateway: Callable[..., Gateway], upstream: Recorder, user: str, password: str
) -> None:
    gateway = make_gateway()
    client = Client(gateway)
    before_checks, before_forwarded = gateway.users.hash_checks, len(upstream.snapshot())

    response = client.get("/orders/whoami", headers=basic(user, password))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="gateway"'
    assert response.json == {"error": "invalid_credentials", "error_description": "wrong username or password"}
    # Unknown or not, exactly one password hash was computed (constant-time path) ...
    assert gateway.users.hash_checks == before_checks + 1
    # ... and nothing was forwarded.
    assert len(upstream.snapshot()) == before_forwarded


# --- cookies and CSRF ---------------------------------------------------------------------------


def login(client: Client, base_url: str, user: str = "alice", password: str = "alice-password",
          csrf: str | None = None) -> TestResponse:
    page = client.get("/login", base_url=base_url)
    token = csrf_field(page.get_data(as_text=True)) if csrf is None else csrf
    return client.post(
        "/login", base_url=base_url,
        data={"csrf_token": token, "username": user, "password": password},
    )


@pytest.mark.parametrize(
    ("issuer", "secure", "prefix"),
    [pytest.param(HTTP_ISSUER, False, "", id="http-issuer"),
     pytest.param(HTTPS_ISSUER, True, "__Host-", id="https-issuer")],
)
def test_login_cookies_have_safe_flags(
    make_gateway: Callable[..., Gateway], issuer: str, secure: bool, prefix: str
) -> None:
    client = Client(make_gateway(issuer=issuer))
    base_url = issuer  # cookies of an https issuer are Secure: the client must speak https

    form = client.get("/login", base_url=base_url)
    response = login(client, base_url)

    assert response.status_code == 303
    cookies = {**set_cookies(form), **set_cookies(response)}
    assert set(cookies) == {f"{prefix}gw_csrf", f"{prefix}gw_session"}
    for header in cookies.values():
        attributes = {part.strip().split("=", 1)[0].lower() for part in header.split(";")[1:]}
        assert "httponly" in attributes, header
        assert "samesite=lax" in header.lower(), header
        assert "path=/" in header.lower(), header
        assert ("secure" in attributes) is secure, header
        assert "domain" not in attributes, header


@pytest.mark.parametrize(
    "csrf",
    [
        pytest.param("", id="missing"),
        pytest.param("not-the-token", id="wrong"),
        pytest.param("A" * 43, id="right-length-wrong-mac"),
        pytest.param("x" * 5000, id="huge"),
    ],
)
def test_login_form_csrf_is_required(make_gateway: Callable[..., Gateway], csrf: str) -> None:
    client = Client(make_gateway())

    response = login(client, LOCAL, csrf=csrf)

    assert response.status_code == 403
    assert "gw_session" not in set_cookies(response)
    assert client.get("/orders/whoami").status_code == 401


def test_login_form_csrf_token_of_another_browser_is_refused(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    attacker, victim = Client(gateway), Client(gateway)
    attackers_token = csrf_field(attacker.get("/login").get_data(as_text=True))
    victim.get("/login")  # the victim has its own CSRF cookie

    response = login(victim, LOCAL, csrf=attackers_token)

    assert response.status_code == 403
    assert "gw_session" not in set_cookies(response)


def test_login_form_csrf_with_the_right_token_signs_in(make_gateway: Callable[..., Gateway]) -> None:
    client = Client(make_gateway())

    response = login(client, LOCAL)

    assert response.status_code == 303
    assert client.get("/orders/whoami").status_code == 200


def test_logout_needs_the_csrf_token(make_gateway: Callable[..., Gateway]) -> None:
    client = Client(make_gateway())
    login(client, LOCAL)

    refused = client.post("/logout", data={})

    assert refused.status_code == 403
    assert client.get("/orders/whoami").status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Origin": "https://evil.example"}, 403, id="foreign-origin"),
        pytest.param({"Origin": "null"}, 403, id="null-origin"),
        pytest.param({}, 403, id="no-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, 403, id="cross-site-fetch"),
        pytest.param({"Origin": LOCAL}, 200, id="own-host-origin"),
        pytest.param({"Origin": HTTP_ISSUER}, 200, id="issuer-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, 200, id="same-origin-fetch"),
    ],
)
def test_cookie_session_refuses_cross_site_writes(
    make_gateway: Callable[..., Gateway], upstream: Recorder, headers: dict[str, str], status: int
) -> None:
    client = Client(make_gateway())
    login(client, LOCAL)
    before = len(upstream.snapshot())

    response = client.post("/orders", json={"item": "tea", "quantity": 1}, headers=headers)

    assert response.status_code == status
    assert len(upstream.snapshot()) == before + (1 if status == 200 else 0)


# --- failed-login limit ---------------------------------------------------------------------------


def test_failed_logins_are_limited_per_client(make_gateway: Callable[..., Gateway], upstream: Recorder) -> None:
    gateway = make_gateway(login_max_failures=3, login_window=300)
    client = Client(gateway)
    attacker = {"REMOTE_ADDR": "198.51.100.7"}

    failures = [
        client.get("/orders/whoami", headers=basic("alice", f"guess-{i}"), environ_base=attacker).status_code
        for i in range(3)
    ]
    blocked = client.get("/orders/whoami", headers=basic("alice", "alice-password"), environ_base=attacker)
    other_client = client.get("/orders/whoami", headers=basic("alice", "alice-password"),
                              environ_base={"REMOTE_ADDR": "198.51.100.8"})

    assert failures == [401, 401, 401]
    assert blocked.status_code == 429
    assert blocked.json is not None and "too many failed logins" in blocked.json["error_description"]
    assert 1 <= int(blocked.headers["Retry-After"]) <= 300
    assert other_client.status_code == 200


def test_failed_logins_on_the_form_are_limited_too(make_gateway: Callable[..., Gateway]) -> None:
    client = Client(make_gateway(login_max_failures=2))
    for _ in range(2):
        assert login(client, LOCAL, password="nope").status_code == 200  # the form, again

    response = login(client, LOCAL)

    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert "gw_session" not in set_cookies(response)


def test_failed_logins_are_limited_per_worker_as_documented(make_gateway: Callable[..., Gateway]) -> None:
    """Two gateways on one keys dir are two gunicorn workers: each counts its own failures, so an
    attacker gets up to workers x limit tries per window (SECURITY.md says so)."""
    worker_a = Client(make_gateway(login_max_failures=2))
    worker_b = Client(make_gateway(login_max_failures=2))
    for i in range(2):
        worker_a.get("/orders/whoami", headers=basic("alice", f"guess-{i}"))

    assert worker_a.get("/orders/whoami", headers=basic("alice", "guess-x")).status_code == 429
    assert worker_b.get("/orders/whoami", headers=basic("alice", "guess-y")).status_code == 401


# --- upstream failures ----------------------------------------------------------------------------

UPSTREAM_TIMEOUT = 1.0
#: Generous: the point is "bounded, not a hang", not a benchmark.
BOUND = 15 * UPSTREAM_TIMEOUT


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        pytest.param("refused", 502, id="refused-port-502"),
        pytest.param("never-accepts", 504, id="blackhole-socket-504"),
        pytest.param("never-answers", 504, id="reads-request-never-answers-504"),
    ],
)
def test_upstream_failures_are_bounded(make_gateway: Callable[..., Gateway], kind: str, status: int) -> None:
    def run(upstream_url: str) -> tuple[TestResponse, float]:
        gateway = make_gateway(
            routes=(Route("/orders", upstream_url, ("orders-service",)),), upstream_timeout=UPSTREAM_TIMEOUT
        )
        started = time.monotonic()
        response = Client(gateway).get("/orders/whoami", headers=basic("alice", "alice-password"))
        return response, time.monotonic() - started

    if kind == "refused":
        response, elapsed = run(f"http://127.0.0.1:{free_port()}")
    elif kind == "never-accepts":
        with blackhole() as port:
            response, elapsed = run(f"http://127.0.0.1:{port}")
    else:
        with Recorder(responder=lambda received: None) as silent:
            response, elapsed = run(silent.url)

    assert response.status_code == status
    assert response.json is not None and response.json["error"] in ("bad_gateway", "gateway_timeout")
    assert elapsed < BOUND, f"took {elapsed:.1f}s with a {UPSTREAM_TIMEOUT}s upstream timeout"
    assert json.dumps(response.json).find("Traceback") == -1
