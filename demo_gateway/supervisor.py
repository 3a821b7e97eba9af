"""Process management for the demo and the end-to-end tests: gunicorn, nginx, readiness, shutdown.

``token-middleware demo`` and ``tests/e2e`` both start the three demo services (gateway, orders,
customers) as real gunicorn processes of the *same* Python (``sys.executable -m gunicorn``), wait
until each answers HTTP, and always stop them (SIGTERM, bounded wait, SIGKILL).

What is trusted: only the arguments of these functions. The environment handed to a service is
built here from scratch for the ``TOKEN_MIDDLEWARE_*`` and ``GATEWAY_*`` names, so stray variables
in the caller's shell cannot change what the demo trusts. Everything listens on loopback by
default. Nothing here reads, logs or prints a token.

Example::

    stack = DemoStack.start(ports=DemoPorts.free())
    try:
        print(stack.gateway_url)
    finally:
        stack.stop()
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The root of the checkout (this file is ``demo_gateway/supervisor.py`` in it): it holds
#: ``token_middleware``, the ``demo_*`` packages (not installed: the services import them via
#: ``PYTHONPATH`` and their working directory, both this root) and ``deploy/``.
SOURCE_ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = SOURCE_ROOT / "deploy" / "nginx" / "nginx.conf.template"
NGINX_BINARY = "/usr/sbin/nginx"

ORDERS_AUDIENCE = "orders-service"
CUSTOMERS_AUDIENCE = "customers-service"

#: gunicorn worker class and threads of the demo gateway. The gateway spends most of a request
#: waiting on a service, so an event-loop worker serves it best: on 2 cores (docs/benchmarks.md,
#: figure d) a hop reached about 0.41x a direct call with gevent's pywsgi worker, 0.37x with
#: gunicorn's gevent worker and 0.25-0.28x with gthread (4 threads; 8 threads or 1 worker were no
#: better). Without gevent installed: gthread with 4 threads. The services keep ``worker_class``.
GATEWAY_WORKER_CLASS, GATEWAY_THREADS = (
    ("gevent_pywsgi", 1) if importlib.util.find_spec("gevent") is not None else ("gthread", 4)
)

#: Prefixes of variables that are never inherited from the caller's environment.
_OWNED_PREFIXES = ("TOKEN_MIDDLEWARE_", "GATEWAY_", "CUSTOMERS_URL")


class DemoError(RuntimeError):
    """A service could not be started or did not become ready; the message says which and why."""


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (as gunicorn and nginx bind it).

    ``SO_REUSEADDR`` as they use it: connections of a stopped server lingering in TIME_WAIT do
    not make the port busy, a listening socket does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that the OS says is free (there is a small race until someone binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass
class ManagedProcess:
    """One child process with its log file; :meth:`stop` is idempotent."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


def start_process(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None
) -> ManagedProcess:
    """Start ``argv`` with its stdout and stderr going to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd or SOURCE_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def gunicorn_argv(
    wsgi_target: str,
    host: str,
    port: int,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 1,
    timeout: int = 30,
) -> list[str]:
    """``python -m gunicorn`` with the same interpreter as the caller."""
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{url_host(host)}:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--timeout", str(timeout),
        "--graceful-timeout", "5",
        "--access-logfile", "-",
        "--chdir", str(SOURCE_ROOT),
    ]
    if threads > 1:
        argv += ["--threads", str(threads)]
    return [*argv, wsgi_target]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any demo-owned names, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWNED_PREFIXES)}
    python_path = [str(SOURCE_ROOT)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until_answers(
    url: str, *, timeout: float = 30.0, process: ManagedProcess | None = None
) -> int:
    """Poll ``url`` until it answers any HTTP status; return that status.

    Raises :class:`DemoError` after ``timeout`` seconds, or at once if ``process`` exits.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise DemoError(
                f"{process.name} exited with status {process.popen.returncode} before answering "
                f"{url}; its log ({process.log_path}) ends with:\n{process.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    name = process.name if process else url
    tail = f"; log ends with:\n{process.log_tail()}" if process else ""
    raise DemoError(f"{name} did not answer {url} within {timeout:g}s ({last_error}){tail}")


@dataclass(frozen=True)
class DemoPorts:
    gateway: int = 8000
    orders: int = 8001
    customers: int = 8002

    @classmethod
    def parse(cls, text: str) -> DemoPorts:
        """``"8000,8001,8002"`` (gateway, orders, customers)."""
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
    """Everything that differs between two runs of the demo stack."""

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

    @property
    def gateway_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.gateway}"

    @property
    def orders_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.orders}"

    @property
    def customers_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.ports.customers}"

    @property
    def customers_hostport(self) -> str:
        return f"{url_host(self.host)}:{self.ports.customers}"

    def gateway_env(self) -> dict[str, str]:
        env = {
            "GATEWAY_ISSUER": self.gateway_url,
            "GATEWAY_ROUTES": f"/orders={self.orders_url},/customers={self.customers_url}",
            "GATEWAY_AUDIENCES": (
                f"/orders={ORDERS_AUDIENCE} {CUSTOMERS_AUDIENCE},/customers={CUSTOMERS_AUDIENCE}"
            ),
        }
        if self.keys_dir is not None:
            env["GATEWAY_KEYS_DIR"] = str(self.keys_dir)
        if self.users_file is not None:
            env["GATEWAY_USERS_FILE"] = str(self.users_file)
        if self.token_ttl is not None:
            env["GATEWAY_TOKEN_TTL"] = str(self.token_ttl)
        return env

    def service_env(self, audience: str) -> dict[str, str]:
        env = {
            "TOKEN_MIDDLEWARE_ISSUER": self.gateway_url,
            "TOKEN_MIDDLEWARE_AUDIENCE": audience,
            "TOKEN_MIDDLEWARE_JWKS_MIN_REFRESH_SECONDS": str(self.jwks_min_refresh_seconds),
        }
        if audience == ORDERS_AUDIENCE:
            env["TOKEN_MIDDLEWARE_FORWARD_TO"] = self.customers_hostport
            env["CUSTOMERS_URL"] = self.customers_url
        return env


@dataclass
class DemoStack:
    """The three demo services, running; :meth:`stop` stops them all (idempotent)."""

    config: DemoConfig
    processes: list[ManagedProcess]
    log_dir: Path

    @property
    def gateway_url(self) -> str:
        return self.config.gateway_url

    @property
    def orders_url(self) -> str:
        return self.config.orders_url

    @property
    def customers_url(self) -> str:
        return self.config.customers_url

    @classmethod
    def start(cls, config: DemoConfig | None = None) -> DemoStack:
        """Check the ports, start gateway, customers and orders, and wait until each answers."""
        config = config or DemoConfig()
        busy = [p for p in config.ports if not port_is_free(config.host, p)]
        if busy:
            raise DemoError(
                f"port(s) {', '.join(map(str, busy))} on {config.host} are in use; "
                "stop what listens there or choose others with --ports GATEWAY,ORDERS,CUSTOMERS"
            )
        log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="token-middleware-demo-"))
        stack = cls(config=config, processes=[], log_dir=log_dir)
        c = config
        plan = [
            ("gateway", "demo_gateway.wsgi:app", c.ports.gateway, c.gateway_workers,
             c.gateway_env(), f"{c.gateway_url}/.well-known/jwks.json"),
            ("customers", "demo_django.wsgi:application", c.ports.customers, c.service_workers,
             c.service_env(CUSTOMERS_AUDIENCE), f"{c.customers_url}/customers/whoami"),
            ("orders", "demo_flask.wsgi:app", c.ports.orders, c.service_workers,
             c.service_env(ORDERS_AUDIENCE), f"{c.orders_url}/orders/whoami"),
        ]
        try:
            # The gateway first: it serves the keys, and a service that starts before it answers
            # 503 until its first key fetch succeeds. The two services then start side by side.
            for group in (plan[:1], plan[1:]):
                started = []
                for name, target, port, workers, env, ready_url in group:
                    worker_class, threads = (
                        (c.gateway_worker_class, c.gateway_threads) if name == "gateway" else (c.worker_class, 1)
                    )
                    argv = gunicorn_argv(
                        target, c.host, port, workers=workers, worker_class=worker_class, threads=threads
                    )
                    process = start_process(name, argv, env=base_env(env), log_dir=log_dir)
                    stack.processes.append(process)
                    started.append((process, ready_url))
                for process, ready_url in started:
                    wait_until_answers(ready_url, timeout=c.ready_timeout, process=process)
        except BaseException:
            stack.stop()
            raise
        return stack

    def dead(self) -> list[ManagedProcess]:
        return [p for p in self.processes if not p.running()]

    def stop(self) -> None:
        # SIGTERM to all first so they shut down in parallel, then wait for each.
        for process in self.processes:
            if process.running():
                process.popen.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            process.stop()


# --- nginx --------------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    """Debian's nginx, or the one on ``PATH``; ``None`` when there is none."""
    if os.access(NGINX_BINARY, os.X_OK):
        return NGINX_BINARY
    return shutil.which("nginx")


def nginx_globals() -> str:
    """The ``-g`` directives for the demo's nginx: in the foreground, and, when started by root,
    with its workers kept as root: as ``nobody`` (nginx's default) they could not reach the
    private (``0700``) prefix that holds the ``auth_request`` cache and the temp files."""
    return "daemon off; user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else "daemon off;"


def render_nginx_conf(
    *,
    prefix: Path,
    listen: str,
    gateway: str,
    orders: str,
    customers: str,
    template: Path = NGINX_TEMPLATE,
) -> str:
    """Fill ``deploy/nginx/nginx.conf.template``.

    ``listen`` is nginx's ``listen`` argument (``127.0.0.1:8080``); ``gateway``, ``orders`` and
    ``customers`` are ``host:port`` of the upstreams; ``prefix`` holds pid, logs and temp files.
    """
    text = template.read_text()
    values = {
        "PREFIX": str(prefix),
        "LISTEN": listen,
        "GATEWAY": gateway,
        "ORDERS": orders,
        "CUSTOMERS": customers,
    }
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise DemoError(f"{template} has a placeholder that render_nginx_conf does not fill")
    return text


def start_nginx(
    config: DemoConfig, *, port: int, prefix: Path | None = None, ready_timeout: float = 15.0
) -> ManagedProcess:
    """Run nginx unprivileged in front of the demo services on ``config.host:port``.

    pid, logs and temp files go under ``prefix``; nginx runs in the foreground
    (``-g 'daemon off;'``) so :meth:`ManagedProcess.stop` stops it.
    """
    binary = nginx_binary()
    if binary is None:
        raise DemoError("nginx is not installed (Debian: apt-get install nginx-light)")
    if not port_is_free(config.host, port):
        raise DemoError(f"port {port} on {config.host} is in use; choose another for nginx")
    prefix = prefix or Path(tempfile.mkdtemp(prefix="token-middleware-nginx-"))
    prefix.mkdir(parents=True, exist_ok=True)
    h = url_host(config.host)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            prefix=prefix,
            listen=f"{h}:{port}",
            gateway=f"{h}:{config.ports.gateway}",
            orders=f"{h}:{config.ports.orders}",
            customers=f"{h}:{config.ports.customers}",
        )
    )
    argv = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"),
            "-g", nginx_globals()]
    check = subprocess.run(
        [binary, "-t", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
        capture_output=True, text=True, check=False,
    )
    if check.returncode != 0:
        raise DemoError(f"nginx rejected {conf}:\n{check.stderr.strip()}")
    process = start_process("nginx", argv, env=dict(os.environ), log_dir=prefix, cwd=prefix)
    try:
        wait_until_answers(
            f"http://{h}:{port}/.well-known/jwks.json", timeout=ready_timeout, process=process
        )
    except BaseException:
        process.stop()
        raise
    return process
