"""(d) The cost of the edge: nginx ``auth_request`` (the demo's edge) and the Python gateway
forwarding by itself (the demo's fallback without nginx), each against a direct call.

Direct: wrk straight to the upstream (``benchmarks.bare_app:app`` under gunicorn).
nginx: Debian's nginx with ``deploy/nginx/nginx.conf.template`` (``auth_request`` to the
gateway's ``/_auth``, cached per route and credential for at most 30 s, then ``proxy_pass`` to
the upstream with the minted token).
Python fallback: wrk to ``demo_gateway.wsgi:app`` with HTTP Basic; the gateway authenticates,
mints (or reuses) a token and forwards to the same upstream through urllib3. The gateway runs
as the demo runs it (``supervisor.GATEWAY_WORKER_CLASS``, gunicorn's gevent worker, with
``--keep-alive supervisor.HEAD_TIMEOUT``, which bounds slow request heads) and the suite's
worker count; the upstream keeps the suite's settings, the same for the direct call and behind
either edge.

The client is the demo user ``alice`` from the demo's own users file (a pbkdf2 hash with 1,000,000
rounds): the gateway remembers verified Basic credentials for a short while, so after the warm-up
the figure shows the hop, not the password hashing. Targets: nginx ≥ 0.85×, Python fallback
≥ 0.35× direct.
Skipped, with a line saying why, when the gateway, wrk or nginx is missing.
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from demo_gateway import supervisor

from ._common import AUDIENCE, Options, Row, ratio_text, temp_dir
from ._http import (
    HOST,
    THREADS,
    WORKER_CLASS,
    WORKERS,
    Comparison,
    Skip,
    WrkResult,
    alternate,
    gunicorn,
    lua_script,
    run_wrk,
    wrk_binary,
    wrk_runner,
)
from .http import get_json

NAME = "gateway"
TARGET_HOP = 0.35
TARGET_NGINX = 0.85
USER, PASSWORD = "alice", "alice-password"  # the demo's documented credentials
WARM_UP_SECONDS = 1.0
#: The gateway's gunicorn worker class and threads: the demo's (see supervisor.GATEWAY_WORKER_CLASS).
GATEWAY_WORKER_CLASS = supervisor.GATEWAY_WORKER_CLASS
GATEWAY_THREADS = supervisor.GATEWAY_THREADS
GATEWAY_KEEPALIVE = supervisor.HEAD_TIMEOUT


def warm_up(url: str, *, fast: float = 0.1, in_a_row: int = 20, limit: float = 60.0) -> None:
    """Sequential requests until ``in_a_row`` answer within ``fast`` seconds.

    One at a time, so each gateway worker checks the password hash once (a worker's first
    request) instead of every thread at once; afterwards the workers answer from their cache of
    verified credentials.
    """
    deadline = time.monotonic() + limit
    streak = 0
    while streak < in_a_row:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become fast within {limit:g} s")
        t0 = time.monotonic()
        status, _ = get_json(url, _basic(USER, PASSWORD))
        if status != 200:
            raise RuntimeError(f"{url} answered {status} for the demo user")
        streak = streak + 1 if time.monotonic() - t0 < fast else 0


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _comparison_rows(figure_name: str, comparison: Comparison, target: float, rounds: int, seconds: float) -> list[Row]:
    ratio = comparison.ratio
    bad = comparison.b_non_2xx + comparison.b_socket_errors
    return [
        Row("d", f"{figure_name} / direct", ratio_text(ratio), target=f"≥ {target}×", met=ratio >= target and bad == 0,
            note=(f"{comparison.b_rps:.0f} vs {comparison.a_rps:.0f} req/s; {rounds} rounds × {seconds:g} s; "
                  f"{bad} non-2xx/errors of {comparison.b_requests}"),
            data={"ratio": ratio, "rps": comparison.b_rps, "rps_direct": comparison.a_rps, "non_2xx": bad}),
    ]


def run(options: Options) -> list[Row]:
    wrk_binary()
    if importlib.util.find_spec("demo_gateway") is None:
        raise Skip("demo_gateway is not importable")
    # Many short rounds rather than figure (c)'s few long ones: three servers and wrk share the
    # cores here, and a few seconds of outside load (it comes in bursts on a shared machine)
    # would decide a 3-round median; the median of 15 one-second A/B pairs shrugs off 7 such.
    rounds = options.rounds_or(15, 1)
    seconds = options.duration_or(1.0, 1.0)
    rows: list[Row] = []
    with temp_dir() as directory:
        basic = lua_script(directory, _basic(USER, PASSWORD))
        gateway_port = supervisor.free_port(HOST)
        with gunicorn("upstream", "benchmarks.bare_app:app", {}, directory) as upstream:
            upstream_port = int(upstream.rsplit(":", 1)[1])
            gateway_env = {
                "GATEWAY_ISSUER": f"http://{HOST}:{gateway_port}",
                "GATEWAY_ROUTES": f"/orders={upstream}",
                "GATEWAY_AUDIENCES": f"/orders={AUDIENCE}",
                "GATEWAY_KEYS_DIR": str(directory / "gateway-keys"),
            }
            direct = wrk_runner(upstream + "/orders/whoami", basic)
            # A fresh gateway for each comparison: its cache of verified credentials (60 s) then
            # cannot expire in the middle of one, which would add a burst of password hashing.
            with gunicorn("gateway", "demo_gateway.wsgi:app", gateway_env, directory, port=gateway_port,
                          ready_path="/.well-known/jwks.json", worker_class=GATEWAY_WORKER_CLASS, threads=GATEWAY_THREADS,
                          keepalive=GATEWAY_KEEPALIVE) as gateway:
                warm_up(gateway + "/orders/whoami")
                hop = wrk_runner(gateway + "/orders/whoami", basic)
                hop(WARM_UP_SECONDS)
                comparison = alternate(direct, hop, rounds=rounds, seconds=seconds)
                rows += _comparison_rows("Python fallback (urllib3, Basic)", comparison, TARGET_HOP, rounds, seconds)
            with gunicorn("gateway-for-nginx", "demo_gateway.wsgi:app", gateway_env, directory,
                          port=gateway_port, ready_path="/.well-known/jwks.json", worker_class=GATEWAY_WORKER_CLASS, threads=GATEWAY_THREADS,
                          keepalive=GATEWAY_KEEPALIVE):
                rows.append(_nginx_row(gateway_port, upstream_port, direct, basic, rounds, seconds))
    gateway_setting = (f"-k {GATEWAY_WORKER_CLASS} --keep-alive {GATEWAY_KEEPALIVE}"
                       + (f" --threads {GATEWAY_THREADS}" if GATEWAY_THREADS > 1 else ""))
    rows[0] = Row(**{**rows[0].__dict__,
                     "note": rows[0].note + f"; gunicorn -w {WORKERS}: upstream -k {WORKER_CLASS} --threads {THREADS}, "
                                            f"gateway {gateway_setting} (the demo's)"})
    return rows


def _nginx_row(gateway_port: int, upstream_port: int, direct: Callable[[float], WrkResult], script: Path, rounds: int, seconds: float) -> Row:
    if supervisor.nginx_binary() is None:
        return Row("d", "nginx auth_request / direct", "skipped", note="nginx is not installed (apt-get install nginx-light)")
    if not supervisor.NGINX_TEMPLATE.is_file():
        return Row("d", "nginx auth_request / direct", "skipped", note=f"{supervisor.NGINX_TEMPLATE} is missing")
    config = supervisor.DemoConfig(
        host=HOST, ports=supervisor.DemoPorts(gateway=gateway_port, orders=upstream_port, customers=upstream_port)
    )
    nginx_port = supervisor.free_port(HOST)
    prefix = Path(tempfile.mkdtemp(prefix="token-middleware-bench-nginx-"))
    process = supervisor.start_nginx(config, port=nginx_port, prefix=prefix)
    try:
        url = f"http://{HOST}:{nginx_port}/orders/whoami"
        warm_up(url)
        run_wrk(url, seconds=WARM_UP_SECONDS, script=script)
        comparison = alternate(direct, wrk_runner(url, script), rounds=rounds, seconds=seconds)
    finally:
        process.stop()
        shutil.rmtree(prefix, ignore_errors=True)
    return _comparison_rows("nginx auth_request", comparison, TARGET_NGINX, rounds, seconds)[0]
