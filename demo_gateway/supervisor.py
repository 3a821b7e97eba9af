"""The demo stack for ``./run demo`` and the end-to-end tests: the edge, the gateway, two services.

:meth:`DemoStack.start` starts, as real processes on loopback and in this order:

1. the Python gateway (``demo_gateway.wsgi:app`` under gunicorn);
2. the edge, on the first port of ``--ports`` (clients connect there, and it is the issuer URL):
   **nginx** from ``deploy/nginx/`` whenever the machine has it, with the gateway behind it on a
   port of its own (authenticating and minting through ``/_auth``, and trusting nginx's
   ``X-Forwarded-For``); **without nginx, the Python gateway itself** on that port, forwarding
   by itself (:meth:`DemoStack.describe` says so, for the demo to print);
3. the orders (Flask) and customers (Django) services, which fetch their keys through the edge.

**Token modes** (``DemoConfig.token_mode``). ``exchange`` (the default): the gateway mints one
audience per route (``/orders`` → ``orders-service`` alone), and the orders service exchanges
its token at the gateway's ``POST /oauth2/token`` for one meant for ``customers-service`` alone
(RFC 8693). The supervisor generates the orders service's client secret at each start and the
gateway's clients file (``clients.json``, ``0600``, in the log directory; only the secret's hash
is written, the secret itself reaches the orders service through its environment). The orders
service finds the token endpoint by discovery at the edge: nginx passes ``/oauth2/token`` to the
gateway like its other own paths (no ``auth_request``, no cache). ``forward``: the old way, one
token naming both services, forwarded as it is (for deployments that cannot exchange).

It waits until each one answers and always stops them all (SIGTERM, bounded wait, SIGKILL).

The gateway runs under gunicorn's ``gevent`` worker with ``--keep-alive`` :data:`HEAD_TIMEOUT`:
that worker drops a connection whose request head (idle, partial or trickling) has not fully
arrived within that time, and an event loop serves a gateway that mostly waits on a service. No
other gunicorn worker bounds the head: without gevent the demo falls back to ``gthread`` and says
that slow clients then hold its threads (:data:`SLOW_HEADS_DROPPED`).

What is trusted: only the arguments. The environment handed to a service is built from scratch
for the ``TOKEN_MIDDLEWARE_*`` and ``GATEWAY_*`` names (:func:`.processes.base_env`). Everything
listens on loopback by default. Nothing here reads, logs or prints a token.

Example::

    stack = DemoStack.start(DemoConfig(ports=DemoPorts.free()))
    try:
        print(stack.gateway_url, stack.edge)      # e.g. http://127.0.0.1:8000 nginx
    finally:
        stack.stop()
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.security import generate_password_hash

from .nginx import NGINX_BINARY, NGINX_TEMPLATE, nginx_binary, nginx_globals, render_nginx_conf, run_nginx
from .processes import (
    ACCESS_LOG_FORMAT,
    SOURCE_ROOT,
    DemoError,
    ManagedProcess,
    base_env,
    free_port,
    gunicorn_argv,
    port_is_free,
    start_process,
    url_host,
    wait_until_answers,
)

__all__ = [
    "ACCESS_LOG_FORMAT", "CUSTOMERS_AUDIENCE", "EDGES", "GATEWAY_THREADS", "GATEWAY_WORKER_CLASS",
    "HEAD_TIMEOUT", "NGINX_BINARY", "ORDERS_CLIENT_ID", "TOKEN_MODES", "NGINX_TEMPLATE", "ORDERS_AUDIENCE", "SLOW_HEADS_DROPPED",
    "SOURCE_ROOT", "DemoConfig", "DemoError", "DemoPorts", "DemoStack", "ManagedProcess", "base_env",
    "free_port", "gunicorn_argv", "nginx_binary", "nginx_globals", "port_is_free",
    "render_nginx_conf", "start_nginx", "start_process", "url_host", "wait_until_answers",
]

ORDERS_AUDIENCE = "orders-service"
CUSTOMERS_AUDIENCE = "customers-service"

#: ``auto``: nginx when installed, else the Python gateway; or either one by name.
EDGES = ("auto", "nginx", "python")

#: ``exchange``: per-hop tokens (RFC 8693, the default); ``forward``: one token for the chain.
TOKEN_MODES = ("exchange", "forward")
#: The orders service's client id at the gateway's token endpoint, and what it may exchange for.
#: Shown on the gateway's /login page: the demo's users (see demo_gateway/__init__.py).
LOGIN_NOTE = ("Demo users: alice / alice-password (orders:read customers:read), "
              "bob / bob-password (orders:read orders:write customers:read)")
ORDERS_CLIENT_ID = "orders-service"
ORDERS_MAY_EXCHANGE_FOR = {CUSTOMERS_AUDIENCE: ["customers:read"]}

#: Seconds a request head may take at the Python gateway (gunicorn ``--keep-alive``, which the
#: ``gevent`` worker applies to every request head, the first one included).
HEAD_TIMEOUT = 5

#: gunicorn worker class and threads of the demo gateway, and whether that worker drops slow
#: request heads: gunicorn's ``gevent`` worker when gevent is installed (it bounds each head by
#: ``--keep-alive``; gevent's own ``gevent_pywsgi`` and gunicorn's ``sync`` and ``gthread`` do
#: not: gthread waits 5 s for a first byte, then reads the head in a thread for as long as it
#: trickles), else ``gthread`` with 4 threads.
_HAS_GEVENT = importlib.util.find_spec("gevent") is not None
GATEWAY_WORKER_CLASS, GATEWAY_THREADS = ("gevent", 1) if _HAS_GEVENT else ("gthread", 4)
SLOW_HEADS_DROPPED = _HAS_GEVENT


@dataclass(frozen=True)
class DemoPorts:
    """The three ports of ``--ports``: the edge (clients and issuer), orders, customers."""

    gateway: int = 8000
    orders: int = 8001
    customers: int = 8002

    @classmethod
    def parse(cls, text: str) -> DemoPorts:
        """``"8000,8001,8002"`` (edge, orders, customers)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
            raise ValueError(f"--ports takes three ports: gateway,orders,customers; got {text!r}")
        gateway, orders, customers = (int(p) for p in parts)
        if len({gateway, orders, customers}) != 3:
            raise ValueError(f"--ports must be three different ports; got {text!r}")
        return cls(gateway, orders, customers)

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> DemoPorts:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port(host))
        gateway, orders, customers = sorted(ports)
        return cls(gateway, orders, customers)

    def __iter__(self) -> Iterator[int]:
        return iter((self.gateway, self.orders, self.customers))


@dataclass
class DemoConfig:
    """Everything that differs between two runs of the demo stack.

    ``edge`` is one of :data:`EDGES`. ``backend_port`` is the Python gateway's own port when
    nginx is the edge (default: a free one, chosen by :meth:`DemoStack.start`, which records it
    here). ``body_timeout`` overrides the gateway's ``GATEWAY_BODY_TIMEOUT``.

    ``token_mode`` is one of :data:`TOKEN_MODES`. In exchange mode :meth:`DemoStack.start`
    generates ``orders_secret`` and ``clients_file`` unless both are given (tests give a clients
    file whose hash does not match the secret, to see a failed exchange).
    """

    host: str = "127.0.0.1"
    ports: DemoPorts = field(default_factory=DemoPorts)
    keys_dir: Path | None = None
    users_file: Path | None = None
    log_dir: Path | None = None
    jwks_min_refresh_seconds: int = 2
    token_ttl: int | None = None
    gateway_workers: int = 3
    service_workers: int = 2
    worker_class: str = "sync"
    gateway_worker_class: str = GATEWAY_WORKER_CLASS
    gateway_threads: int = GATEWAY_THREADS
    ready_timeout: float = 40.0
    edge: str = "auto"
    backend_port: int | None = None
    head_timeout: int = HEAD_TIMEOUT
    body_timeout: float | None = None
    token_mode: str = "exchange"
    clients_file: Path | None = None
    orders_secret: str | None = field(default=None, repr=False)

    @property
    def gateway_url(self) -> str:
        """The edge: where clients connect, and the gateway's issuer URL."""
        return f"http://{url_host(self.host)}:{self.ports.gateway}"

    @property
    def backend_host(self) -> str:
        """Where the gateway listens behind nginx: loopback, even when the edge listens on all."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def orders_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.orders}"

    @property
    def customers_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.customers}"

    @property
    def customers_hostport(self) -> str:
        return f"{url_host(self.host)}:{self.ports.customers}"

    def resolved_edge(self) -> str:
        """``nginx`` or ``python``; :class:`DemoError` when nginx is asked for and missing."""
        if self.edge not in EDGES:
            raise DemoError(f"unknown edge {self.edge!r}; choose one of {', '.join(EDGES)}")
        if self.edge == "python" or (self.edge == "auto" and nginx_binary() is None):
            return "python"
        if nginx_binary() is None:
            raise DemoError("nginx is not installed (Debian: apt-get install nginx-light); "
                            "use --edge python to let the Python gateway forward by itself")
        return "nginx"

    def gateway_env(self, *, trusted_proxies: tuple[str, ...] = ()) -> dict[str, str]:
        orders_audiences = ORDERS_AUDIENCE if self.exchanging else f"{ORDERS_AUDIENCE} {CUSTOMERS_AUDIENCE}"
        env = {
            "GATEWAY_ISSUER": self.gateway_url,
            "GATEWAY_ROUTES": f"/orders={self.orders_url},/customers={self.customers_url}",
            "GATEWAY_AUDIENCES": f"/orders={orders_audiences},/customers={CUSTOMERS_AUDIENCE}",
            "GATEWAY_LOGIN_NOTE": LOGIN_NOTE,
        }
        if self.exchanging and self.clients_file is not None:
            env["GATEWAY_CLIENTS_FILE"] = str(self.clients_file)
        if trusted_proxies:
            env["GATEWAY_TRUSTED_PROXIES"] = ",".join(trusted_proxies)
        if self.keys_dir is not None:
            env["GATEWAY_KEYS_DIR"] = str(self.keys_dir)
        if self.users_file is not None:
            env["GATEWAY_USERS_FILE"] = str(self.users_file)
        if self.token_ttl is not None:
            env["GATEWAY_TOKEN_TTL"] = str(self.token_ttl)
        if self.body_timeout is not None:
            env["GATEWAY_BODY_TIMEOUT"] = str(self.body_timeout)
        return env

    def service_env(self, audience: str) -> dict[str, str]:
        env = {
            "TOKEN_MIDDLEWARE_ISSUER": self.gateway_url,
            "TOKEN_MIDDLEWARE_AUDIENCE": audience,
            "TOKEN_MIDDLEWARE_JWKS_MIN_REFRESH_SECONDS": str(self.jwks_min_refresh_seconds),
        }
        if audience == ORDERS_AUDIENCE:
            env["CUSTOMERS_URL"] = self.customers_url
            if self.exchanging:  # the token endpoint comes from discovery at the edge
                env["TOKEN_MIDDLEWARE_FORWARD_TO"] = f"{self.customers_hostport}={CUSTOMERS_AUDIENCE}"
                env["TOKEN_MIDDLEWARE_CLIENT_ID"] = ORDERS_CLIENT_ID
                env["TOKEN_MIDDLEWARE_CLIENT_SECRET"] = self.orders_secret or ""
            else:
                env["TOKEN_MIDDLEWARE_FORWARD_TO"] = self.customers_hostport
        return env

    @property
    def exchanging(self) -> bool:
        """True in exchange mode; :class:`DemoError` for an unknown mode."""
        if self.token_mode not in TOKEN_MODES:
            raise DemoError(f"unknown token mode {self.token_mode!r}; choose one of {', '.join(TOKEN_MODES)}")
        return self.token_mode == "exchange"

    def prepare_exchange(self, directory: Path) -> None:
        """Exchange mode: a fresh random secret for the orders service and the gateway's clients
        file (its hash only, ``0600``) in ``directory``, unless both were given."""
        if not self.exchanging:
            return
        if (self.clients_file is None) != (self.orders_secret is None):
            raise DemoError("give both clients_file and orders_secret, or neither (both are generated)")
        if self.clients_file is not None:
            return
        self.orders_secret = secrets.token_urlsafe(32)
        clients = {ORDERS_CLIENT_ID: {
            "secret_hash": generate_password_hash(self.orders_secret),
            "audience": ORDERS_AUDIENCE,
            "may_exchange_for": ORDERS_MAY_EXCHANGE_FOR,
        }}
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "clients.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(clients, out, indent=2)
        self.clients_file = path


@dataclass
class DemoStack:
    """The demo, running; :meth:`stop` stops every process (idempotent)."""

    config: DemoConfig
    processes: list[ManagedProcess]
    log_dir: Path
    #: ``nginx`` or ``python``: what listens on the first port.
    edge: str = "python"

    @property
    def gateway_url(self) -> str:
        """The edge (first port): where clients connect; the issuer URL."""
        return self.config.gateway_url

    @property
    def backend_url(self) -> str:
        """The Python gateway's own port: behind nginx, where ``/_auth`` answers; else the edge."""
        if self.edge == "nginx" and self.config.backend_port is not None:
            return f"http://{url_host(self.config.backend_host)}:{self.config.backend_port}"
        return self.gateway_url

    @property
    def orders_url(self) -> str:
        return self.config.orders_url

    @property
    def customers_url(self) -> str:
        return self.config.customers_url

    @classmethod
    def start(cls, config: DemoConfig | None = None) -> DemoStack:
        """Check the ports, start gateway, edge, customers and orders; wait until each answers."""
        config = config or DemoConfig()
        edge = config.resolved_edge()
        busy = [p for p in config.ports if not port_is_free(config.host, p)]
        if busy:
            raise DemoError(
                f"port(s) {', '.join(map(str, busy))} on {config.host} are in use; "
                "stop what listens there or choose others with --ports GATEWAY,ORDERS,CUSTOMERS"
            )
        if edge == "nginx" and config.backend_port is None:
            config.backend_port = free_port(config.backend_host)
        log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="token-middleware-demo-"))
        config.prepare_exchange(log_dir)
        stack = cls(config=config, processes=[], log_dir=log_dir, edge=edge)
        c = config
        trusted: tuple[str, ...] = ()
        try:
            if edge == "nginx":
                assert c.backend_port is not None
                host, port, trusted = c.backend_host, c.backend_port, (c.backend_host,)
            else:
                host, port = c.host, c.ports.gateway
            gateway = start_process(
                "gateway",
                gunicorn_argv("demo_gateway.wsgi:app", host, port, workers=c.gateway_workers,
                              worker_class=c.gateway_worker_class, threads=c.gateway_threads,
                              keepalive=c.head_timeout),
                env=base_env(c.gateway_env(trusted_proxies=trusted)), log_dir=log_dir,
            )
            stack.processes.append(gateway)
            # The gateway first: it serves the keys, and a service that starts before it answers
            # 503 until its first key fetch succeeds. Then nginx, through which the services
            # fetch them; then the two services side by side.
            wait_until_answers(f"http://{url_host(host)}:{port}/.well-known/jwks.json",
                               timeout=c.ready_timeout, process=gateway)
            if edge == "nginx":
                stack.processes.append(start_nginx(c, port=c.ports.gateway, prefix=log_dir / "nginx"))
            started = []
            for name, target, service_port, audience, ready_path in (
                ("customers", "demo_django.wsgi:application", c.ports.customers, CUSTOMERS_AUDIENCE,
                 "/customers/whoami"),
                ("orders", "demo_flask.wsgi:app", c.ports.orders, ORDERS_AUDIENCE, "/orders/whoami"),
            ):
                argv = gunicorn_argv(target, c.host, service_port, workers=c.service_workers,
                                     worker_class=c.worker_class)
                process = start_process(name, argv, env=base_env(c.service_env(audience)), log_dir=log_dir)
                stack.processes.append(process)
                started.append((process, f"http://{url_host(c.host)}:{service_port}{ready_path}"))
            for process, ready_url in started:
                wait_until_answers(ready_url, timeout=c.ready_timeout, process=process)
        except BaseException:
            stack.stop()
            raise
        return stack

    def describe(self) -> list[str]:
        """Lines for the demo to print: what listens where, what guards it from slow clients, and
        how the orders service calls the customers service."""
        if self.config.exchanging:
            mode = ["  tokens     exchange: each hop gets its own token (orders exchanges at",
                    f"             {self.gateway_url}/oauth2/token for customers-service, RFC 8693)"]
        else:
            mode = ["  tokens     forward: one token names both services and travels as it is"]
        return [*self._edge_lines(), *mode]

    def _edge_lines(self) -> list[str]:
        c = self.config
        if self.edge == "nginx":
            template = NGINX_TEMPLATE.relative_to(SOURCE_ROOT)
            return [
                f"  edge       {self.gateway_url}   nginx ({template}): clients connect here",
                f"  gateway    {self.backend_url}   (demo_gateway.wsgi:app) behind nginx: authenticates,",
                "             mints and answers nginx's auth_request; trusts nginx's X-Forwarded-For",
            ]
        why = "as asked (--edge python)" if c.edge == "python" else (
            "nginx is not installed (apt-get install nginx-light for the nginx edge)")
        lines = [
            f"  edge       {self.gateway_url}   the Python gateway (demo_gateway.wsgi:app) forwards by itself:",
            f"             {why}",
        ]
        if SLOW_HEADS_DROPPED and c.gateway_worker_class == "gevent":
            lines += [f"             request heads must arrive within {c.head_timeout} s; bodies are read whole",
                      "             (1 MiB at most) before a service is called"]
        else:
            lines += [f"  warning    gunicorn's {c.gateway_worker_class} worker never drops a slow request head:",
                      "             each slow client holds a gateway thread (install gevent, or nginx)"]
        return lines

    def dead(self) -> list[ManagedProcess]:
        return [p for p in self.processes if not p.running()]

    def stop(self) -> None:
        # SIGTERM to all first so they shut down in parallel, then wait for each.
        for process in self.processes:
            if process.running():
                process.popen.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            process.stop()


def start_nginx(
    config: DemoConfig, *, port: int, prefix: Path | None = None, ready_timeout: float = 15.0
) -> ManagedProcess:
    """nginx on ``config.host:port`` in front of ``config``'s gateway and services.

    The gateway upstream is ``config.backend_port`` when set (the Python gateway behind the
    edge), else ``config.ports.gateway``.
    """
    h = url_host(config.host)
    backend = (
        f"{url_host(config.backend_host)}:{config.backend_port}"
        if config.backend_port is not None else f"{h}:{config.ports.gateway}"
    )
    return run_nginx(
        host=config.host, port=port, gateway=backend, orders=f"{h}:{config.ports.orders}",
        customers=f"{h}:{config.ports.customers}", prefix=prefix, ready_timeout=ready_timeout,
    )
