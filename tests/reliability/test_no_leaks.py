"""No leaks, end to end: one full run of the stack under gunicorn at DEBUG log level.

The run (once per module) starts the gateway, orders, customers and the stream app with every
logger at DEBUG (``--log-level debug`` and a ``--log-config-json``), plus two more orders services
whose downstream is a host outside ``FORWARD_TO``, directly or through a redirect. It drives every
flow (Basic, login form and cookie, chained calls, streams, refused tokens, wrong passwords,
spoofed identity headers), then stops everything and reads every process's output.

- no token minted or refused during the run, nor its signature segment, nor a password or Basic
  credential or session cookie, appears in any log;
- the hosts outside ``FORWARD_TO`` never receive an ``Authorization`` header, also not across a
  redirect from an allowed host (which did receive the token);
- the gateway forwards only its own bearer token, never a client's ``Authorization`` or identity
  headers (a recording upstream under a gateway route checks).

One gateway worker: its token cache then hands out exactly the tokens that ``/_auth`` returns
afterwards, so every token that was forwarded is known to the grep.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_stack import (
    HOST,
    Received,
    Recorder,
    Stack,
    WorkerModel,
    debug_log_config,
    gateway_token,
    redirect_responder,
    service_environment,
    start_service,
    start_stack,
    user_passwords,
    warm_up,
    write_users_file,
)

from demo_gateway.supervisor import ORDERS_AUDIENCE, free_port, wait_until_answers
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = WorkerModel("debug-run", "gthread", workers=1, threads=4)
ROUTE_PREFIXES = ("/orders", "/customers", "/stream", "/echo")
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
SPOOFED = {
    "X-User": "user-001",
    "X-Forwarded-User": "user-001",
    "X-Remote-User": "user-001",
    "Remote-User": "user-001",
    "X-Auth-Request-User": "user-001",
    "X-Access-Token": "spoofed",
}


@dataclass
class Run:
    stack: Stack
    logs: dict[str, str]
    tokens: set[str] = field(default_factory=set)
    other_secrets: set[str] = field(default_factory=set)
    echo: list[Received] = field(default_factory=list)
    allowed_redirector: list[Received] = field(default_factory=list)
    trap_direct: list[Received] = field(default_factory=list)
    trap_redirected: list[Received] = field(default_factory=list)
    chain_direct: dict[str, Any] = field(default_factory=dict)
    chain_redirected: dict[str, Any] = field(default_factory=dict)
    client_bearer: str = ""
    users: list[str] = field(default_factory=list)
    jwks_path: Path | None = None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("leaks")
    passwords = user_passwords(6)
    users = sorted(passwords)
    users_file = write_users_file(tmp / "users.json", passwords)
    log_dir = tmp / "logs"
    log_config = debug_log_config(tmp / "logging.json")
    with Recorder() as echo, Recorder() as trap_direct, Recorder() as trap_redirected:
        redirector = Recorder(redirect_responder(f"{trap_redirected.url}/customers/whoami"))
        with redirector:
            stack = start_stack(
                model=MODEL, users_file=users_file, keys_dir=tmp / "keys", log_dir=log_dir,
                extra_routes={"/echo": (echo.url, "echo-service")}, log_config=log_config, debug=True,
            )
            extra_orders = []
            try:
                # Two more orders services: downstream outside FORWARD_TO, directly or by redirect.
                customers_hostport = stack.customers_url.removeprefix("http://")
                for name, downstream, forward_to in (
                    ("orders-untrusted-downstream", trap_direct.url, customers_hostport),
                    ("orders-redirected-downstream", redirector.url,
                     f"{customers_hostport},{redirector.hostport}"),
                ):
                    port = free_port(HOST)
                    env = {**service_environment(stack.gateway_url, ORDERS_AUDIENCE),
                           "TOKEN_MIDDLEWARE_FORWARD_TO": forward_to, "CUSTOMERS_URL": downstream}
                    process = start_service(name, "demo_flask.wsgi:app", port, env, model=MODEL,
                                            log_dir=log_dir, log_config=log_config, debug=True)
                    stack.processes.append(process)
                    extra_orders.append(f"http://{HOST}:{port}")
                    wait_until_answers(f"http://{HOST}:{port}/orders/whoami", timeout=60, process=process)
                warm_up(stack, users[0], passwords[users[0]])
                result = Run(stack=stack, logs={}, users=users)
                drive(result, stack, passwords, extra_orders)
            finally:
                stack.stop()
            # Everything every process wrote (stdout and stderr both go to <name>.log).
            result.logs = {p.stem: p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log"))}
            result.echo = echo.snapshot()
            result.allowed_redirector = redirector.snapshot()
            result.trap_direct = trap_direct.snapshot()
            result.trap_redirected = trap_redirected.snapshot()
            for recorder in (result.echo, result.allowed_redirector):
                for received in recorder:
                    value = received.header("Authorization") or ""
                    if value.startswith("Bearer "):
                        result.tokens.add(value[7:])
    yield result


def drive(result: Run, stack: Stack, passwords: dict[str, str], extra_orders: list[str]) -> None:
    """Every flow once or more, recording every secret that goes over the wire."""
    gw = stack.gateway_url
    http = requests.Session()
    http.trust_env = False
    forger = TokenIssuer(gw, SigningKey.generate("ES256"), ttl=300)
    for user in result.users:
        pw = passwords[user]
        result.other_secrets |= {pw, b64(f"{user}:{pw}")}
        for path in ("/orders/chain", "/orders/whoami", "/orders", "/customers/whoami",
                     f"/customers/{user}", "/stream/chunks?n=3", "/stream/fanout?n=3"):
            r = http.get(f"{gw}{path}", auth=(user, pw), headers=SPOOFED, timeout=30)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert http.post(f"{gw}/orders", json={"item": "tea", "quantity": 1}, auth=(user, pw),
                         timeout=30).status_code == 403
        # A client-sent bearer token at the gateway: refused there, never forwarded, never logged.
        client_bearer = forger.mint(sub=user, audience=["echo-service"], scopes=["orders:write"])
        result.other_secrets.add(client_bearer)
        result.client_bearer = client_bearer
        r = http.get(f"{gw}/echo/x", auth=(user, pw),
                     headers={**SPOOFED, "X-Forwarded-For": "203.0.113.9"}, timeout=30)
        assert r.status_code == 200
        r = http.get(f"{gw}/echo/x", headers={"Authorization": f"Bearer {client_bearer}"}, timeout=30)
        assert r.status_code == 401
    # Wrong passwords (logged as failures, never with the password); fewer than the limiter's 5.
    for user in result.users[:3]:
        wrong = f"wrong-{user}-password"
        result.other_secrets |= {wrong, b64(f"{user}:{wrong}")}
        assert http.get(f"{gw}/orders/whoami", auth=(user, wrong), timeout=30).status_code == 401

    # The login form and the session cookie.
    with requests.Session() as browser:
        browser.trust_env = False
        page = browser.get(f"{gw}/login", timeout=30).text
        csrf = re.search(r'name="csrf_token" value="([^"]*)"', page)
        assert csrf
        user = result.users[1]
        r = browser.post(f"{gw}/login", data={"csrf_token": csrf.group(1), "username": user,
                                              "password": passwords[user]}, allow_redirects=False, timeout=30)
        assert r.status_code == 303
        result.other_secrets |= {c.value for c in browser.cookies if c.value and len(c.value) >= 16}
        assert browser.get(f"{gw}/orders/chain", timeout=30).json()["customers"]["sub"] == user

    # Tokens straight at the services: valid ones, and refused ones of every kind.
    user = result.users[2]
    token = gateway_token(gw, user, passwords[user], "/orders/chain")
    header, payload, signature = token.split(".")
    tampered_signature = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    refused = [
        forger.mint(sub=user, audience=[ORDERS_AUDIENCE, "customers-service"]),
        forger.mint(sub=user, audience=[ORDERS_AUDIENCE], iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        f"{header}.{payload}.{tampered_signature}",
        f"{header}.{payload[:-2]}xx.{signature}",
        gateway_token(gw, user, passwords[user], "/stream/chunks"),  # wrong audience for orders
    ]
    result.other_secrets |= set(refused)
    for bad in refused:
        for url in (f"{stack.orders_url}/orders/whoami", f"{stack.customers_url}/customers/whoami"):
            status = http.get(url, headers={"Authorization": f"Bearer {bad}"}, timeout=30).status_code
            assert status == 401, (url, status)

    # Downstream outside FORWARD_TO: directly, and through a redirect from an allowed host.
    untrusted, redirected = extra_orders
    r = http.get(f"{untrusted}/orders/chain", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    result.chain_direct = r.json()
    r = http.get(f"{redirected}/orders/chain", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    result.chain_redirected = r.json()

    # Every token the (single-worker) gateway forwarded: its cache hands out the same ones now.
    for user in result.users:
        for prefix in ROUTE_PREFIXES:
            result.tokens.add(gateway_token(gw, user, passwords[user], f"{prefix}/x"))
    result.tokens.add(token)
    jwks = http.get(f"{gw}/.well-known/jwks.json", timeout=30).text
    result.jwks_path = stack.log_dir / "jwks.json"
    result.jwks_path.write_text(jwks)
    http.close()


def secret_needles(result: Run) -> dict[str, str]:
    """``needle -> what it is``: raw tokens, their signature segments, other secrets."""
    needles: dict[str, str] = {}
    for token in result.tokens | {s for s in result.other_secrets if s.count(".") == 2}:
        needles[token] = "a raw token"
        needles[token.rsplit(".", 1)[1]] = "a token's signature segment"
    for secret in result.other_secrets:
        needles.setdefault(secret, "a password, Basic credential or cookie")
    return needles


def test_debug_logs_of_a_full_run_hold_no_token_bytes(run: Run, report: Any) -> None:
    needles = secret_needles(run)
    total = sum(len(text) for text in run.logs.values())
    lines = sum(text.count("\n") for text in run.logs.values())
    report(
        f"[reliability] debug-log leak scan: processes={len(run.logs)} log_lines={lines} log_bytes={total} "
        f"tokens={len(run.tokens)} needles={len(needles)} leaks_found=0 (asserted below)"
    )

    assert len(run.tokens) >= len(run.users) * len(ROUTE_PREFIXES)
    assert any(" DEBUG token_middleware." in text for text in run.logs.values()), "library DEBUG logs were off"
    for name, text in run.logs.items():
        assert " DEBUG " in text, f"{name} did not log at DEBUG: the scan would prove nothing"
        for needle, what in needles.items():
            assert needle not in text, f"{name}'s log contains {what}"
        assert not JWT_SHAPE.search(text), f"{name}'s log contains something shaped like a JWT"
        assert not re.search(r"Bearer\s+[A-Za-z0-9_-]{8,}", text), f"{name}'s log contains a bearer credential"
        assert not re.search(r"Basic\s+[A-Za-z0-9+/=]{8,}", text), f"{name}'s log contains a Basic credential"


def test_the_audit_log_was_written_and_is_in_the_scan(run: Run) -> None:
    # The scan above covers the token_middleware.audit lines only if they were written: the five
    # refused tokens sent straight at each service each left one, with a reason and no token.
    for name in ("orders", "customers"):
        lines = [line for line in run.logs[name].splitlines() if " INFO token_middleware.audit " in line]
        assert len(lines) >= 5, f"{name} wrote {len(lines)} audit lines"
        reasons = set(re.findall(r"reason=([a-z_]+)", "\n".join(lines)))
        assert {"unknown_key", "signature", "audience"} <= reasons, reasons


def test_token_never_reaches_a_host_outside_forward_to(run: Run) -> None:
    assert run.trap_direct, "the untrusted downstream was never called: the test would prove nothing"
    for received in run.trap_direct:
        assert "authorization" not in received.header_names()
    assert run.chain_direct["customers"]["authorization_present"] is False


def test_token_never_follows_a_cross_host_redirect(run: Run) -> None:
    # The allowed host did get the token (so the propagation works) ...
    assert run.allowed_redirector
    assert all((r.header("Authorization") or "").startswith("Bearer ") for r in run.allowed_redirector)
    # ... and the host it redirected to, on another port, did not.
    assert run.trap_redirected, "the redirect was not followed: the test would prove nothing"
    for received in run.trap_redirected:
        assert "authorization" not in received.header_names()
    assert run.chain_redirected["customers"]["authorization_present"] is False


def test_gateway_forwards_only_its_own_bearer_token(run: Run) -> None:
    assert run.jwks_path is not None
    validator = TokenValidator(
        Settings.from_mapping({"ISSUER": run.stack.gateway_url, "AUDIENCE": "echo-service",
                               "PUBLIC_KEYS": str(run.jwks_path)}),
        cache_size=0,
    )
    assert len(run.echo) == len(run.users), "every authenticated /echo call, and nothing else, is forwarded"
    subjects = []
    for received in run.echo:
        authorizations = [v for k, v in received.headers if k.lower() == "authorization"]
        assert len(authorizations) == 1
        token = authorizations[0].removeprefix("Bearer ")
        assert token != run.client_bearer
        access = validator.validate(token)
        subjects.append(access.subject)
        names = received.header_names()
        for spoofed in SPOOFED:
            assert spoofed.lower() not in names, f"{spoofed} was forwarded"
        assert received.header("X-Forwarded-For") == "127.0.0.1"
    assert sorted(subjects) == run.users
