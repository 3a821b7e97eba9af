"""Shared machinery of the reliability suite and of the soak job (``python -m tests.reliability.soak``).

- :func:`write_users_file`: many distinct users with cheap werkzeug hashes;
- :class:`Recorder`: a loopback HTTP server that records every request it receives (it is a test
  server: recording the ``Authorization`` header is its job) and can echo, redirect or stall;
- :func:`start_stack`: the gateway, the orders (Flask) and customers (Django) services and the
  streaming test app (``reliability_stream_app``) under real gunicorn with a chosen worker class,
  on free loopback ports, always stoppable; built on :mod:`demo_gateway.supervisor`;
- :func:`run_load`: many requests at a fixed concurrency, each checked by a function that says
  whether the answer showed the caller's own identity, counted as crossovers, 5xx and errors.

Nothing here prints or logs a token.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.security import generate_password_hash

from demo_gateway.supervisor import (
    CUSTOMERS_AUDIENCE,
    ORDERS_AUDIENCE,
    ORDERS_CLIENT_ID,
    TOKEN_MODES,
    DemoConfig,
    ManagedProcess,
    base_env,
    free_port,
    gunicorn_argv,
    start_process,
    wait_until_answers,
)

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
#: Cheap on purpose: the suite tests isolation, not password cost. Real users files use
#: werkzeug's default (scrypt or pbkdf2 with many rounds).
FAST_HASH = "pbkdf2:sha256:1000"
USER_SCOPES = ["customers:read", "orders:read"]
STREAM_AUDIENCE = "stream-service"

#: ``TOKEN_MIDDLEWARE_SOAK=1`` scales every load figure of the suite up (see soak.py).
SOAK = os.environ.get("TOKEN_MIDDLEWARE_SOAK", "") not in ("", "0")


#: Where the suite keeps the figure lines for its terminal summary (``config.stash[FIGURES]``).
FIGURES = pytest.StashKey[list[str]]()


def scaled(ci: int, soak: int) -> int:
    """``ci`` in the normal suite, ``soak`` when ``TOKEN_MIDDLEWARE_SOAK=1``."""
    return soak if SOAK else ci


# --- users -------------------------------------------------------------------------------------


def user_passwords(count: int) -> dict[str, str]:
    """``user-000 … user-<count-1>`` with distinct passwords."""
    return {f"user-{i:03d}": f"pw-{i:03d}-{'x' * (i % 7)}" for i in range(count)}


def write_users_file(path: Path, passwords: Mapping[str, str], scopes: Sequence[str] = USER_SCOPES) -> Path:
    """A ``GATEWAY_USERS_FILE`` for ``passwords`` (werkzeug hashes, :data:`FAST_HASH`)."""
    users = {
        name: {"password_hash": generate_password_hash(pw, method=FAST_HASH), "scopes": list(scopes)}
        for name, pw in passwords.items()
    }
    path.write_text(json.dumps(users), encoding="utf-8")
    return path


# --- a recording HTTP server ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as a :class:`Recorder` saw it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


#: ``(received) -> (status, headers, body)``; ``None`` means: never answer (a blackhole).
Responder = Callable[[Received], "tuple[int, list[tuple[str, str]], bytes] | None"]


def echo_responder(received: Received) -> tuple[int, list[tuple[str, str]], bytes]:
    """200 with JSON naming the method, target and header names (not values) it got."""
    body = json.dumps(
        {
            "service": "recorder",
            "sub": None,
            "method": received.method,
            "target": received.target,
            "authorization_present": received.header("Authorization") is not None,
            "header_names": sorted(received.header_names()),
        }
    ).encode()
    return 200, [("Content-Type", "application/json"), ("X-Recorder", "1")], body


def redirect_responder(location: str) -> Responder:
    """302 to ``location`` for every request."""

    def respond(received: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        return 302, [("Location", location)], b""

    return respond


class Recorder:
    """A threaded HTTP/1.1 server on a free loopback port that records every request.

    ``responder`` decides the answer; any method is accepted. Use as a context manager.
    """

    def __init__(self, responder: Responder = echo_responder, host: str = HOST) -> None:
        self.responder = responder
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and
                # delayed ACKs add ~40 ms to every keep-alive exchange.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

            def _handle(self) -> None:
                self._read_body()
                received = Received(self.command, self.path, tuple(self.headers.items()))
                with recorder._lock:
                    recorder.received.append(received)
                answer = recorder.responder(received)
                if answer is None:
                    recorder._release.wait(60)
                    self.close_connection = True
                    return
                status, headers, body = answer
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _read_body(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        self.rfile.read(size + 2)
                        if size == 0:
                            break
                    return
                length = self.headers.get("Content-Length")
                if length and length.isdigit():
                    self.rfile.read(int(length))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port that accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen(64)
        yield sock.getsockname()[1]


# --- the stack under gunicorn ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerModel:
    """How gunicorn runs each service."""

    name: str
    worker_class: str
    workers: int
    threads: int = 1


WORKER_MODELS = (
    WorkerModel("sync", "sync", workers=3),
    WorkerModel("gthread", "gthread", workers=2, threads=8),
    WorkerModel("gevent", "gevent", workers=2),
)


@dataclass
class Stack:
    """Gateway, orders, customers and the stream app, running; :meth:`stop` is idempotent."""

    gateway_url: str
    orders_url: str
    customers_url: str
    stream_url: str
    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            if process.running():
                process.popen.terminate()
        for process in self.processes:
            process.stop()

    def dead(self) -> list[str]:
        return [p.name for p in self.processes if not p.running()]

    def logs(self) -> dict[str, str]:
        return {p.name: p.log_path.read_text(errors="replace") for p in self.processes}


def service_environment(gateway_url: str, audience: str) -> dict[str, str]:
    """``TOKEN_MIDDLEWARE_*`` for a service that trusts the gateway at ``gateway_url``."""
    return {
        "TOKEN_MIDDLEWARE_ISSUER": gateway_url,
        "TOKEN_MIDDLEWARE_AUDIENCE": audience,
        "TOKEN_MIDDLEWARE_JWKS_MIN_REFRESH_SECONDS": "2",
    }


def start_stack(
    *,
    model: WorkerModel,
    users_file: Path,
    keys_dir: Path,
    log_dir: Path,
    extra_routes: Mapping[str, tuple[str, str]] | None = None,
    orders_env: Mapping[str, str] | None = None,
    gateway_env: Mapping[str, str] | None = None,
    token_mode: str = "forward",
    gateway_model: WorkerModel | None = None,
    log_config: Path | None = None,
    debug: bool = False,
    ready_timeout: float = 60.0,
) -> Stack:
    """Start the four services with ``model`` workers on free loopback ports and wait for them.

    ``extra_routes`` adds gateway routes ``prefix -> (upstream URL, audiences)``. ``orders_env``
    and ``gateway_env`` are added last to those services' environments. ``log_config`` is passed
    to every gunicorn as ``--log-config-json`` (with ``--log-level debug`` when ``debug``).
    ``gateway_model``: how the gateway runs (default: ``model``).

    ``token_mode`` (:data:`~demo_gateway.supervisor.TOKEN_MODES`): ``forward``, one token naming
    orders and customers, forwarded as it is; ``exchange``, one audience per route, and orders
    exchanges its token at the gateway's ``POST /oauth2/token`` for ``customers-service`` alone,
    as the demo does (clients file and secret from ``DemoConfig.prepare_exchange``, in ``log_dir``).
    """
    if token_mode not in TOKEN_MODES:
        raise ValueError(f"unknown token mode {token_mode!r}; choose one of {', '.join(TOKEN_MODES)}")
    exchanging = token_mode == "exchange"
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port(HOST))
    gw, orders, customers, stream = sorted(ports)
    stack = Stack(
        gateway_url=f"http://{HOST}:{gw}",
        orders_url=f"http://{HOST}:{orders}",
        customers_url=f"http://{HOST}:{customers}",
        stream_url=f"http://{HOST}:{stream}",
        log_dir=log_dir,
    )
    orders_audiences = ORDERS_AUDIENCE if exchanging else f"{ORDERS_AUDIENCE} {CUSTOMERS_AUDIENCE}"
    routes = {
        "/orders": (stack.orders_url, orders_audiences),
        "/customers": (stack.customers_url, CUSTOMERS_AUDIENCE),
        "/stream": (stack.stream_url, STREAM_AUDIENCE),
        **(extra_routes or {}),
    }
    gateway_settings = {
        "GATEWAY_ISSUER": stack.gateway_url,
        "GATEWAY_ROUTES": ",".join(f"{p}={u}" for p, (u, _) in routes.items()),
        "GATEWAY_AUDIENCES": ",".join(f"{p}={a}" for p, (_, a) in routes.items()),
        "GATEWAY_USERS_FILE": str(users_file),
        "GATEWAY_KEYS_DIR": str(keys_dir),
        "GATEWAY_UPSTREAM_TIMEOUT": "15",
    }

    def service_env(audience: str) -> dict[str, str]:
        return service_environment(stack.gateway_url, audience)

    orders_service_env = {
        **service_env(ORDERS_AUDIENCE),
        "TOKEN_MIDDLEWARE_FORWARD_TO": f"{HOST}:{customers}",
        "CUSTOMERS_URL": stack.customers_url,
    }
    if exchanging:
        demo = DemoConfig(token_mode=token_mode)
        demo.prepare_exchange(log_dir)  # a fresh secret; clients.json (0600) holds only its hash
        assert demo.clients_file is not None and demo.orders_secret is not None
        gateway_settings["GATEWAY_CLIENTS_FILE"] = str(demo.clients_file)
        orders_service_env |= {
            "TOKEN_MIDDLEWARE_FORWARD_TO": f"{HOST}:{customers}={CUSTOMERS_AUDIENCE}",
            "TOKEN_MIDDLEWARE_CLIENT_ID": ORDERS_CLIENT_ID,
            "TOKEN_MIDDLEWARE_CLIENT_SECRET": demo.orders_secret,
        }
    gateway_settings |= gateway_env or {}
    orders_service_env |= orders_env or {}
    plan = [
        ("gateway", "demo_gateway.wsgi:app", gw, gateway_settings, "/.well-known/jwks.json", ()),
        ("customers", "demo_django.wsgi:application", customers, service_env(CUSTOMERS_AUDIENCE),
         "/customers/whoami", ()),
        ("orders", "demo_flask.wsgi:app", orders, orders_service_env, "/orders/whoami", ()),
        ("stream", "reliability_stream_app:app", stream, service_env(STREAM_AUDIENCE), "/stream/chunks",
         ("--pythonpath", str(HERE))),
    ]
    try:
        for name, target, port, env, path, extra in plan:
            process = start_service(
                name, target, port, env, model=(gateway_model or model) if name == "gateway" else model,
                log_dir=log_dir, log_config=log_config, debug=debug, options=extra,
            )
            stack.processes.append(process)
            if name == "gateway":
                # The services fetch their keys from the gateway as they start: start them only
                # once it answers, or their first requests get 503 (by design) until a refetch.
                wait_until_answers(f"http://{HOST}:{port}{path}", timeout=ready_timeout, process=process)
        for process, (_, _, port, _, path, _) in zip(stack.processes, plan):
            wait_until_answers(f"http://{HOST}:{port}{path}", timeout=ready_timeout, process=process)
    except BaseException:
        stack.stop()
        raise
    return stack


def start_service(
    name: str,
    target: str,
    port: int,
    env: Mapping[str, str],
    *,
    model: WorkerModel,
    log_dir: Path,
    log_config: Path | None = None,
    debug: bool = False,
    options: Sequence[str] = (),
) -> ManagedProcess:
    """One gunicorn process serving ``target`` on loopback ``port``; its output goes to
    ``log_dir/<name>.log``. Does not wait for it (see ``wait_until_answers``)."""
    argv = gunicorn_argv(
        target, HOST, port, workers=model.workers, worker_class=model.worker_class, threads=model.threads
    )
    extra: list[str] = list(options)
    if log_config is not None:
        extra += ["--log-config-json", str(log_config)]
    if debug:
        extra += ["--log-level", "debug"]
    argv = [*argv[:-1], *extra, argv[-1]]
    return start_process(name, argv, env=base_env(env), log_dir=log_dir)


def warm_up(stack: Stack, user: str, password: str, *, rounds: int = 20, timeout: float = 30.0) -> int:
    """Wait until every service answers authenticated requests (its workers have their keys).

    Each worker fetches the gateway's keys in the background as it boots; a load that starts
    before that is a cold start, not steady state. Returns how many 503s were seen meanwhile.
    """
    targets = [
        (f"{stack.orders_url}/orders/whoami", "/orders/whoami"),
        (f"{stack.customers_url}/customers/whoami", "/customers/whoami"),
        (f"{stack.stream_url}/stream/chunks?n=1", "/stream/chunks"),
    ]
    deadline = time.monotonic() + timeout
    unavailable = 0
    with requests.Session() as session:
        session.trust_env = False
        for url, path in targets:
            token = gateway_token(stack.gateway_url, user, password, path)
            ok = 0
            while ok < rounds:
                status = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
                if status == 200:
                    ok += 1
                    continue
                if status != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"warm-up of {url}: {status}")
                unavailable += 1
                time.sleep(0.2)
    return unavailable


def debug_log_config(path: Path) -> Path:
    """A gunicorn ``--log-config-json`` file: everything at DEBUG to stderr, with logger names."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"}
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"},
        },
        "root": {"level": "DEBUG", "handlers": ["stderr"]},
        "loggers": {
            "token_middleware": {"level": "DEBUG", "handlers": ["stderr"], "propagate": False},
            "gunicorn.error": {"level": "DEBUG", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of a load run: who, where, with which credentials, and what must come back."""

    user: str
    url: str
    auth: tuple[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


#: ``(call, response) -> True`` when the response shows exactly ``call.user``'s identity.
Check = Callable[[Call, requests.Response], bool]


@dataclass
class LoadResult:
    name: str
    requests: int = 0
    concurrency: int = 0
    crossovers: int = 0
    server_errors: int = 0
    other_failures: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        return (
            f"[reliability] {self.name}: requests={self.requests} concurrency={self.concurrency} "
            f"crossovers={self.crossovers} 5xx={self.server_errors} other_failures={self.other_failures} "
            f"seconds={self.seconds:.1f} rate={rate:.0f}/s"
        )


def run_load(name: str, calls: Sequence[Call], check: Check, *, concurrency: int, timeout: float = 30) -> LoadResult:
    """Send ``calls`` from ``concurrency`` threads (one ``requests.Session`` each) and count.

    A crossover is a 200 whose body shows anyone but the caller; a 5xx is counted separately;
    other failures (4xx, connection errors) are counted too and must also be zero.
    """
    result = LoadResult(name, requests=len(calls), concurrency=concurrency)
    lock = threading.Lock()
    shares = [calls[i::concurrency] for i in range(concurrency)]

    def worker(share: Sequence[Call]) -> None:
        with requests.Session() as session:
            session.trust_env = False
            for call in share:
                try:
                    response = session.get(call.url, auth=call.auth, headers=dict(call.headers), timeout=timeout)
                except requests.RequestException as exc:
                    with lock:
                        result.other_failures += 1
                        if len(result.examples) < 5:
                            result.examples.append(f"{call.user} {call.url}: {type(exc).__name__}")
                    continue
                with lock:
                    if response.status_code >= 500:
                        result.server_errors += 1
                        problem = f"{response.status_code}"
                    elif response.status_code != 200:
                        result.other_failures += 1
                        problem = f"{response.status_code}"
                    elif not check(call, response):
                        result.crossovers += 1
                        problem = "crossover"
                    else:
                        continue
                    if len(result.examples) < 5:
                        result.examples.append(f"{call.user} {call.url}: {problem} {response.text[:200]!r}")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker, share) for share in shares]:
            future.result()
    result.seconds = time.monotonic() - started
    return result


def gateway_token(gateway_url: str, user: str, password: str, path: str) -> str:
    """A token minted by the gateway's ``/_auth`` endpoint (as nginx gets it) for ``path``."""
    response = requests.get(
        f"{gateway_url}/_auth",
        auth=(user, password),
        headers={"X-Original-URI": path, "X-Original-Method": "GET"},
        timeout=10,
    )
    response.raise_for_status()
    return response.headers["X-Access-Token"]


# --- the checks --------------------------------------------------------------------------------


def chain_shows_caller(call: Call, response: requests.Response) -> bool:
    body = response.json()
    return bool(body["orders"]["sub"] == body["customers"]["sub"] == call.user)


def stream_shows_caller(call: Call, response: requests.Response) -> bool:
    lines = response.text.splitlines()
    return bool(lines) and all(line.split(" ", 1)[1] == call.user for line in lines)


def fanout_shows_caller(call: Call, response: requests.Response) -> bool:
    body = response.json()
    return bool(body["tasks"]) and body["sub"] == call.user and all(t == call.user for t in body["tasks"])
