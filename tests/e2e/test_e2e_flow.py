"""The access-token pattern end to end, through the Python gateway and through nginx.

Every test that takes ``front`` runs twice: once against ``demo_gateway`` forwarding by itself,
once against nginx using the gateway's ``/_auth`` endpoint. The results must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from _e2e_support import Front

from demo_gateway.supervisor import DemoStack
from token_middleware.core.issuer import SigningKey, TokenIssuer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_basic_login_then_chain_carries_the_same_sub_to_both_services(
    front: Any, http: requests.Session, users: Any, user: str
) -> None:
    r = http.get(f"{front.url}/orders/chain", auth=(user, users[user][0]), timeout=10)

    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["orders"]["service"] == "orders"
    assert body["customers"]["service"] == "customers"
    assert body["orders"]["sub"] == body["customers"]["sub"] == user
    # Exchange mode (the demo's default): each hop's token is its own, narrowed at each hop.
    assert body["orders"]["scopes"] == users[user][1]
    assert body["orders"]["aud"] == ["orders-service"] and body["orders"]["act"] == []
    assert body["customers"]["scopes"] == ["customers:read"]
    assert body["customers"]["aud"] == ["customers-service"]
    assert body["customers"]["act"] == ["orders-service"]
    assert body["customers"]["client_id"] == "orders-service"


def test_session_cookie_login_then_chain(front: Any, http: requests.Session, login: Any) -> None:
    response = login(http, front.url, "alice")
    assert response.status_code in (302, 303), response.text[:300]

    r = http.get(f"{front.url}/orders/chain", timeout=10)

    assert r.status_code == 200, r.text[:300]
    assert r.json()["orders"]["sub"] == r.json()["customers"]["sub"] == "alice"


def test_login_form_without_its_csrf_field_is_refused(front: Any, http: requests.Session) -> None:
    http.get(f"{front.url}/login", timeout=10)
    r = http.post(
        f"{front.url}/login",
        data={"username": "alice", "password": "alice-password"},
        timeout=10,
        allow_redirects=False,
    )

    assert r.status_code in (400, 403)
    assert http.get(f"{front.url}/orders/whoami", timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("user", "status"),
    [pytest.param("alice", 403, id="reader-gets-403"), pytest.param("bob", 201, id="writer-gets-201")],
)
def test_post_orders_needs_orders_write(
    front: Any, http: requests.Session, users: Any, user: str, status: int
) -> None:
    r = http.post(
        f"{front.url}/orders",
        json={"item": "green tea", "quantity": 3},
        auth=(user, users[user][0]),
        timeout=10,
    )

    assert r.status_code == status, r.text[:300]
    if status == 403:
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="orders:write"' in challenge
        assert r.json()["error"] == "insufficient_scope"
    else:
        order = r.json()
        assert order["customer_id"] == "bob"
        assert (order["item"], order["quantity"]) == ("green tea", 3)


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        pytest.param(b"{not json", "application/json", "not valid JSON", id="broken-json"),
        pytest.param(b'{"item": "tea"}', "application/json", "quantity", id="missing-quantity"),
        pytest.param(b'{"item": "tea", "quantity": 0}', "application/json", "positive", id="zero"),
        pytest.param(b'{"item": "tea", "quantity": true}', "application/json", "positive", id="bool"),
        pytest.param(b'{"item": "", "quantity": 1}', "application/json", "item", id="empty-item"),
        pytest.param(b"[1, 2]", "application/json", "JSON object", id="not-an-object"),
        pytest.param(b"item=tea", "application/x-www-form-urlencoded", "JSON", id="form-body"),
    ],
)
def test_post_orders_with_a_bad_body_gets_400_with_a_clear_message(
    stack: DemoStack, http: requests.Session, body: bytes, content_type: str, needle: str
) -> None:
    r = http.post(
        f"{stack.gateway_url}/orders",
        data=body,
        headers={"Content-Type": content_type},
        auth=("bob", "bob-password"),
        timeout=10,
    )

    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"] == "invalid_request"
    assert needle in r.json()["error_description"]


def test_get_orders_enriches_each_order_with_its_customer(front: Any, http: requests.Session) -> None:
    r = http.get(f"{front.url}/orders", auth=("alice", "alice-password"), timeout=10)

    assert r.status_code == 200, r.text[:300]
    orders = r.json()["orders"]
    assert orders
    for order in orders:
        assert order["customer"]["id"] == order["customer_id"]
        assert order["customer"]["name"]


def test_a_forged_bearer_token_at_the_edge_is_refused(front: Any, http: requests.Session) -> None:
    forger = TokenIssuer(front.stack.gateway_url, SigningKey.generate("ES256"), ttl=300)
    forged = forger.mint(
        sub="bob",
        audience=["orders-service", "customers-service"],
        scopes=["orders:read", "orders:write", "customers:read"],
        client_id="gateway",
    )

    r = http.get(f"{front.url}/orders/whoami", headers={"Authorization": f"Bearer {forged}"}, timeout=10)

    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert 'realm="gateway"' in r.headers["WWW-Authenticate"]


def test_a_forged_token_sent_straight_to_a_service_is_refused(
    stack: DemoStack, http: requests.Session
) -> None:
    forger = TokenIssuer(stack.gateway_url, SigningKey.generate("ES256"), ttl=300)
    forged = forger.mint(sub="bob", audience=["orders-service"], scopes=["orders:write"], client_id="gateway")

    r = http.get(f"{stack.orders_url}/orders/whoami", headers={"Authorization": f"Bearer {forged}"}, timeout=10)

    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


SPOOFED = {
    "X-User": "bob",
    "X-Forwarded-User": "bob",
    "X-Remote-User": "bob",
    "Remote-User": "bob",
    "X-Auth-Request-User": "bob",
    "X-Scopes": "orders:write",
}


def test_spoofed_identity_headers_are_ignored(front: Any, http: requests.Session) -> None:
    r = http.get(f"{front.url}/orders/chain", auth=("alice", "alice-password"), headers=SPOOFED, timeout=10)

    assert r.status_code == 200, r.text[:300]
    assert r.json()["orders"]["sub"] == r.json()["customers"]["sub"] == "alice"
    assert "orders:write" not in r.json()["orders"]["scopes"]


def test_spoofed_identity_headers_alone_are_not_a_credential(front: Any, http: requests.Session) -> None:
    r = http.get(f"{front.url}/orders/whoami", headers=SPOOFED, timeout=10)

    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_password_is_refused(front: Any, http: requests.Session) -> None:
    r = http.get(f"{front.url}/orders/whoami", auth=("alice", "bob-password"), timeout=10)

    assert r.status_code == 401


@pytest.mark.parametrize(
    ("service", "path", "realm"),
    [
        pytest.param("orders", "/orders/whoami", "orders-service", id="orders-whoami"),
        pytest.param("orders", "/orders", "orders-service", id="orders-list"),
        pytest.param("customers", "/customers/whoami", "customers-service", id="customers-whoami"),
        pytest.param("customers", "/customers/alice", "customers-service", id="customers-record"),
    ],
)
@pytest.mark.parametrize("credential", [None, "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="], ids=["none", "basic"])
def test_a_direct_call_without_a_token_gets_a_bearer_challenge(
    stack: DemoStack,
    http: requests.Session,
    service: str,
    path: str,
    realm: str,
    credential: str | None,
) -> None:
    base = stack.orders_url if service == "orders" else stack.customers_url
    headers = {"Authorization": credential} if credential else {}

    r = http.get(f"{base}{path}", headers=headers, timeout=10)

    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{realm}"'


def test_the_gateway_publishes_keys_and_discovery(stack: DemoStack, http: requests.Session) -> None:
    discovery = http.get(f"{stack.gateway_url}/.well-known/openid-configuration", timeout=10).json()
    jwks = http.get(discovery["jwks_uri"], timeout=10).json()

    assert discovery["issuer"] == stack.gateway_url
    assert jwks["keys"] and all("d" not in key for key in jwks["keys"])


def test_nginx_keeps_the_auth_endpoint_internal(nginx: str, http: requests.Session) -> None:
    r = http.get(f"{nginx}/_auth", auth=("alice", "alice-password"), timeout=10)

    assert r.status_code == 404
    assert "X-Access-Token" not in r.headers


def test_the_login_page_names_the_demo_users_and_they_sign_in(front: Front, http: requests.Session) -> None:
    """/login tells a visitor which demo users exist; every pair it names really signs in."""
    import html
    import re

    from demo_gateway.supervisor import LOGIN_NOTE

    page = http.get(f"{front.url}/login", timeout=10)
    assert page.status_code == 200
    assert f'<p class="note" id="login-note">{html.escape(LOGIN_NOTE)}</p>' in page.text
    pairs = re.findall(r"(\w+) / (\S+) \(([^)]*)\)", LOGIN_NOTE)
    assert [name for name, _, _ in pairs] == ["alice", "bob"]
    for name, password, scopes in pairs:
        answer = http.get(f"{front.url}/orders/whoami", auth=(name, password), timeout=10)
        assert answer.status_code == 200, (name, answer.text)
        assert set(answer.json()["scopes"]) == set(scopes.split()), name
