"""Machinery of the replicas test (``test_e2e_replicas.py``): several gateway replicas (separate
gunicorn masters, standing in for separate hosts) sharing one keys directory behind a small
round-robin nginx, the orders (Flask) and customers (Django) services discovering their keys
through that nginx, a chained load and ``token-middleware rotate-keys`` run from outside.

Built on :mod:`demo_gateway.supervisor`; every process is always stoppable (:meth:`Replicas.stop`).
Nothing here prints or logs a token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from werkzeug.security import generate_password_hash

from demo_gateway.supervisor import (
    CUSTOMERS_AUDIENCE,
    GATEWAY_THREADS,
    GATEWAY_WORKER_CLASS,
    HEAD_TIMEOUT,
    ORDERS_AUDIENCE,
    DemoError,
    ManagedProcess,
    base_env,
    free_port,
    gunicorn_argv,
    nginx_binary,
    nginx_globals,
    start_process,
    wait_until_answers,
)

HOST = "127.0.0.1"
#: Cheap on purpose (the test is about keys, not password cost), as in tests/reliability.
FAST_HASH = "pbkdf2:sha256:1000"
USER_SCOPES = ["customers:read", "orders:read"]
#: The ``token-middleware`` console script of the interpreter running the tests.
CLI = Path(sys.executable).with_name("token-middleware")

#: A round-robin balancer over the replicas: every path (login, JWKS, discovery, the routes)
#: goes to the next replica; each replica authenticates, mints and forwards by itself.
BALANCER_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server_tokens off;

    upstream gateways {{
{servers}
        keepalive 32;
    }}

    server {{
        listen {listen};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            # A replica that fails is not retried for a request: a refusal must show.
            proxy_next_upstream off;
        }}
    }}
}}
"""


def write_users_file(path: Path, count: int) -> dict[str, str]:
    """``count`` users with distinct passwords in a ``GATEWAY_USERS_FILE``; returns ``name -> password``."""
    passwords = {f"user-{i:02d}": f"pw-{i:02d}-{'x' * i}" for i in range(count)}
    path.write_text(json.dumps({
        name: {"password_hash": generate_password_hash(pw, method=FAST_HASH), "scopes": USER_SCOPES}
        for name, pw in passwords.items()
    }), encoding="utf-8")
    return passwords


def render_balancer_conf(prefix: Path, listen: str, gateways: Sequence[str]) -> str:
    servers = "\n".join(f"        server {hostport};" for hostport in gateways)
    return BALANCER_CONF.format(prefix=prefix, listen=listen, servers=servers)


def start_balancer(prefix: Path, port: int, gateways: Sequence[str], *, ready_timeout: float = 15.0
                   ) -> ManagedProcess:
    """nginx on ``HOST:port`` balancing over ``gateways`` (``host:port`` each), unprivileged, in
    the foreground, with its pid, logs and temp files under ``prefix``."""
    binary = nginx_binary()
    if binary is None:
        raise DemoError("nginx is not installed")
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o700)
    conf = prefix / "nginx.conf"
    conf.write_text(render_balancer_conf(prefix, f"{HOST}:{port}", gateways))
    flags = ["-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    check = subprocess.run([binary, "-t", *flags], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise DemoError(f"nginx rejected {conf}:\n{check.stderr.strip()}")
    process = start_process("nginx", [binary, *flags, "-g", nginx_globals()],
                            env=base_env(), log_dir=prefix, cwd=prefix)
    try:
        wait_until_answers(f"http://{HOST}:{port}/.well-known/jwks.json", timeout=ready_timeout,
                           process=process)
    except BaseException:
        process.stop()
        raise
    return process


@dataclass
class Replicas:
    """The running topology; :meth:`stop` stops every process (idempotent)."""

    balancer_url: str
    gateway_urls: list[str]
    orders_url: str
    customers_url: str
    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            if process.running():
                process.popen.terminate()
        for process in reversed(self.processes):
            process.stop()

    def dead(self) -> list[str]:
        return [p.name for p in self.processes if not p.running()]


def start_replicas(*, count: int, workers: int, keys_dir: Path, users_file: Path, log_dir: Path,
                   ready_timeout: float = 60.0) -> Replicas:
    """``count`` gateway replicas (``workers`` each, the demo's gateway worker class) on one
    ``keys_dir``, nginx in front of them, then the two services; waits until each answers.

    The replicas' issuer is the balancer's URL, and so is the services' ``ISSUER``: they discover
    their keys through nginx. Forwarding mode: ``/orders`` tokens name both services. The services
    run with the library's defaults otherwise (``JWKS_MIN_REFRESH_SECONDS`` 30 s).
    """
    ports: set[int] = set()
    while len(ports) < count + 3:
        ports.add(free_port(HOST))
    edge, orders, customers, *gateway_ports = sorted(ports)
    topology = Replicas(
        balancer_url=f"http://{HOST}:{edge}",
        gateway_urls=[f"http://{HOST}:{p}" for p in gateway_ports],
        orders_url=f"http://{HOST}:{orders}",
        customers_url=f"http://{HOST}:{customers}",
        log_dir=log_dir,
    )
    gateway_env = {
        "GATEWAY_ISSUER": topology.balancer_url,
        "GATEWAY_ROUTES": f"/orders={topology.orders_url},/customers={topology.customers_url}",
        "GATEWAY_AUDIENCES": (f"/orders={ORDERS_AUDIENCE} {CUSTOMERS_AUDIENCE},"
                              f"/customers={CUSTOMERS_AUDIENCE}"),
        "GATEWAY_KEYS_DIR": str(keys_dir),
        "GATEWAY_USERS_FILE": str(users_file),
        "GATEWAY_TRUSTED_PROXIES": HOST,
    }
    services = [
        ("customers", "demo_django.wsgi:application", customers, "/customers/whoami", {
            "TOKEN_MIDDLEWARE_ISSUER": topology.balancer_url,
            "TOKEN_MIDDLEWARE_AUDIENCE": CUSTOMERS_AUDIENCE,
        }),
        ("orders", "demo_flask.wsgi:app", orders, "/orders/whoami", {
            "TOKEN_MIDDLEWARE_ISSUER": topology.balancer_url,
            "TOKEN_MIDDLEWARE_AUDIENCE": ORDERS_AUDIENCE,
            "TOKEN_MIDDLEWARE_FORWARD_TO": f"{HOST}:{customers}",
            "CUSTOMERS_URL": topology.customers_url,
        }),
    ]
    try:
        # All replicas at once: the first worker of any of them creates the keys (under the
        # directory's file lock), the others load them.
        gateways = []
        for i, port in enumerate(gateway_ports):
            argv = gunicorn_argv("demo_gateway.wsgi:app", HOST, port, workers=workers,
                                 worker_class=GATEWAY_WORKER_CLASS, threads=GATEWAY_THREADS,
                                 keepalive=HEAD_TIMEOUT)
            process = start_process(f"gateway-{i}", argv, env=base_env(gateway_env), log_dir=log_dir)
            topology.processes.append(process)
            gateways.append((process, port))
        for process, port in gateways:
            wait_until_answers(f"http://{HOST}:{port}/.well-known/jwks.json", timeout=ready_timeout,
                               process=process)
        topology.processes.append(
            start_balancer(log_dir / "nginx", edge, [f"{HOST}:{p}" for p in gateway_ports]))
        started = []
        for name, target, port, path, env in services:
            argv = gunicorn_argv(target, HOST, port, workers=2, worker_class="sync")
            process = start_process(name, argv, env=base_env(env), log_dir=log_dir)
            topology.processes.append(process)
            started.append((process, f"http://{HOST}:{port}{path}"))
        for process, url in started:
            wait_until_answers(url, timeout=ready_timeout, process=process)
    except BaseException:
        topology.stop()
        raise
    return topology


def rotate_keys(keys_dir: Path) -> str:
    """Run ``token-middleware rotate-keys`` as a separate process (as a cron job on another host
    would); returns the new signing key's ``kid`` (public)."""
    done = subprocess.run([str(CLI), "rotate-keys", "--keys-dir", str(keys_dir)], env=base_env(),
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise AssertionError(f"rotate-keys failed ({done.returncode}): {done.stderr.strip()}")
    match = re.search(r"new kid (\S+?)\.?$", done.stdout, flags=re.M)
    if match is None:
        raise AssertionError(f"rotate-keys did not name the new kid: {done.stdout.strip()}")
    return match.group(1)


# --- the load -------------------------------------------------------------------------------------


@dataclass
class LoadTally:
    """What a chained load saw: requests sent, refusals (anything but 200, or no answer),
    crossovers (a 200 naming anyone but the caller at either hop)."""

    requests: int = 0
    refused: int = 0
    crossovers: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    #: ``time.monotonic()`` of every refusal, to tell when they happened.
    refused_at: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def chain_names_caller(user: str, response: requests.Response) -> bool:
    body: Any = response.json()
    return bool(body["orders"]["sub"] == body["customers"]["sub"] == user)


def run_chain_load(url: str, passwords: Mapping[str, str], *, threads: int, at_least: int,
                   until: Callable[[], bool], timeout: float = 30.0) -> LoadTally:
    """GET ``url`` (``/orders/chain`` through the balancer) from ``threads`` threads, one
    keep-alive session each, the users taking turns with their Basic credentials, until at least
    ``at_least`` requests were sent and ``until()`` is true."""
    tally = LoadTally()
    lock = threading.Lock()
    users = sorted(passwords)
    counter = 0

    def claim() -> int | None:
        nonlocal counter
        with lock:
            if counter >= at_least and until():
                return None
            counter += 1
            return counter - 1

    def note(problem: str, user: str, detail: str, *, crossover: bool = False) -> None:
        with lock:
            if crossover:
                tally.crossovers += 1
            else:
                tally.refused += 1
                tally.refused_at.append(time.monotonic())
            tally.statuses[problem] += 1
            if len(tally.examples) < 5:
                tally.examples.append(f"{user}: {problem} {detail}")

    def worker() -> None:
        with requests.Session() as session:
            session.trust_env = False
            while (i := claim()) is not None:
                user = users[i % len(users)]
                try:
                    response = session.get(url, auth=(user, passwords[user]), timeout=timeout)
                except requests.RequestException as exc:
                    note(type(exc).__name__, user, "")
                    continue
                if response.status_code != 200:
                    detail = f"{response.headers.get('WWW-Authenticate', '')} {response.text[:200]!r}"
                    note(str(response.status_code), user, detail)
                elif not chain_names_caller(user, response):
                    note("crossover", user, repr(response.text[:200]), crossover=True)
                else:
                    with lock:
                        tally.statuses["200"] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    tally.seconds = time.monotonic() - started
    tally.requests = counter
    return tally
