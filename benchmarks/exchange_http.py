"""(g), HTTP level (issue 13): steady-state ``GET /orders/chain`` in exchange mode against the
same chain in forwarding mode, two whole stacks side by side.

Each stack is the demo's three processes under gunicorn with the shared benchmark settings
(:mod:`benchmarks._http`), configured exactly as :class:`demo_gateway.supervisor.DemoConfig`
configures them for the Python edge (its ``gateway_env``, ``service_env`` and, in exchange mode,
``prepare_exchange``: the orders service's generated secret and the gateway's clients file):

* the gateway (``demo_gateway.wsgi:app``): the issuer, its JWKS, its ``/_auth`` (where the
  benchmark's token is minted, as nginx would get it) and its ``POST /oauth2/token``;
* the customers service (``demo_django.wsgi:application``);
* the orders service (``demo_flask.wsgi:app``), the one wrk drives.

A (forwarding): ``FORWARD_TO=<customers host:port>``; the gateway mints tokens naming both
services, and the orders service forwards the caller's token as it is.
B (exchange): ``FORWARD_TO=<customers host:port>=customers-service`` with the orders service's
``CLIENT_ID``/``CLIENT_SECRET``; the gateway mints tokens for ``orders-service`` alone, and the
orders service exchanges each at the gateway (RFC 8693, endpoint found by discovery) for one
meant for ``customers-service``, cached per worker process.

wrk sends ``GET /orders/chain`` straight to each orders service with its own stack's token for
alice (minted once by that stack's gateway). The gateway counts the exchanges it answers
(``token_middleware_gateway_token_exchanges_total``, summed over its workers through
``PROMETHEUS_MULTIPROC_DIR``). Targets: B ≥ 0.90× A, zero non-2xx, no exchange during the
timed rounds, and one exchange in all per orders worker process (each has its own cache).
Beside them, the CPU time the three servers of each stack spend per chain request
(:mod:`benchmarks._servercpu`): steadier than req/s on a shared machine; a cross-check.
"""

from __future__ import annotations

import base64
import statistics
import re
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_gateway.supervisor import CUSTOMERS_AUDIENCE, ORDERS_AUDIENCE, DemoConfig, DemoPorts

from ._common import Options, Row, ratio_text, temp_dir
from ._http import (HOST, THREADS, WORKER_CLASS, WORKERS, WRK_CONNECTIONS, alternate, gunicorn, lua_script,
                    wrk_binary, wrk_runner)
from ._servercpu import CpuMeter
from .http import get_json

TARGET = 0.90
PATH = "/orders/chain"
USER, PASSWORD = "alice", "alice-password"  # a demo user (demo_gateway/__init__.py)
_EXCHANGES = re.compile(r'^token_middleware_gateway_token_exchanges_total\{result="([a-z_]+)"\}\s+([0-9.e+]+)', re.M)


@dataclass(frozen=True)
class Stack:
    mode: str
    gateway: str
    orders: str
    customers: str
    token: str

    @property
    def servers(self) -> list[str]:
        return [self.gateway, self.orders, self.customers]

    def exchanges(self) -> dict[str, int]:
        """The gateway's exchange answers so far, by result, over all its workers."""
        with urllib.request.urlopen(self.gateway + "/metrics", timeout=10) as response:  # noqa: S310 (loopback)
            text = response.read().decode()
        return {result: int(float(n)) for result, n in _EXCHANGES.findall(text)}


def _gateway_token(gateway: str, path: str) -> str:
    """A token for alice from the gateway's ``/_auth`` (as nginx would get it for ``path``)."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(gateway + "/_auth", headers={
        "Authorization": f"Basic {basic}", "X-Original-URI": path, "X-Original-Method": "GET"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        token: str | None = response.headers.get("X-Access-Token")
    if not token:
        raise RuntimeError("the gateway's /_auth gave no token")
    return token


@contextmanager
def stack(mode: str, directory: Path) -> Iterator[Stack]:
    """The demo's gateway, customers and orders services in ``mode`` (``forward``/``exchange``)."""
    log_dir = directory / mode
    multiproc = log_dir / "gateway-metrics"
    multiproc.mkdir(parents=True)
    config = DemoConfig(host=HOST, ports=DemoPorts.free(HOST), edge="python", token_mode=mode,
                        token_ttl=3600, log_dir=log_dir)
    config.prepare_exchange(log_dir)  # exchange mode: the orders secret and the clients file
    gateway_env = {**config.gateway_env(), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with ExitStack() as stack_:
        gateway = stack_.enter_context(gunicorn(
            f"{mode}-gateway", "demo_gateway.wsgi:app", gateway_env, log_dir,
            ready_path="/.well-known/jwks.json", port=config.ports.gateway))
        customers = stack_.enter_context(gunicorn(
            f"{mode}-customers", "demo_django.wsgi:application", config.service_env(CUSTOMERS_AUDIENCE),
            log_dir, ready_path="/customers/whoami", port=config.ports.customers))
        orders = stack_.enter_context(gunicorn(
            f"{mode}-orders", "demo_flask.wsgi:app", config.service_env(ORDERS_AUDIENCE), log_dir,
            ready_path="/orders/whoami", port=config.ports.orders))
        yield Stack(mode, gateway, orders, customers, _gateway_token(gateway, PATH))


def _check_chain(s: Stack) -> dict[str, Any]:
    status, body = get_json(s.orders + PATH, {"Authorization": f"Bearer {s.token}"})
    customers = body.get("customers", {}) if isinstance(body, dict) else {}
    expected = [CUSTOMERS_AUDIENCE] if s.mode == "exchange" else [ORDERS_AUDIENCE, CUSTOMERS_AUDIENCE]
    if status != 200 or sorted(customers.get("aud", [])) != sorted(expected) or \
            bool(customers.get("act")) != (s.mode == "exchange"):
        raise RuntimeError(f"{s.mode}: /orders/chain did not answer as expected: {status} {customers}")
    return customers


def run(options: Options) -> list[Row]:
    wrk_binary()  # Skip early when wrk is missing
    rounds = options.rounds_or(3, 1)
    seconds = options.duration_or(5.0, 2.0)
    with temp_dir() as directory, stack("forward", directory) as a, stack("exchange", directory) as b:
        _check_chain(a)
        _check_chain(b)
        run_a = wrk_runner(a.orders + PATH, lua_script(directory, {"Authorization": f"Bearer {a.token}"}))
        run_b = wrk_runner(b.orders + PATH, lua_script(directory, {"Authorization": f"Bearer {b.token}"}))
        run_a(1.0)
        run_b(1.0)  # every orders worker has served the chain (and exchanged) by now
        meter_a, meter_b = CpuMeter(a.servers, run_a), CpuMeter(b.servers, run_b)
        before = b.exchanges()
        comparison = alternate(meter_a, meter_b, rounds=rounds, seconds=seconds, warm_up=0)
        after = b.exchanges()
        forwarding_exchanges = sum(a.exchanges().values())
    ok_total = after.get("ok", 0)
    under_load = sum(after.values()) - sum(before.values())
    refused = sum(n for r, n in after.items() if r != "ok")
    ratio = comparison.ratio
    cpu_a, cpu_b = statistics.median(meter_a.us_per_request), statistics.median(meter_b.us_per_request)
    cpu_ratio = statistics.median(x / y for x, y in zip(meter_a.us_per_request, meter_b.us_per_request))
    b_failures = comparison.b_non_2xx + comparison.b_socket_errors
    a_failures = sum(r.non_2xx + r.socket_errors for r in comparison.a)
    setting = f"gunicorn -w {WORKERS} -k {WORKER_CLASS} --threads {THREADS} (each process); wrk -c{WRK_CONNECTIONS}"
    exchanges_met = under_load == 0 and refused == 0 and ok_total == WORKERS and forwarding_exchanges == 0
    return [
        Row("g", "/orders/chain over HTTP, exchange mode / forwarding mode", ratio_text(ratio),
            target=f"≥ {TARGET:.2f}×", met=ratio >= TARGET,
            note=(f"{comparison.b_rps:.0f} vs {comparison.a_rps:.0f} req/s; {rounds} rounds × {seconds:g} s; "
                  f"two demo stacks (gateway, Flask orders, Django customers); {setting}"),
            data={"ratio": ratio, "rps_exchange": comparison.b_rps, "rps_forwarding": comparison.a_rps,
                  "per_round": [y.requests_per_second / x.requests_per_second
                                for x, y in zip(comparison.a, comparison.b)]}),
        Row("g", "  non-2xx responses (+ socket errors), /orders/chain over HTTP", str(b_failures + a_failures),
            target="0", met=b_failures + a_failures == 0,
            note=f"exchange mode {b_failures} of {comparison.b_requests}; forwarding mode {a_failures}",
            data={"exchange": b_failures, "forwarding": a_failures}),
        Row("g", "  servers' CPU per chain request, forwarding / exchange", ratio_text(cpu_ratio),
            note=(f"{cpu_b:.0f} µs exchange vs {cpu_a:.0f} µs forwarding (gateway + orders + customers, "
                  "masters and workers, user + system, /proc); a cross-check: the target is on req/s"),
            data={"ratio": cpu_ratio, "us_exchange": cpu_b, "us_forwarding": cpu_a,
                  "per_round_us_exchange": meter_b.us_per_request,
                  "per_round_us_forwarding": meter_a.us_per_request}),
        Row("g", "  exchanges at the gateway, HTTP (in all / during the timed rounds)",
            f"{ok_total} / {under_load}", target=f"{WORKERS} / 0", met=exchanges_met,
            note=(f"one token, one audience; one exchange per orders worker process ({WORKERS}), "
                  "each has its own cache; counted by the gateway's /metrics "
                  f"(token_middleware_gateway_token_exchanges_total); refused {refused}; "
                  f"forwarding stack {forwarding_exchanges}"),
            data={"ok": ok_total, "under_load": under_load, "refused": refused, "by_result": after,
                  "forwarding_stack": forwarding_exchanges}),
    ]
