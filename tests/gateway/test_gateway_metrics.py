"""The gateway's own counters (token_middleware/gateway/metrics.py) and its ``/metrics`` endpoint,
against the real gateway WSGI app and a recording upstream: exact deltas for a known mix of
logins and mints, bounded labels, ``/metrics`` never forwarded, and metrics off without the extra."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _gateway_support import PASSWORDS, Upstream, basic
from werkzeug.test import Client

from token_middleware.core.errors import ConfigurationError
from token_middleware.gateway import Gateway, GatewayConfig, Route
from token_middleware.gateway.metrics import EXCHANGE_RESULTS, LOGIN_RESULTS, GatewayMetrics

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MINTED = "token_middleware_gateway_tokens_minted_total"
EXCHANGES = "token_middleware_gateway_token_exchanges_total"
LOGINS = "token_middleware_gateway_logins_total"


def csrf_field(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def login(client: Client, user: str, password: str) -> int:
    page = client.get("/login")
    form = {"csrf_token": csrf_field(page.get_data(as_text=True)), "username": user, "password": password}
    return client.post("/login", data=form).status_code


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} has no series"
    return found


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def counted(make_config: Callable[..., GatewayConfig], registry: CollectorRegistry) -> Iterator[Gateway]:
    gw = Gateway(make_config(login_max_failures=3), metrics=GatewayMetrics(registry))
    yield gw
    gw.close()


def test_every_series_exists_at_zero(registry: CollectorRegistry) -> None:
    GatewayMetrics(registry)
    assert value(registry, MINTED) == 0
    for result in EXCHANGE_RESULTS:
        assert value(registry, EXCHANGES, result=result) == 0
    for result in LOGIN_RESULTS:
        assert value(registry, LOGINS, result=result) == 0


def test_exact_deltas_for_a_known_mix(counted: Gateway, registry: CollectorRegistry) -> None:
    browser = Client(counted)
    assert login(browser, "alice", PASSWORDS["alice"]) == 303
    assert login(Client(counted), "alice", PASSWORDS["alice"]) == 303
    for _ in range(3):
        assert login(Client(counted), "bob", "wrong") == 200  # the form again, with an error
    assert login(Client(counted), "bob", PASSWORDS["bob"]) == 429  # limited before the check

    api = Client(counted)
    assert api.get("/orders/1", headers=basic("alice")).status_code == 200        # mint 1
    assert api.get("/orders/2", headers=basic("alice")).status_code == 200        # reused
    assert browser.get("/orders/3").status_code == 200                            # same principal: reused
    assert api.get("/customers/1", headers=basic("alice")).status_code == 200     # mint 2: other route
    auth = api.get("/_auth", headers={**basic("alice"), "X-Original-URI": "/customers/2"})
    assert auth.status_code == 200                                                # reused
    # HTTP Basic on API calls is no login-form verdict: neither counted as a login nor minted.
    assert api.get("/orders/1", headers=basic("alice", "wrong")).status_code == 401

    assert value(registry, LOGINS, result="ok") == 2
    assert value(registry, LOGINS, result="failed") == 3
    assert value(registry, LOGINS, result="limited") == 1
    assert value(registry, MINTED) == 2 == counted.minter.minted
    assert all(value(registry, EXCHANGES, result=r) == 0 for r in EXCHANGE_RESULTS)


def test_metrics_endpoint_serves_the_gateways_registry(counted: Gateway, registry: CollectorRegistry) -> None:
    client = Client(counted)
    client.get("/orders/1", headers=basic("bob"))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-ID"]
    text = response.get_data(as_text=True)
    assert f"{MINTED} 1.0" in text
    assert f'{LOGINS}{{result="limited"}} 0.0' in text
    assert f'{EXCHANGES}{{result="invalid_grant"}} 0.0' in text
    open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert open_metrics.get_data(as_text=True).rstrip().endswith("# EOF")
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_metrics_is_never_forwarded(make_config: Callable[..., GatewayConfig], upstream: Upstream,
                                    registry: CollectorRegistry) -> None:
    # Even a route built around the configuration's check (from_env refuses the prefix) cannot take it.
    config = make_config(routes=(Route("/metrics", upstream.url, ("orders-service",)),
                                 Route("/orders", upstream.url, ("orders-service",))))
    gw = Gateway(config, metrics=GatewayMetrics(registry))
    try:
        client = Client(gw)
        response = client.get("/metrics", headers=basic("alice"))
        assert response.status_code == 200 and MINTED in response.get_data(as_text=True)
        assert upstream.requests == []
        # A service's own path under its prefix is the service's business: forwarded as is, with a token.
        assert client.get("/orders/metrics", headers=basic("alice")).status_code == 200
        assert upstream.last().target == "/orders/metrics"
        assert (upstream.last().header("Authorization") or "").startswith("Bearer ")
    finally:
        gw.close()


def test_a_metrics_prefix_is_refused_at_start_up(users_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="gateway's own"):
        GatewayConfig.from_env({"GATEWAY_ROUTES": "/metrics=http://a", "GATEWAY_AUDIENCES": "/metrics=x",
                                "HOME": str(tmp_path)}, default_users_file=users_file)


def test_metrics_off_answers_404_and_counts_nothing(make_config: Callable[..., GatewayConfig]) -> None:
    gw = Gateway(make_config(), metrics=False)
    try:
        assert gw.metrics is None and gw.pages.metrics is None and gw.minter.on_mint is None
        client = Client(gw)
        assert login(client, "alice", PASSWORDS["alice"]) == 303
        assert client.get("/orders/1").status_code == 200
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.get_json()["error"] == "not_found"
    finally:
        gw.close()


def test_default_registry_when_asked_for_nothing(gateway: Gateway) -> None:
    assert gateway.metrics is not None and gateway.metrics.default_registry
    assert gateway.metrics.registry is prometheus_client.REGISTRY
    assert MINTED in Client(gateway).get("/metrics").get_data(as_text=True)


def test_label_values_are_bounded(registry: CollectorRegistry) -> None:
    metrics = GatewayMetrics(registry)
    metrics.exchange("ok")
    metrics.exchange("invalid_target")
    metrics.exchange("alice@example.com")  # never a label of its own
    metrics.exchange("x" * 1000)
    metrics.login("limited")
    metrics.login("bob")
    metrics.minted()
    assert value(registry, EXCHANGES, result="ok") == 1
    assert value(registry, EXCHANGES, result="invalid_target") == 1
    assert value(registry, EXCHANGES, result="other") == 2
    assert value(registry, LOGINS, result="limited") == 1
    assert value(registry, LOGINS, result="failed") == 1
    assert value(registry, MINTED) == 1
    labels = {s.labels.get("result") for m in registry.collect() for s in m.samples if "result" in s.labels}
    assert labels == set(EXCHANGE_RESULTS) | set(LOGIN_RESULTS)
    # Two instances on one registry share its families (no "Duplicated timeseries").
    GatewayMetrics(registry).minted()
    assert value(registry, MINTED) == 2
    assert repr(metrics).startswith("GatewayMetrics(registry=")


SCRIPT = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prometheus_client":
            raise ImportError("blocked by the test: " + name)
        return None
sys.meta_path.insert(0, Block())
import json, pathlib, tempfile
from werkzeug.security import generate_password_hash
from werkzeug.test import Client
from token_middleware.core.errors import ConfigurationError
from token_middleware.gateway import Gateway, GatewayConfig, Route
from token_middleware.gateway.metrics import GatewayMetrics, gateway_metrics
assert gateway_metrics() is None
try:
    GatewayMetrics()
except ConfigurationError as exc:
    assert "pip install 'token-middleware[metrics]'" in str(exc)
else:
    raise AssertionError("GatewayMetrics built without prometheus_client")
d = pathlib.Path(tempfile.mkdtemp())
(d / "users.json").write_text(json.dumps({"alice": {
    "password_hash": generate_password_hash("pw", method="pbkdf2:sha256:1000"), "scopes": []}}))
gw = Gateway(GatewayConfig(issuer="http://gw.test", routes=(Route("/orders", "http://127.0.0.1:9", ("o",)),),
                           users_file=d / "users.json", keys_dir=d / "keys"))
assert gw.metrics is None
client = Client(gw)
assert client.get("/metrics").status_code == 404
assert client.get("/_auth", headers={"X-Original-URI": "/orders/1",
                                     "Authorization": "Basic YWxpY2U6cHc="}).status_code == 200
print("ok")
"""


def test_the_gateway_runs_without_prometheus_client() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
