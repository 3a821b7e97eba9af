"""The gateway's smaller parts on their own: configuration, users, sessions and CSRF, and token
reuse in the minter (the failed-login limit has its own file, test_gateway_limits.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _gateway_support import FAST_HASH
from werkzeug.security import generate_password_hash

from token_middleware.core.errors import ConfigurationError
from token_middleware.gateway import GatewayConfig, KeyStore, Route, TokenMinter, User, UserStore
from token_middleware.gateway.config import default_keys_dir
from token_middleware.gateway.issuing.minting import refresh_margin
from token_middleware.gateway.sessions import SessionCodec


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- configuration --------------------------------------------------------------------------------


def test_from_env_defaults(users_file: Path, tmp_path: Path) -> None:
    config = GatewayConfig.from_env({"HOME": str(tmp_path)}, default_users_file=users_file)
    assert config.issuer == "http://127.0.0.1:8000"
    assert config.routes == (
        Route("/orders", "http://127.0.0.1:8001", ("orders-service",)),  # one audience per route
        Route("/customers", "http://127.0.0.1:8002", ("customers-service",)),
    )
    assert config.clients_file is None
    assert config.token_ttl == 300 and config.alg == "ES256"
    assert config.keys_dir == tmp_path / ".local/state/token-middleware/gateway-keys"
    assert config.route_for("/orders/1") == config.routes[0]
    assert config.route_for("/ordersX") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"XDG_STATE_HOME": "/state"}, "/state/token-middleware/gateway-keys", id="xdg"),
        pytest.param({"XDG_STATE_HOME": "relative", "HOME": "/nonexistent-home"}, "token-middleware-", id="tmp-fallback"),
    ],
)
def test_default_keys_dir(environ: dict[str, str], expected: str) -> None:
    assert expected in str(default_keys_dir(environ))


@pytest.mark.parametrize("seconds", [pytest.param(-1, id="negative"), pytest.param(301, id="too-long")])
def test_auth_cache_seconds_is_bounded(users_file: Path, tmp_path: Path, seconds: int) -> None:
    with pytest.raises(ConfigurationError, match="auth_cache_seconds"):
        GatewayConfig(
            issuer="http://gw",
            routes=(Route("/orders", "http://127.0.0.1:1", ("orders-service",)),),
            users_file=users_file,
            keys_dir=tmp_path / "k",
            auth_cache_seconds=seconds,
        )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"GATEWAY_ISSUER": "ftp://x"}, "GATEWAY_ISSUER", id="issuer-scheme"),
        pytest.param({"GATEWAY_ROUTES": "/orders"}, "prefix=value", id="route-without-upstream"),
        pytest.param({"GATEWAY_ROUTES": "orders=http://a"}, "must look like", id="prefix-without-slash"),
        pytest.param({"GATEWAY_ROUTES": "/login=http://a", "GATEWAY_AUDIENCES": "/login=x"}, "gateway's own", id="reserved-prefix"),
        pytest.param({"GATEWAY_ROUTES": "/o=ftp://a", "GATEWAY_AUDIENCES": "/o=x"}, "http(s) URL", id="upstream-scheme"),
        pytest.param({"GATEWAY_ROUTES": "/o=http://a:99999", "GATEWAY_AUDIENCES": "/o=x"}, "http(s) URL", id="upstream-port"),
        pytest.param({"GATEWAY_ROUTES": "/o=http://a,/o=http://b"}, "twice", id="duplicate-prefix"),
        pytest.param({"GATEWAY_ROUTES": "/o=http://a", "GATEWAY_AUDIENCES": "/p=x"}, "not a prefix", id="audience-for-unknown-prefix"),
        pytest.param({"GATEWAY_ROUTES": "/o=http://a,/p=http://b", "GATEWAY_AUDIENCES": "/o=x"}, "no audiences for '/p'", id="prefix-without-audience"),
        pytest.param({"GATEWAY_TOKEN_TTL": "five"}, "GATEWAY_TOKEN_TTL", id="ttl-not-a-number"),
        pytest.param({"GATEWAY_TOKEN_TTL": "0"}, "GATEWAY_TOKEN_TTL", id="ttl-zero"),
        pytest.param({"GATEWAY_ALG": "HS256"}, "GATEWAY_ALG", id="symmetric-alg"),
        pytest.param({"GATEWAY_ALG": "none"}, "GATEWAY_ALG", id="alg-none"),
        pytest.param({"GATEWAY_UPSTREAM_TIMEOUT": "-1"}, "GATEWAY_UPSTREAM_TIMEOUT", id="negative-timeout"),
        pytest.param({"GATEWAY_USERS_FILE": "/nonexistent/users.json"}, "GATEWAY_USERS_FILE", id="missing-users-file"),
        pytest.param({"GATEWAY_TRUSTED_PROXIES": "nginx.local"}, "not an IP address", id="proxy-by-name"),
        pytest.param({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8"}, "exact addresses", id="proxy-as-a-network"),
        pytest.param({"GATEWAY_MAX_BODY_BYTES": "1MB"}, "whole number of bytes", id="body-limit-not-a-number"),
        pytest.param({"GATEWAY_MAX_BODY_BYTES": "0"}, "GATEWAY_MAX_BODY_BYTES", id="body-limit-zero"),
        pytest.param({"GATEWAY_BODY_TIMEOUT": "0"}, "GATEWAY_BODY_TIMEOUT", id="body-timeout-zero"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(
    users_file: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GatewayConfig.from_env(environ, default_users_file=users_file)


def test_users_file_is_required_without_a_default() -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_USERS_FILE is not set"):
        GatewayConfig.from_env({})


# -- users ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        pytest.param("alice", "alice-password", "alice", id="right"),
        pytest.param("alice", "bob-password", None, id="wrong-password"),
        pytest.param("alice", "", None, id="empty-password"),
        pytest.param("Alice", "alice-password", None, id="username-is-case-sensitive"),
        pytest.param("mallory", "alice-password", None, id="unknown-user"),
        pytest.param("alice", "x" * 5000, None, id="overlong-password"),
    ],
)
def test_authenticate(user_store: UserStore, username: str, password: str, expected: str | None) -> None:
    user = user_store.authenticate(username, password)
    assert (user.username if user else None) == expected


def test_unknown_users_cost_a_hash_check_too(user_store: UserStore) -> None:
    user_store.authenticate("mallory", "guess")
    user_store.authenticate("alice", "guess")
    assert user_store.hash_checks == 2


def test_successful_checks_are_remembered_failures_are_not() -> None:
    clock = Clock()
    store = UserStore(
        {"alice": {"password_hash": generate_password_hash("pw", method=FAST_HASH), "scopes": []}},
        cache_ttl=60,
        clock=clock,
    )
    for _ in range(3):
        assert store.authenticate("alice", "pw") is not None
        assert store.authenticate("alice", "nope") is None
    assert store.hash_checks == 1 + 3
    clock.now += 61
    store.authenticate("alice", "pw")
    assert store.hash_checks == 5


@pytest.mark.parametrize(
    ("users", "message"),
    [
        pytest.param({}, "non-empty", id="empty"),
        pytest.param([], "non-empty", id="not-an-object"),
        pytest.param({"a:b": {"password_hash": "x$y", "scopes": []}}, "':'", id="colon-in-username"),
        pytest.param({"a": {"password_hash": "plaintext", "scopes": []}}, "password_hash", id="plaintext-password"),
        pytest.param({"a": {"password_hash": "x$y", "scopes": "orders:read"}}, "scopes", id="scopes-not-a-list"),
        pytest.param({"a": {"password_hash": "x$y", "scopes": ["two words"]}}, "scopes", id="scope-with-space"),
    ],
)
def test_bad_users_files_are_refused(users: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        UserStore(users)


def test_users_file_with_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        UserStore.from_file(path)


def test_demo_users_file_is_valid_and_documented() -> None:
    import demo_gateway

    data = json.loads(demo_gateway.USERS_FILE.read_text())
    store = UserStore(data)
    alice, bob = store.get("alice"), store.get("bob")
    assert alice is not None and "orders:write" not in alice.scopes
    assert bob is not None and "orders:write" in bob.scopes
    assert "alice-password" in (demo_gateway.__doc__ or "")


# -- sessions and CSRF ----------------------------------------------------------------------------


def _codec(clock: Clock, secret: bytes = b"k" * 32) -> SessionCodec:
    return SessionCodec(secret, ttl=3600, clock=clock)


def _tamper(value: str) -> str:
    body, mac = value.split(".")
    return body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        pytest.param(lambda v: v, True, id="as-issued"),
        pytest.param(_tamper, False, id="payload-changed"),
        pytest.param(lambda v: v.split(".")[0] + ".", False, id="mac-removed"),
        pytest.param(lambda v: v + "x", False, id="mac-extended"),
        pytest.param(lambda v: v.replace(".", ".."), False, id="extra-dot"),
        pytest.param(lambda v: "", False, id="empty"),
    ],
)
def test_session_cookie_integrity(change: Any, valid: bool) -> None:
    clock = Clock()
    codec = _codec(clock)
    session = codec.decode(change(codec.encode("alice", "cli")))
    assert (session is not None) is valid
    if session:
        assert (session.username, session.client_id) == ("alice", "cli")


def test_session_cookie_expires_and_depends_on_the_secret() -> None:
    clock = Clock()
    value = _codec(clock).encode("alice", "gateway")
    assert _codec(clock, b"other" * 8).decode(value) is None
    clock.now += 3600
    assert _codec(clock).decode(value) is None


def test_csrf_token_is_bound_to_its_nonce() -> None:
    codec = _codec(Clock())
    nonce, other = codec.new_nonce(), codec.new_nonce()
    assert codec.csrf_valid(nonce, codec.csrf_token(nonce))
    assert not codec.csrf_valid(other, codec.csrf_token(nonce))
    assert not codec.csrf_valid(nonce, None)
    assert not codec.csrf_valid(None, codec.csrf_token(nonce))


# -- minting and reuse ----------------------------------------------------------------------------

ROUTE_A = Route("/orders", "http://127.0.0.1:1", ("orders-service", "customers-service"))
ROUTE_B = Route("/customers", "http://127.0.0.1:1", ("customers-service",))
ALICE = User("alice", ("orders:read",))


@pytest.mark.parametrize(("ttl", "margin"), [(300, 60.0), (60, 30.0), (10, 5.0), (3600, 720.0)])
def test_refresh_margin(ttl: int, margin: float) -> None:
    assert refresh_margin(ttl) == margin


def test_minter_reuses_until_shortly_before_expiry(tmp_path: Path) -> None:
    clock = Clock()
    minter = TokenMinter("http://gw", KeyStore(tmp_path / "k"), ttl=300, clock=clock)
    first = minter.token_for(ALICE, ROUTE_A)
    assert minter.token_for(ALICE, ROUTE_A) == first
    assert minter.token_for(ALICE, ROUTE_A, client_id="cli") != first
    assert minter.token_for(ALICE, ROUTE_B) != first
    clock.now += 300 - 61
    assert minter.token_for(ALICE, ROUTE_A) == first
    clock.now += 2
    assert minter.token_for(ALICE, ROUTE_A) != first


def test_minter_reports_the_expiry_of_the_token_it_hands_out(tmp_path: Path) -> None:
    clock = Clock()
    minter = TokenMinter("http://gw", KeyStore(tmp_path / "k"), ttl=300, clock=clock)
    token, expires = minter.token_and_expiry(ALICE, ROUTE_A)
    assert expires == int(clock.now) + 300
    clock.now += 100
    assert minter.token_and_expiry(ALICE, ROUTE_A) == (token, expires)  # reused, same expiry
    assert minter.token_for(ALICE, ROUTE_A) == token


def test_minter_drops_cached_tokens_on_rotation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k", check_interval=0)
    minter = TokenMinter("http://gw", store)
    first = minter.token_for(ALICE, ROUTE_A)
    KeyStore(tmp_path / "k").rotate()  # another process rotates
    assert minter.token_for(ALICE, ROUTE_A) != first
    assert minter.minted == 2


def test_minter_cache_is_bounded(tmp_path: Path) -> None:
    minter = TokenMinter("http://gw", KeyStore(tmp_path / "k"), max_entries=3)
    for i in range(10):
        minter.token_for(User(f"user{i}", ()), ROUTE_A)
    assert len(minter._cache) == 3


def test_the_login_note_is_plain_text_on_the_login_page(users_file: Path, tmp_path: Path) -> None:
    from token_middleware.gateway import pages

    config = GatewayConfig.from_env({"HOME": str(tmp_path), "GATEWAY_LOGIN_NOTE": " <b>try</b> alice "},
                                    default_users_file=users_file)
    assert config.login_note == "<b>try</b> alice"
    page = pages.login_page("csrf", note=config.login_note)
    assert '<p class="note" id="login-note">&lt;b&gt;try&lt;/b&gt; alice</p>' in page
    assert 'id="login-note"' not in pages.login_page("csrf")
    assert GatewayConfig.from_env({"HOME": str(tmp_path)}, default_users_file=users_file).login_note == ""
