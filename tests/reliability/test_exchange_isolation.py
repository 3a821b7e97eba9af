"""Concurrency isolation with per-hop token exchange (RFC 8693) on, and the gateway's slot limit.

The stack of :mod:`test_isolation` in exchange mode: the gateway mints ``/orders`` tokens for
``orders-service`` alone, and the orders service exchanges each at the gateway's
``POST /oauth2/token`` for one meant for ``customers-service`` alone, acted by the orders client.
The services run under sync, gthread and gevent workers; the gateway runs as the demo runs it
(:data:`demo_gateway.supervisor.GATEWAY_WORKER_CLASS`, 2 workers).

Why not the services' worker model for the gateway too: a gateway that is also the token
endpoint of the services behind it must have a free request slot for a service's exchange while
it proxies the request that caused it. With blocking workers (sync 3, gthread 2x8) and 48 chained
requests in flight, every slot holds a proxied ``/orders/chain`` and each cold exchange waits in
the gateway's backlog until the service's ``HTTP_TIMEOUT``. That is a deployment constraint
(docs/deployment.md), not a crossover; the last test shows it fails bounded and sends nothing on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_stack import (
    WORKER_MODELS,
    Call,
    Recorder,
    Stack,
    WorkerModel,
    gateway_token,
    run_load,
    scaled,
    start_stack,
    warm_up,
)
from test_isolation import assert_clean, basic_calls

from demo_gateway.supervisor import (
    CUSTOMERS_AUDIENCE,
    GATEWAY_THREADS,
    GATEWAY_WORKER_CLASS,
    ORDERS_AUDIENCE,
    ORDERS_CLIENT_ID,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAIN_REQUESTS = scaled(2000, 50_000)
CONCURRENCY = scaled(48, 64)
#: The gateway as the demo runs it (an event loop when gevent is installed), with 2 workers.
DEMO_GATEWAY = WorkerModel(f"demo-{GATEWAY_WORKER_CLASS}", GATEWAY_WORKER_CLASS, workers=2, threads=GATEWAY_THREADS)
#: The services' exchange timeout in the starved-gateway test (``TOKEN_MIDDLEWARE_HTTP_TIMEOUT``).
STARVED_HTTP_TIMEOUT = 1.0


@pytest.fixture(scope="module", params=WORKER_MODELS, ids=[m.name for m in WORKER_MODELS])
def exchange_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    users_file: Path,
    passwords: dict[str, str],
) -> Iterator[tuple[Stack, WorkerModel]]:
    """The stack in exchange mode: services under one worker model, the gateway as the demo runs it.

    The gateway counts into a ``PROMETHEUS_MULTIPROC_DIR``, so its ``/metrics`` sums every worker.
    """
    model: WorkerModel = request.param
    running = start_stack(
        model=model,
        gateway_model=DEMO_GATEWAY,
        token_mode="exchange",
        users_file=users_file,
        keys_dir=tmp_path_factory.mktemp(f"exchange-keys-{model.name}"),
        log_dir=tmp_path_factory.mktemp(f"exchange-logs-{model.name}"),
        gateway_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp(f"exchange-metrics-{model.name}"))},
    )
    try:
        first = sorted(passwords)[0]
        warm_up(running, first, passwords[first])
        yield running, model
    finally:
        dead = running.dead()
        running.stop()
    assert not dead, f"services died during the {model.name} exchange run: {dead}; logs in {running.log_dir}"


def chain_exchanged_for_caller(call: Call, response: requests.Response) -> bool:
    """The caller at both hops; the customers hop saw a token for itself alone, acted by orders."""
    body = response.json()
    orders, customers = body["orders"], body["customers"]
    return bool(
        orders["sub"] == call.user
        and orders["aud"] == [ORDERS_AUDIENCE]
        and customers["sub"] == call.user
        and customers["aud"] == [CUSTOMERS_AUDIENCE]
        and customers["act"] == [ORDERS_CLIENT_ID]
    )


def gateway_counters(stack: Stack) -> dict[str, float]:
    """The gateway's counters, every worker summed: ``minted`` (access tokens signed for
    forwarding; a reused cached token is not counted) and ``exchange:<result>`` (answers of
    ``POST /oauth2/token``, ``ok`` or an RFC 6749 error code)."""
    text = requests.get(f"{stack.gateway_url}/metrics", timeout=10).text
    counters: dict[str, float] = {}
    for line in text.splitlines():
        minted = re.fullmatch(r"token_middleware_gateway_tokens_minted_total (\S+)", line)
        if minted:
            counters["minted"] = float(minted.group(1))
        exchange = re.fullmatch(r'token_middleware_gateway_token_exchanges_total\{result="(\w+)"\} (\S+)', line)
        if exchange:
            counters[f"exchange:{exchange.group(1)}"] = float(exchange.group(2))
    assert "minted" in counters, "the gateway's /metrics has no minted counter (prometheus_client missing?)"
    return counters


def test_chained_requests_with_exchange_never_cross_identities(
    request: pytest.FixtureRequest, exchange_stack: tuple[Stack, WorkerModel], passwords: dict[str, str],
    report: Any,
) -> None:
    """2000 chained calls of 50 users at concurrency 48, each hop checked, and the exchanges counted.

    Exchanges per (user token, audience): each orders worker *process* has its own exchange cache
    (threads and greenlets of one process share it, single-flight), so one user token may be
    exchanged once per orders worker, never more. The user tokens in play are at most those the
    gateway has minted since it started (its minter caches one per user and route in each of its
    own workers; the counter counts each signed token once), and there is one target audience:
    ``exchanges during the load <= tokens minted so far x orders workers``. Without the cache it
    would be one exchange per call (2000). At least one per user: every user starts cold.
    """
    stack, model = exchange_stack
    calls = basic_calls(stack, passwords, "/orders/chain", CHAIN_REQUESTS, seed=11)
    before = gateway_counters(stack)

    result = run_load(f"chain with exchange gateway->orders->customers [{request.node.callspec.id}]", calls,
                      chain_exchanged_for_caller, concurrency=CONCURRENCY)

    after = gateway_counters(stack)
    delta = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    exchanged = int(delta.get("exchange:ok", 0))
    refused = int(sum(v for name, v in delta.items() if name.startswith("exchange:") and name != "exchange:ok"))
    user_tokens = int(after["minted"])
    bound = user_tokens * model.workers
    report(result)
    report(f"[reliability] exchanges [{request.node.callspec.id}]: exchanged={exchanged} refused={refused} "
           f"for {len(calls)} calls of {len(passwords)} users; user tokens minted={user_tokens} "
           f"x orders workers={model.workers} -> at most {bound}; "
           f"{exchanged / len(passwords):.1f} per user (gateway {DEMO_GATEWAY.name} x{DEMO_GATEWAY.workers})")
    assert_clean(result)
    assert refused == 0, delta
    assert len(passwords) <= exchanged <= bound, delta


def test_a_gateway_starved_of_slots_fails_bounded_and_sends_nothing(
    tmp_path: Path, users_file: Path, passwords: dict[str, str], report: Any
) -> None:
    """The gateway with one sync worker is its own token endpoint: while it proxies a cold
    ``/orders/chain``, the orders service's exchange (a cold one starts with the discovery
    document, then ``POST /oauth2/token``) waits in its backlog. It gives up after
    ``TOKEN_MIDDLEWARE_HTTP_TIMEOUT`` (1 s here), the orders service answers 502
    (``bad_gateway``, the demo's answer to a failed exchange) and the gateway relays it. The
    customers hop (a recorder) receives nothing: never the original token. Control: once the
    gateway's slot is free, the same exchange succeeds and the recorder gets another token."""
    one = WorkerModel("sync-1", "sync", workers=1)
    user = sorted(passwords)[1]
    password = passwords[user]
    with Recorder() as customers:
        stack = start_stack(
            model=one,
            gateway_model=one,
            token_mode="exchange",
            users_file=users_file,
            keys_dir=tmp_path / "keys",
            log_dir=tmp_path / "logs",
            orders_env={
                "TOKEN_MIDDLEWARE_HTTP_TIMEOUT": str(STARVED_HTTP_TIMEOUT),
                "CUSTOMERS_URL": customers.url,
                "TOKEN_MIDDLEWARE_FORWARD_TO": f"{customers.hostport}={CUSTOMERS_AUDIENCE}",
            },
        )
        try:
            warm_up(stack, user, password)
            with requests.Session() as http:
                http.trust_env = False
                started = time.monotonic()
                starved = http.get(f"{stack.gateway_url}/orders/chain", auth=(user, password), timeout=30)
                seconds = time.monotonic() - started
                sent_while_starved = len(customers.snapshot())

                token = gateway_token(stack.gateway_url, user, password, "/orders/chain")
                control = http.get(f"{stack.orders_url}/orders/chain", headers={"Authorization": f"Bearer {token}"},
                                   timeout=30)
            received = customers.snapshot()
            forwarded = [r.header("Authorization") or "" for r in received]
            original_forwarded = any(value == f"Bearer {token}" for value in forwarded)
        finally:
            dead = stack.dead()
            stack.stop()
    report(f"[reliability] starved gateway (sync x1, HTTP_TIMEOUT={STARVED_HTTP_TIMEOUT:g}s), cold exchange: "
           f"{starved.status_code} in {seconds:.1f}s, requests sent downstream={sent_while_starved}")
    assert not dead, f"services died: {dead}; logs in {stack.log_dir}"
    assert starved.status_code == 502, starved.text[:300]
    body = starved.json()
    assert body["error"] == "bad_gateway", body
    assert "exchange_unavailable" in body["error_description"], body
    assert seconds < 10, f"the starved call took {seconds:.1f}s"
    assert sent_while_starved == 0, "the failed exchange sent a request downstream"
    assert control.status_code == 200, control.text[:300]
    assert len(received) == 1 and forwarded[0].startswith("Bearer "), "the control call reached customers once"
    assert not original_forwarded, "the original token was forwarded to the customers hop"
