"""(c) HTTP throughput: the orders service with the middleware against a bare Flask app.

A: ``benchmarks.bare_app:app`` (same route, same JSON shape, no token handling).
B: ``demo_flask.wsgi:app`` (the demo's orders service, :class:`TokenAuth` on every request),
   with its keys from a counting JWKS server on loopback (``TOKEN_MIDDLEWARE_JWKS_URL``).

Both under gunicorn with the same settings (:mod:`benchmarks._http`), both sent the same
request by wrk (``GET /orders/whoami`` with ``Authorization: Bearer <a real ES256 token>``, the
gateway's default algorithm), in alternating rounds. Targets: B ≥ 0.90× A, zero non-2xx. The
JWKS fetches made while under load are counted too (steady state: 0).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from ._common import AUDIENCE, ISSUER, Fixture, Options, Row, ratio_text, temp_dir
from ._http import THREADS, WORKER_CLASS, WORKERS, WRK_CONNECTIONS, alternate, gunicorn, lua_script, wrk_binary, wrk_runner
from .jwks import counting_jwks_server

NAME = "http"
TARGET = 0.90


def get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return response.status, json.loads(response.read())


def run(options: Options) -> list[Row]:
    wrk_binary()  # Skip early when wrk is missing
    rounds = options.rounds_or(3, 1)
    seconds = options.duration_or(5.0, 2.0)
    with temp_dir() as directory:
        fx = Fixture.create(directory)
        auth = {"Authorization": f"Bearer {fx.es_token}"}
        script = lua_script(directory, auth)
        with counting_jwks_server(fx.jwks()) as jwks:
            orders_env = {
                "TOKEN_MIDDLEWARE_ISSUER": ISSUER,
                "TOKEN_MIDDLEWARE_AUDIENCE": AUDIENCE,
                "TOKEN_MIDDLEWARE_JWKS_URL": jwks.url,
            }
            with gunicorn("bare", "benchmarks.bare_app:app", {}, directory) as bare, \
                    gunicorn("orders", "demo_flask.wsgi:app", orders_env, directory) as orders:
                status_a, body_a = get_json(bare + "/orders/whoami", auth)
                status_b, body_b = get_json(orders + "/orders/whoami", auth)
                # The orders service may say more (``aud``, ``act``) than the baseline; the
                # baseline must say nothing it does not.
                if status_b != 200 or not set(body_a) <= set(body_b):
                    raise RuntimeError(f"the two apps do not answer alike: {status_a} {body_a} / {status_b} {body_b}")
                run_a = wrk_runner(bare + "/orders/whoami", script)
                run_b = wrk_runner(orders + "/orders/whoami", script)
                run_a(1.0)
                run_b(1.0)  # every worker has booted and fetched its keys by now
                before = jwks.count
                comparison = alternate(run_a, run_b, rounds=rounds, seconds=seconds, warm_up=0)
                fetches_under_load = jwks.count - before
                warm_up_fetches = before
    ratio = comparison.ratio
    non_2xx = comparison.b_non_2xx + comparison.b_socket_errors
    setting = f"gunicorn -w {WORKERS} -k {WORKER_CLASS} --threads {THREADS}; wrk -c{WRK_CONNECTIONS}"
    return [
        Row("c", "/orders/whoami with middleware / bare Flask", ratio_text(ratio), target=f"≥ {TARGET:.2f}×",
            met=ratio >= TARGET,
            note=f"{comparison.b_rps:.0f} vs {comparison.a_rps:.0f} req/s; {rounds} rounds × {seconds:g} s; {setting}",
            data={"ratio": ratio, "rps_middleware": comparison.b_rps, "rps_bare": comparison.a_rps}),
        Row("c", "  non-2xx responses (+ socket errors) with middleware", str(non_2xx), target="0",
            met=non_2xx == 0, note=f"of {comparison.b_requests} requests",
            data={"non_2xx": comparison.b_non_2xx, "socket_errors": comparison.b_socket_errors}),
        Row("c", "  JWKS fetches under load", str(fetches_under_load), target="0", met=fetches_under_load == 0,
            note=f"{warm_up_fetches} at start-up and warm-up ({WORKERS} workers)", data={"fetches": fetches_under_load}),
    ]
