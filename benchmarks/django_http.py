"""(i) Django at the HTTP level (issue 16): ``/customers/whoami`` with the middleware against the
same Django settings without it.

A: ``benchmarks.bare_django:application`` (the customers service's settings with the token
   middleware removed; the same route and JSON shape, no token handling).
B: ``demo_django.wsgi:application`` (the demo's customers service, ``TokenMiddleware`` and
   ``@require_token`` on every request), its keys from a counting JWKS server on loopback
   (``TOKEN_MIDDLEWARE_JWKS_URL``).

Both under gunicorn with the shared settings (:mod:`benchmarks._http`), both sent the same
request by wrk (``GET /customers/whoami`` with ``Authorization: Bearer <a real ES256 token>``),
in alternating rounds. Targets: B ≥ 0.95× A, zero non-2xx, zero JWKS fetches under load.
Beside them, the servers' own CPU time per request in A and B (:mod:`benchmarks._servercpu`):
steadier than wall-clock throughput on a shared machine, a cross-check, not the target.

Run: ``python -m benchmarks --only django``.
"""

from __future__ import annotations

import statistics

from ._common import ISSUER, Fixture, Options, Row, ratio_text, temp_dir
from ._http import (THREADS, WORKER_CLASS, WORKERS, WRK_CONNECTIONS, alternate, gunicorn, lua_script, wrk_binary,
                    wrk_runner)
from ._servercpu import CpuMeter
from .http import get_json
from .jwks import counting_jwks_server

NAME = "django"
TARGET = 0.95
PATH = "/customers/whoami"
AUDIENCE = "customers-service"


def run(options: Options) -> list[Row]:
    wrk_binary()  # Skip early when wrk is missing
    rounds = options.rounds_or(3, 1)
    seconds = options.duration_or(5.0, 2.0)
    with temp_dir() as directory:
        fx = Fixture.create(directory)  # its tokens name orders-service and customers-service
        auth = {"Authorization": f"Bearer {fx.es_token}"}
        script = lua_script(directory, auth)
        with counting_jwks_server(fx.jwks()) as jwks:
            customers_env = {
                "TOKEN_MIDDLEWARE_ISSUER": ISSUER,
                "TOKEN_MIDDLEWARE_AUDIENCE": AUDIENCE,
                "TOKEN_MIDDLEWARE_JWKS_URL": jwks.url,
            }
            with gunicorn("bare-django", "benchmarks.bare_django:application", {}, directory,
                          ready_path=PATH) as bare, \
                    gunicorn("customers", "demo_django.wsgi:application", customers_env, directory,
                             ready_path=PATH) as customers:
                status_a, body_a = get_json(bare + PATH, auth)
                status_b, body_b = get_json(customers + PATH, auth)
                if status_a != 200 or status_b != 200 or set(body_a) != set(body_b):
                    raise RuntimeError(f"the two apps do not answer alike: {status_a} {sorted(body_a)} / "
                                       f"{status_b} {sorted(body_b)}")
                run_a = wrk_runner(bare + PATH, script)
                run_b = wrk_runner(customers + PATH, script)
                run_a(1.0)
                run_b(1.0)  # every worker has booted and fetched its keys by now
                meter_a, meter_b = CpuMeter([bare], run_a), CpuMeter([customers], run_b)
                before = jwks.count
                comparison = alternate(meter_a, meter_b, rounds=rounds, seconds=seconds, warm_up=0)
                fetches_under_load = jwks.count - before
                warm_up_fetches = before
    ratio = comparison.ratio
    cpu_a, cpu_b = statistics.median(meter_a.us_per_request), statistics.median(meter_b.us_per_request)
    cpu_ratio = statistics.median(a / b for a, b in zip(meter_a.us_per_request, meter_b.us_per_request))
    non_2xx = comparison.b_non_2xx + comparison.b_socket_errors
    a_failures = sum(r.non_2xx + r.socket_errors for r in comparison.a)
    setting = f"gunicorn -w {WORKERS} -k {WORKER_CLASS} --threads {THREADS}; wrk -c{WRK_CONNECTIONS}"
    return [
        Row("i", "/customers/whoami with middleware / bare Django", ratio_text(ratio), target=f"≥ {TARGET:.2f}×",
            met=ratio >= TARGET,
            note=(f"{comparison.b_rps:.0f} vs {comparison.a_rps:.0f} req/s; {rounds} rounds × {seconds:g} s; "
                  f"{setting}; same Django settings, TokenMiddleware removed in A"),
            data={"ratio": ratio, "rps_middleware": comparison.b_rps, "rps_bare": comparison.a_rps,
                  "per_round": [b.requests_per_second / a.requests_per_second
                                for a, b in zip(comparison.a, comparison.b)]}),
        Row("i", "  non-2xx responses (+ socket errors) with middleware (Django)", str(non_2xx), target="0",
            met=non_2xx == 0, note=f"of {comparison.b_requests} requests; bare Django: {a_failures}",
            data={"non_2xx": comparison.b_non_2xx, "socket_errors": comparison.b_socket_errors,
                  "bare_failures": a_failures}),
        Row("i", "  server CPU per request, bare / with middleware (Django)", ratio_text(cpu_ratio),
            note=(f"{cpu_b:.0f} µs with middleware vs {cpu_a:.0f} µs bare (gunicorn master + workers, "
                  "user + system, /proc); a cross-check: the target is on req/s"),
            data={"ratio": cpu_ratio, "us_middleware": cpu_b, "us_bare": cpu_a,
                  "per_round_us_middleware": meter_b.us_per_request, "per_round_us_bare": meter_a.us_per_request}),
        Row("i", "  JWKS fetches under load (Django)", str(fetches_under_load), target="0",
            met=fetches_under_load == 0,
            note=f"{warm_up_fetches} at start-up and warm-up ({WORKERS} workers)",
            data={"fetches": fetches_under_load}),
    ]
