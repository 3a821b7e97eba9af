"""(f) What watching costs: one metrics update, and ``/orders/whoami`` with metrics on and off.

- **One metrics update:** :class:`~token_middleware.metrics.PrometheusMetrics` given one event, as
  the validator gives it (a validation that ran the checks: a counter and the histogram). Target:
  ≤ 2 µs. The cheaper updates (a verified-cache hit: one counter; a refusal) are shown beside it.
- **The validator's hot path:** ``authenticate("Bearer …")`` on a verified-cache hit, with no
  observer (``watch is None``: one comparison) and with the Prometheus observer, in alternation.
- **``/orders/whoami`` metrics on / off:** the demo orders service (``demo_flask.create_app``)
  built twice, with ``metrics=True`` and ``metrics=False``, each driven in process through
  Flask's test client with the same valid token (a cache hit, as in steady state). The two
  alternate request by request (on, off, off, on, …: each request timed alone), so both see the
  same machine; a round is a few hundred pairs, timed in this thread's CPU time so that other
  work on the machine does not count. The figure is requests per second on / off, the median
  over rounds; target ≥ 0.97×. In process, because the HTTP figure (c) drives the gateway
  stack, whose files belong to the edge.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from token_middleware.core.observe import Refusal, Validation
from token_middleware.core.errors import ExpiredToken
from token_middleware.core.validator import TokenValidator

from ._common import Fixture, Options, Row, interleave, median_ratio, ratio_text, temp_dir, us_text
from ._http import Skip

NAME = "metrics"
UPDATE_TARGET_US = 2.0
ON_OFF_TARGET = 0.97


def paired(on: Any, off: Any, headers: dict[str, str], *, rounds: int, pairs: int) -> dict[str, list[float]]:
    """Microseconds per request of each client, per round, requests alternating one by one."""
    out: dict[str, list[float]] = {"on": [], "off": []}
    clock = time.thread_time  # this thread's CPU time: other processes' load does not count
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            spent = {"on": 0.0, "off": 0.0}
            for i in range(pairs):
                order = (("on", on), ("off", off)) if (i + r) % 2 == 0 else (("off", off), ("on", on))
                for name, client in order:
                    start = clock()
                    client.get("/orders/whoami", headers=headers)
                    spent[name] += clock() - start
            for name in out:
                out[name].append(spent[name] / pairs * 1e6)
    finally:
        if enabled:
            gc.enable()
    return out


def run(options: Options) -> list[Row]:
    try:
        from prometheus_client import CollectorRegistry

        from token_middleware.metrics import PrometheusMetrics
    except ImportError:
        raise Skip("prometheus_client is not installed (the metrics extra)") from None
    rounds = options.rounds_or(31, 5)
    rows: list[Row] = []
    with temp_dir() as directory:
        fx = Fixture.create(directory)
        observer = PrometheusMetrics(CollectorRegistry())
        token = TokenValidator(fx.settings()).validate(fx.es_token)
        checked = Validation(token, None, 0.00012)
        hit = Validation(token, None, 0.0, cached=True)
        refusal = Refusal(error=ExpiredToken(), reason="expired", status=401, adapter="wsgi")
        updates = interleave(
            {"checked": lambda: observer(checked), "hit": lambda: observer(hit),
             "refusal": lambda: observer(refusal)},
            rounds=rounds, batch_seconds=0.02,
        )
        one = statistics.median(updates["checked"])
        rows += [
            Row("f", "one metrics update (validation: counter + histogram)", us_text(one),
                target=f"≤ {UPDATE_TARGET_US:g} µs", met=one <= UPDATE_TARGET_US, note=f"{rounds} rounds",
                data={"us": one}),
            Row("f", "  metrics update, verified-cache hit (one counter)", us_text(statistics.median(updates["hit"]))),
            Row("f", "  metrics update, refusal (one counter)", us_text(statistics.median(updates["refusal"]))),
        ]

        header = f"Bearer {fx.es_token}"
        bare = TokenValidator(fx.settings())
        watched = TokenValidator(fx.settings(), observers=[PrometheusMetrics(CollectorRegistry())])
        bare.authenticate(header)
        watched.authenticate(header)
        hot = interleave({"off": lambda: bare.authenticate(header), "on": lambda: watched.authenticate(header)},
                         rounds=rounds, batch_seconds=0.02)
        rows.append(Row(
            "f", "  cache hit authenticate(), no observer / Prometheus observer",
            f"{us_text(statistics.median(hot['off']))} / {us_text(statistics.median(hot['on']))}",
        ))

        try:
            from demo_flask.app import create_app
        except ImportError:
            rows.append(Row("f", "/orders/whoami metrics on / off: skipped", "skipped", note="flask is not installed"))
            return rows
        environ = {"TOKEN_MIDDLEWARE_ISSUER": fx.settings().issuer, "TOKEN_MIDDLEWARE_AUDIENCE": "orders-service",
                   "TOKEN_MIDDLEWARE_PUBLIC_KEYS": str(fx.jwks_path)}
        clients = {name: create_app(environ, metrics=name == "on").test_client() for name in ("on", "off")}
        headers = {"Authorization": header}
        for client in clients.values():
            if client.get("/orders/whoami", headers=headers).status_code != 200:
                raise RuntimeError("the orders service refused the benchmark token")
        if clients["on"].get("/metrics").status_code != 200 or clients["off"].get("/metrics").status_code != 404:
            raise RuntimeError("metrics are not on and off as asked")
        samples = paired(clients["on"], clients["off"], headers, rounds=rounds, pairs=options.rounds_or(400, 100))
    # Requests per second on / off = time per request off / on.
    ratio = median_ratio(samples, "off", "on")
    rows.append(Row(
        "f", "/orders/whoami metrics on / off (in process)", ratio_text(ratio), target=f"≥ {ON_OFF_TARGET:g}×",
        met=ratio >= ON_OFF_TARGET,
        note=f"on {us_text(statistics.median(samples['on']))}, off {us_text(statistics.median(samples['off']))} "
             f"per request (CPU), Flask test client, {rounds} rounds",
        data={"ratio": ratio},
    ))
    return rows
