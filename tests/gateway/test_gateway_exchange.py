"""The gateway's RFC 8693 token endpoint (``POST /oauth2/token``, shared/DESIGN.md "Per-hop token
exchange"): client authentication, every RFC 6749 error code, the issued token's claims as the
customers service validates them, and the library's own exchange client against the real endpoint.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from _gateway_support import FAST_HASH
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server
from werkzeug.test import Client

from token_middleware.core.errors import ConfigurationError, InvalidAudience
from token_middleware.core.exchange import ExchangeRefused, TokenExchanger
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.token import act_claim
from token_middleware.core.validator import TokenValidator
from token_middleware.gateway import Gateway, GatewayConfig
from token_middleware.gateway.issuing.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE, ClientStore

SECRET = "orders s3cret:with+odd&chars"
CLIENTS = {
    "orders-service": {
        "secret_hash": generate_password_hash(SECRET, method=FAST_HASH),
        "audience": "orders-service",
        "may_exchange_for": {"customers-service": ["customers:read", "customers:write"]},
    },
    "reports": {
        "secret_hash": generate_password_hash("reports-secret", method=FAST_HASH),
        "audience": "reports-service",
        "may_exchange_for": {},
    },
}


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-encode both parts, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(CLIENTS))
    return path


@pytest.fixture
def gw(make_config: Callable[..., GatewayConfig], clients_file: Path) -> Iterator[Gateway]:
    gateway = Gateway(make_config(clients_file=clients_file))
    yield gateway
    gateway.close()


@pytest.fixture
def mint(gw: Gateway) -> Callable[..., str]:
    """A subject token signed by the gateway's own key (defaults: alice for orders-service)."""

    def make(**claims: Any) -> str:
        values: dict[str, Any] = {"sub": "alice", "audience": "orders-service",
                                  "scopes": ["orders:read", "customers:read"]}
        values.update(claims)
        return TokenIssuer(gw.config.issuer, gw.keystore.current()).mint(**values)

    return make


def form(subject: str, **extra: str) -> dict[str, str]:
    values = {"grant_type": GRANT_TYPE, "subject_token": subject, "subject_token_type": ACCESS_TOKEN_TYPE,
              "audience": "customers-service"}
    values.update(extra)
    return {k: v for k, v in values.items() if v != "-"}


def post(gw: Gateway, data: dict[str, str] | str, *, auth: str | None = None,
         content_type: str = "application/x-www-form-urlencoded") -> Any:
    headers = {"Authorization": basic("orders-service", SECRET) if auth is None else auth}
    if not headers["Authorization"]:
        del headers["Authorization"]
    body = data if isinstance(data, str) else "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in data.items())
    return Client(gw).post("/oauth2/token", data=body, headers=headers, content_type=content_type)


def customers_validator(gw: Gateway, tmp_path: Path) -> TokenValidator:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(gw.keystore.jwks()))
    return TokenValidator(Settings.from_mapping(
        {"ISSUER": gw.config.issuer, "AUDIENCE": "customers-service", "PUBLIC_KEYS": str(jwks)}), cache_size=0)


# -- discovery and success ---------------------------------------------------------------------

def test_discovery_advertises_the_token_endpoint(gw: Gateway) -> None:
    document = Client(gw).get("/.well-known/openid-configuration").get_json()
    assert document["token_endpoint"] == gw.config.issuer_base + "/oauth2/token"
    assert GRANT_TYPE in document["grant_types_supported"]
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]


def test_without_a_clients_file_there_is_no_token_endpoint(client: Client) -> None:
    assert "token_endpoint" not in client.get("/.well-known/openid-configuration").get_json()
    assert client.post("/oauth2/token", data={"grant_type": GRANT_TYPE}).status_code == 404


def test_the_issued_token_is_meant_for_the_target_alone(gw: Gateway, mint: Callable[..., str],
                                                        tmp_path: Path) -> None:
    subject_raw = mint()
    response = post(gw, form(subject_raw))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    answer = response.get_json()
    assert answer["issued_token_type"] == ACCESS_TOKEN_TYPE and answer["token_type"] == "Bearer"
    assert answer["scope"] == "customers:read"  # subject scopes ∩ allowance
    issued = customers_validator(gw, tmp_path).validate(answer["access_token"])
    subject = TokenValidator(Settings.from_mapping({"ISSUER": gw.config.issuer, "AUDIENCE": "orders-service",
                                                    "PUBLIC_KEYS": str(tmp_path / "jwks.json")})).validate(subject_raw)
    assert issued.subject == "alice"
    assert issued.audience == ("customers-service",)
    assert issued.scopes == {"customers:read"}
    assert issued.client_id == "orders-service"
    assert issued.actors == ("orders-service",)
    assert issued.claims["act"] == {"sub": "orders-service"}
    assert issued.jti and issued.jti != subject.jti
    assert issued.expires_at is not None and subject.expires_at is not None
    assert issued.expires_at <= subject.expires_at
    assert 0 < answer["expires_in"] <= 300
    header = json.loads(base64.urlsafe_b64decode(answer["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["kid"] == gw.keystore.current().kid
    # The token meant for customers opens nothing at the orders service.
    with pytest.raises(InvalidAudience):
        TokenValidator(Settings.from_mapping({"ISSUER": gw.config.issuer, "AUDIENCE": "orders-service",
                                              "PUBLIC_KEYS": str(tmp_path / "jwks.json")})).validate(answer["access_token"])


def test_exp_is_clamped_to_the_subject_token(gw: Gateway, mint: Callable[..., str], tmp_path: Path) -> None:
    subject_raw = mint(ttl=40)
    answer = post(gw, form(subject_raw)).get_json()
    assert answer["expires_in"] <= 40
    issued = customers_validator(gw, tmp_path).validate(answer["access_token"])
    assert issued.expires_at is not None and issued.expires_at <= time.time() + 40


def test_act_nests_the_subject_tokens_own_actors(gw: Gateway, mint: Callable[..., str], tmp_path: Path) -> None:
    subject_raw = mint(act=act_claim(["edge-service", "mobile-bff"]))
    answer = post(gw, form(subject_raw)).get_json()
    issued = customers_validator(gw, tmp_path).validate(answer["access_token"])
    assert issued.actors == ("orders-service", "edge-service", "mobile-bff")
    assert issued.claims["act"] == {"sub": "orders-service", "act": {"sub": "edge-service",
                                                                     "act": {"sub": "mobile-bff"}}}


@pytest.mark.parametrize(("requested", "subject_scopes", "status", "granted"), [
    pytest.param("customers:read", ["customers:read", "orders:read"], 200, "customers:read", id="asked-and-held"),
    pytest.param("customers:write", ["customers:read"], 400, None, id="allowed-but-not-held"),
    pytest.param("orders:read", ["orders:read", "customers:read"], 400, None, id="held-but-not-allowed"),
    pytest.param("customers:read customers:write", ["customers:read"], 400, None, id="one-too-many"),
    pytest.param("-", ["orders:read"], 200, "", id="default-with-no-overlap-grants-nothing"),
])
def test_scopes_are_never_widened(gw: Gateway, mint: Callable[..., str], requested: str,
                                  subject_scopes: list[str], status: int, granted: str | None) -> None:
    response = post(gw, form(mint(scopes=subject_scopes), scope=requested))
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200:
        assert response.get_json()["scope"] == granted
    else:
        assert response.get_json()["error"] == "invalid_scope"


# -- every error code ----------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [
    pytest.param("", id="none"),
    pytest.param("Bearer abc", id="bearer"),
    pytest.param("Basic !!!", id="malformed"),
    pytest.param(basic("orders-service", "wrong"), id="wrong-secret"),
    pytest.param(basic("nobody", SECRET), id="unknown-client"),
    pytest.param("Basic " + base64.b64encode(b"orders-service").decode(), id="no-colon"),
])
def test_invalid_client(gw: Gateway, mint: Callable[..., str], auth: str) -> None:
    response = post(gw, form(mint()), auth=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["error"] == "invalid_client"


def test_unknown_client_and_wrong_secret_are_indistinguishable(gw: Gateway, mint: Callable[..., str]) -> None:
    wrong = post(gw, form(mint()), auth=basic("orders-service", "wrong"))
    unknown = post(gw, form(mint()), auth=basic("nobody", "wrong"))
    assert wrong.get_data() == unknown.get_data()
    drop = {"X-Request-ID"}
    assert {k: v for k, v in wrong.headers if k not in drop} == {k: v for k, v in unknown.headers if k not in drop}


@pytest.mark.parametrize(("change", "error"), [
    pytest.param({"subject_token": "-"}, "invalid_request", id="missing-subject"),
    pytest.param({"audience": "-"}, "invalid_request", id="missing-audience"),
    pytest.param({"grant_type": "-"}, "invalid_request", id="missing-grant"),
    pytest.param({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request",
                 id="wrong-subject-type"),
    pytest.param({"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, "invalid_request",
                 id="wrong-requested-type"),
    pytest.param({"actor_token": "x"}, "invalid_request", id="actor-token"),
    pytest.param({"grant_type": "client_credentials"}, "unsupported_grant_type", id="grant"),
    pytest.param({"audience": "payments-service"}, "invalid_target", id="target-not-allowed"),
    pytest.param({"audience": "orders-service"}, "invalid_target", id="own-audience"),
    pytest.param({"resource": "http://x"}, "invalid_target", id="resource"),
    pytest.param({"subject_token": "not-a-jwt"}, "invalid_grant", id="garbage-subject"),
])
def test_bad_requests(gw: Gateway, mint: Callable[..., str], change: dict[str, str], error: str) -> None:
    response = post(gw, form(mint(), **change))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("body", "content_type"), [
    pytest.param(f"grant_type={quote_plus(GRANT_TYPE)}&audience=a&audience=b", "application/x-www-form-urlencoded",
                 id="repeated"),
    pytest.param(json.dumps({"grant_type": GRANT_TYPE}), "application/json", id="json-body"),
    pytest.param("a=%zz&&b", "application/x-www-form-urlencoded", id="malformed"),
    pytest.param("x=" + "a" * 20_000, "application/x-www-form-urlencoded", id="too-large"),
])
def test_malformed_bodies_are_invalid_request(gw: Gateway, body: str, content_type: str) -> None:
    response = post(gw, body, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_a_huge_body_is_refused_before_parsing(gw: Gateway) -> None:
    response = post(gw, "x=" + "a" * 200_000)
    assert 400 <= response.status_code < 500
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("claims", [
    pytest.param({"audience": "customers-service"}, id="meant-for-another-service"),
    pytest.param({"audience": ["reports-service"]}, id="meant-for-another-client"),
    pytest.param({"ttl": -120}, id="expired"),
])
def test_invalid_grant(gw: Gateway, mint: Callable[..., str], claims: dict[str, Any]) -> None:
    response = post(gw, form(mint(**claims)))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_a_token_from_another_issuer_or_key_is_invalid_grant(gw: Gateway) -> None:
    other_key = SigningKey.generate("ES256")
    foreign = TokenIssuer("http://elsewhere.test", other_key).mint(sub="alice", audience="orders-service")
    forged = TokenIssuer(gw.config.issuer, other_key).mint(sub="alice", audience="orders-service")
    for token in (foreign, forged):
        response = post(gw, form(token))
        assert (response.status_code, response.get_json()["error"]) == (400, "invalid_grant")


def test_get_is_not_allowed(gw: Gateway) -> None:
    assert Client(gw).get("/oauth2/token").status_code == 405


def test_answers_are_counted_by_result(gw: Gateway, mint: Callable[..., str]) -> None:
    if gw.metrics is None:
        pytest.skip("prometheus_client is not installed")
    seen: list[str] = []
    gw.metrics = type("Recorder", (), {"exchange": lambda self, r: seen.append(r)})()  # type: ignore[assignment]
    post(gw, form(mint()))
    post(gw, form(mint()), auth=basic("orders-service", "wrong"))
    post(gw, form(mint(), audience="payments-service"))
    assert seen == ["ok", "invalid_client", "invalid_target"]


# -- the clients file ----------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "fragment"), [
    pytest.param([], "JSON object", id="not-an-object"),
    pytest.param({"a:b": {}}, "client id", id="colon-in-id"),
    pytest.param({"c": {"secret_hash": "plain", "audience": "c"}}, "werkzeug.security hash", id="plain-secret"),
    pytest.param({"c": {"secret_hash": "x$y", "audience": ""}}, "own audience", id="no-audience"),
    pytest.param({"c": {"secret_hash": "x$y", "audience": "c", "may_exchange_for": {"t": "s"}}},
                 "list of scopes", id="scopes-not-a-list"),
    pytest.param({"c": {"secret_hash": "x$y", "audience": "c", "secret": "s"}}, "unknown key", id="unknown-key"),
])
def test_a_bad_clients_file_stops_the_start(tmp_path: Path, data: Any, fragment: str) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=fragment):
        ClientStore.from_file(path)


def test_config_names_a_missing_clients_file(tmp_path: Path, users_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_CLIENTS_FILE"):
        GatewayConfig.from_env({"GATEWAY_USERS_FILE": str(users_file), "GATEWAY_KEYS_DIR": str(tmp_path),
                                "GATEWAY_CLIENTS_FILE": str(tmp_path / "missing.json")})
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        ClientStore.from_file(path)


def test_default_audiences_are_one_per_route(tmp_path: Path, users_file: Path) -> None:
    config = GatewayConfig.from_env({"GATEWAY_USERS_FILE": str(users_file), "GATEWAY_KEYS_DIR": str(tmp_path)})
    assert {r.prefix: r.audiences for r in config.routes} == {
        "/orders": ("orders-service",), "/customers": ("customers-service",)}


# -- the library's own exchange client against the real endpoint ---------------------------------

@pytest.fixture
def served(make_config: Callable[..., GatewayConfig], clients_file: Path) -> Iterator[Gateway]:
    """The gateway on a real loopback port, its issuer that URL (so discovery leads back to it)."""
    server = make_server("127.0.0.1", 0, lambda environ, start_response: [], threaded=True)
    gateway = Gateway(make_config(issuer=f"http://127.0.0.1:{server.server_port}", clients_file=clients_file))
    server.app = gateway
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        gateway.close()


def test_the_service_side_exchanger_works_against_the_gateway(served: Gateway, tmp_path: Path) -> None:
    issuer = served.config.issuer
    raw = TokenIssuer(issuer, served.keystore.current()).mint(
        sub="bob", audience="orders-service", scopes=["orders:read", "customers:read"])
    jwks = tmp_path / "served-jwks.json"
    jwks.write_text(json.dumps(served.keystore.jwks()))
    orders = TokenValidator(Settings.from_mapping({"ISSUER": issuer, "AUDIENCE": "orders-service",
                                                   "PUBLIC_KEYS": str(jwks)}))
    subject = orders.validate(raw)
    exchanger = TokenExchanger(client_id="orders-service", client_secret=SECRET, issuers=[issuer])
    issued_raw = exchanger.exchange(subject, "customers-service")  # token_endpoint from discovery
    assert exchanger.exchange(subject, "customers-service") == issued_raw  # cached: one request
    assert exchanger.requests == 1
    issued = customers_validator(served, tmp_path).validate(issued_raw)
    assert (issued.subject, issued.audience, issued.actors) == ("bob", ("customers-service",), ("orders-service",))
    assert issued.scopes == {"customers:read"}

    wrong = TokenExchanger(client_id="orders-service", client_secret="wrong", issuers=[issuer])
    with pytest.raises(ExchangeRefused) as refused:
        wrong.exchange(subject, "customers-service")
    assert refused.value.error == "invalid_client"
    with pytest.raises(ExchangeRefused) as target:
        exchanger.exchange(subject, "payments-service")
    assert target.value.error == "invalid_target"
