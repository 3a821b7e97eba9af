"""The demo in exchange mode (RFC 8693, its default) and in forwarding mode, end to end.

The chain ``/orders/chain`` runs through both edges (``front``). Extra stacks, on the Python edge
with one worker per service (so a per-process count is the whole count, and the customers
service's access log is in request order): one counts exchanges, one has an orders service whose
secret the gateway does not accept, one runs the forwarding mode.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _e2e_support import FAST_HASH, Front
from werkzeug.security import generate_password_hash

from demo_gateway.supervisor import CUSTOMERS_AUDIENCE, ORDERS_AUDIENCE, DemoConfig, DemoPorts, DemoStack

pytestmark = pytest.mark.e2e


def small_stack(tmp: Path, users_file: Path, **overrides: Any) -> DemoStack:
    values: dict[str, Any] = {
        "ports": DemoPorts.free(), "keys_dir": tmp / "keys", "users_file": users_file, "log_dir": tmp / "logs",
        "jwks_min_refresh_seconds": 1, "gateway_workers": 1, "service_workers": 1, "edge": "python",
    }
    values.update(overrides)
    return DemoStack.start(DemoConfig(**values))


@pytest.fixture(scope="module")
def counting(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[DemoStack]:
    stack = small_stack(tmp_path_factory.mktemp("exchange-count"), users_file)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def wrong_secret(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[DemoStack]:
    tmp = tmp_path_factory.mktemp("exchange-wrong-secret")
    clients = tmp / "clients.json"
    clients.write_text(json.dumps({"orders-service": {
        "secret_hash": generate_password_hash("the-right-secret", method=FAST_HASH),
        "audience": ORDERS_AUDIENCE, "may_exchange_for": {CUSTOMERS_AUDIENCE: ["customers:read"]}}}))
    stack = small_stack(tmp, users_file, clients_file=clients, orders_secret="not-the-right-secret")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[DemoStack]:
    stack = small_stack(tmp_path_factory.mktemp("forwarding"), users_file, token_mode="forward")
    try:
        yield stack
    finally:
        stack.stop()


def exchanges(stack: DemoStack, result: str = "ok") -> float:
    """The orders service's own count of exchanges (its only worker's /metrics)."""
    text = requests.get(f"{stack.orders_url}/metrics", timeout=10).text
    found = re.search(rf'^token_middleware_token_exchanges_total\{{result="{result}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_customers_hop_gets_a_token_for_itself_alone(front: Front, http: requests.Session,
                                                        users: Any) -> None:
    r = http.get(f"{front.url}/orders/chain", auth=("bob", users["bob"][0]), timeout=10)
    assert r.status_code == 200, r.text[:300]
    orders, customers = r.json()["orders"], r.json()["customers"]
    assert orders["aud"] == ["orders-service"] and orders["act"] == []
    assert orders["scopes"] == ["customers:read", "orders:read", "orders:write"]
    assert customers["sub"] == "bob"
    assert customers["aud"] == ["customers-service"]
    assert customers["act"] == ["orders-service"]
    assert customers["scopes"] == ["customers:read"]  # orders:* never reach the customers hop


def test_discovery_at_the_edge_names_the_token_endpoint(front: Front, http: requests.Session) -> None:
    document = http.get(f"{front.url}/.well-known/openid-configuration", timeout=10).json()
    assert document["token_endpoint"] == f"{front.url}/oauth2/token"
    r = http.post(f"{front.url}/oauth2/token", data={"grant_type": "x"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["Cache-Control"] == "no-store"


def test_the_orders_token_replayed_at_customers_is_refused(stack: DemoStack, http: requests.Session,
                                                          mint_at_gateway: Any) -> None:
    token = mint_at_gateway(stack, "alice", "/orders/chain")
    assert http.get(f"{stack.orders_url}/orders/whoami", headers={"Authorization": f"Bearer {token}"},
                    timeout=10).status_code == 200
    r = http.get(f"{stack.customers_url}/customers/whoami", headers={"Authorization": f"Bearer {token}"},
                 timeout=10)
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert "not meant for this service" in r.headers["WWW-Authenticate"]


def test_one_exchange_per_user_token_and_audience(counting: DemoStack, mint_at_gateway: Any,
                                                  http: requests.Session) -> None:
    before = exchanges(counting)
    alice = mint_at_gateway(counting, "alice", "/orders/chain")
    for _ in range(5):
        r = http.get(f"{counting.orders_url}/orders/chain", headers={"Authorization": f"Bearer {alice}"}, timeout=10)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["customers"]["act"] == ["orders-service"]
    assert exchanges(counting) == before + 1
    bob = mint_at_gateway(counting, "bob", "/orders/chain")
    for _ in range(3):
        assert http.get(f"{counting.orders_url}/orders", headers={"Authorization": f"Bearer {bob}"},
                        timeout=10).status_code == 200
    assert exchanges(counting) == before + 2
    assert exchanges(counting, "error") == 0


def customers_requests(stack: DemoStack, path: str) -> int:
    log = (stack.log_dir / "customers.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f'"GET {path} ' in line)


def test_a_failed_exchange_sends_nothing_downstream(wrong_secret: DemoStack, http: requests.Session,
                                                    users: Any) -> None:
    before = customers_requests(wrong_secret, "/customers/whoami")
    r = http.get(f"{wrong_secret.gateway_url}/orders/chain", auth=("alice", users["alice"][0]), timeout=10)
    assert r.status_code == 502, r.text[:300]
    assert r.json()["error"] == "bad_gateway" and "invalid_client" in r.json()["error_description"]
    # A marker request straight to the customers service (one worker: its log is in order): once
    # its line is written, any request the failed chain had sent would be logged before it.
    http.get(f"{wrong_secret.customers_url}/customers/whoami?marker=1", timeout=10)
    deadline = time.monotonic() + 10
    while customers_requests(wrong_secret, "/customers/whoami?marker=1") == 0:
        assert time.monotonic() < deadline, "the customers service never logged the marker request"
        time.sleep(0.05)
    assert customers_requests(wrong_secret, "/customers/whoami") == before
    assert exchanges(wrong_secret, "error") >= 1


def test_forwarding_mode_still_forwards_one_token(forwarding: DemoStack, http: requests.Session,
                                                  users: Any) -> None:
    r = http.get(f"{forwarding.gateway_url}/orders/chain", auth=("alice", users["alice"][0]), timeout=10)
    assert r.status_code == 200, r.text[:300]
    orders, customers = r.json()["orders"], r.json()["customers"]
    assert orders["aud"] == customers["aud"] == ["orders-service", "customers-service"]
    assert orders["scopes"] == customers["scopes"] == users["alice"][1]
    assert customers["act"] == [] and customers["client_id"] == "gateway"
    document = http.get(f"{forwarding.gateway_url}/.well-known/openid-configuration", timeout=10).json()
    assert "token_endpoint" not in document
    assert not (forwarding.log_dir / "clients.json").exists()


def test_the_generated_clients_file_is_private_and_holds_no_secret(counting: DemoStack) -> None:
    path = counting.log_dir / "clients.json"
    assert path.stat().st_mode & 0o077 == 0
    secret = counting.config.orders_secret
    assert secret and secret not in path.read_text()
    assert secret not in repr(counting.config)
