"""``/metrics`` at the demo's real edge, in both modes (Python forwarding, nginx): it is the
gateway's own, a service's ``/metrics`` never leaks through the edge, and the edge keeps a
well-formed client ``X-Request-ID`` (replacing any other), as the services' audit lines need."""

from __future__ import annotations

import re

import requests
from _e2e_support import USERS, Front

GATEWAY_FAMILY = "token_middleware_gateway_tokens_minted_total"
SERVICE_FAMILY = "token_middleware_validations_total"
RID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}\Z")


def test_metrics_at_the_edge_is_the_gateways_own(front: Front, http: requests.Session) -> None:
    # The services do have their own /metrics, on their own ports: the check below can tell them apart.
    assert SERVICE_FAMILY in http.get(f"{front.stack.orders_url}/metrics", timeout=10).text
    http.get(f"{front.url}/orders/whoami", auth=("alice", USERS["alice"][0]), timeout=10)
    response = http.get(f"{front.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("text/plain")
    assert GATEWAY_FAMILY in response.text and 'token_middleware_gateway_logins_total{result="ok"}' in response.text
    assert SERVICE_FAMILY not in response.text
    # Under a service's prefix the path is forwarded as is, with a token: the service's own
    # business (orders: 404; customers reads "metrics" as a customer id), never its /metrics.
    for path in ("/orders/metrics", "/customers/metrics"):
        below = http.get(f"{front.url}{path}", auth=("alice", USERS["alice"][0]), timeout=10)
        assert below.status_code in (200, 404), (path, below.status_code)
        assert SERVICE_FAMILY not in below.text and "# TYPE" not in below.text


def test_the_edge_keeps_a_well_formed_request_id(front: Front, http: requests.Session) -> None:
    kept = http.get(f"{front.url}/metrics", headers={"X-Request-ID": "e2e-corr.42:x"}, timeout=10)
    assert kept.headers["X-Request-ID"] == "e2e-corr.42:x"
    replaced = http.get(f"{front.url}/metrics", headers={"X-Request-ID": "bad id;" + "x" * 200}, timeout=10)
    rid = replaced.headers["X-Request-ID"]
    assert RID.match(rid) and "bad" not in rid
    generated = http.get(f"{front.url}/metrics", timeout=10).headers["X-Request-ID"]
    assert RID.match(generated) and generated != rid
