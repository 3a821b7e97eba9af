"""(g) Per-hop token exchange in steady state: a cache hit must be cheap.

Two settings objects of one orders service call the same loopback downstream server through the
same ``propagating_session()``: A forwards the caller's token (``FORWARD_TO=127.0.0.1:<port>``),
B exchanges it (``FORWARD_TO=127.0.0.1:<port>=customers-service``) at a loopback token endpoint.
One exchange is made before timing; the rounds alternate A and B, each call in the context of
its own validated request. Targets: B ≥ 0.90× A in calls per second, and exactly 1 exchange in
all. Beside them, the header decision alone (``authorization_for``) in both modes.

Then the same comparison at the HTTP level (:mod:`benchmarks.exchange_http`): ``GET /orders/chain``
driven by wrk at two whole demo stacks (gateway, orders, customers under gunicorn), forwarding
and exchange mode, in alternating rounds; skipped (one row says why) when wrk is missing.

Run: ``python -m benchmarks --only exchange`` (or ``python -m benchmarks.exchange``).
"""

from __future__ import annotations

import contextvars
import json
import socket
import statistics
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from token_middleware.core.context import bind_token
from token_middleware.core.forwarding import authorization_for, exchanger_for
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.token_endpoint import ACCESS_TOKEN_TYPE
from token_middleware.core.validator import TokenValidator
from token_middleware.requests_auth import propagating_session

from . import exchange_http
from ._common import AUDIENCE, Fixture, Options, Row, interleave, median_ratio, ratio_text, temp_dir, us_text
from ._http import Skip

NAME = "exchange"
TARGET = 0.90


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    issued = 0
    key: SigningKey
    issuer: str


class _Handler(BaseHTTPRequestHandler):
    """The downstream (GET: a small JSON answer) and a token endpoint (POST: mints one token)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle and delayed ACKs add 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._send(b'{"service": "customers", "sub": "alice"}')

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.issued += 1
        token = TokenIssuer(self.server.issuer, self.server.key).mint(
            sub="alice", audience="customers-service", act={"sub": AUDIENCE}, ttl=3600)
        self._send(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                               "issued_token_type": ACCESS_TOKEN_TYPE}).encode())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@contextmanager
def _serving(key: SigningKey) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.key, server.issuer = key, f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _in_request(settings: Settings, token: Any, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run in the context of a request validated under ``settings``."""
    context = contextvars.copy_context()
    context.run(bind_token, token, settings)
    return lambda: context.run(fn)


def run(options: Options) -> list[Row]:
    rounds = options.rounds_or(21, 3)
    with temp_dir() as directory, _serving(SigningKey.generate("ES256")) as server:
        fx = Fixture.create(directory)
        netloc = f"127.0.0.1:{server.server_address[1]}"
        common = {"ALGORITHMS": "RS256,ES256", "CLIENT_ID": AUDIENCE, "CLIENT_SECRET": "bench-secret",
                  "TOKEN_ENDPOINT": f"http://{netloc}/oauth2/token"}
        forwarding = fx.settings(FORWARD_TO=netloc, **common)
        exchanging = fx.settings(FORWARD_TO=f"{netloc}=customers-service", **common)
        token = TokenValidator(forwarding).validate(fx.es_token)
        url = f"http://{netloc}/customers/whoami"
        with propagating_session() as session:
            def get() -> object:
                return session.get(url, timeout=10).content

            def decide() -> object:
                return authorization_for(url, {}, session.propagation.forward_to)

            calls = {
                "forwarding": _in_request(forwarding, token, get),
                "exchange": _in_request(exchanging, token, get),
                "decide forwarding": _in_request(forwarding, token, decide),
                "decide exchange": _in_request(exchanging, token, decide),
            }
            calls["exchange"]()  # the one exchange, before timing
            if server.issued != 1 or exchanger_for(exchanging).requests != 1:
                raise RuntimeError("the warm-up did not make exactly one exchange")
            samples = interleave(calls, rounds=rounds, batch_seconds=0.05)
        exchanges = server.issued
    # µs per call: calls per second is its inverse, so B/A throughput = A µs / B µs.
    throughput = median_ratio(samples, "forwarding", "exchange")
    forward_us = statistics.median(samples["forwarding"])
    exchange_us = statistics.median(samples["exchange"])
    decide_fw = statistics.median(samples["decide forwarding"])
    decide_ex = statistics.median(samples["decide exchange"])
    rows = [
        Row("g", "exchange mode / forwarding mode, requests call in process", ratio_text(throughput),
            target=f"≥ {TARGET:.2f}×", met=throughput >= TARGET,
            note=f"calls/s; {rounds} rounds; {us_text(exchange_us)} vs {us_text(forward_us)} per call",
            data={"ratio": throughput, "exchange_us": exchange_us, "forwarding_us": forward_us}),
        Row("g", "  exchanges in all (steady state after the first)", str(exchanges), target="exactly 1",
            met=exchanges == 1, data={"exchanges": exchanges}),
        Row("g", "  authorization_for, forwarding", us_text(decide_fw), data={"us": decide_fw}),
        Row("g", "  authorization_for, exchange cache hit", us_text(decide_ex), data={"us": decide_ex}),
    ]
    try:
        rows += exchange_http.run(options)
    except Skip as exc:
        rows.append(Row("g", "/orders/chain over HTTP: skipped", "skipped", note=str(exc)))
    return rows


if __name__ == "__main__":
    for row in run(Options(quick="--quick" in sys.argv)):
        print(f"{row.name.strip()}: {row.value} {row.target} {row.verdict} {row.note}")
