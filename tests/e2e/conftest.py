"""End-to-end fixtures: one demo stack per session (gateway, orders, customers under real gunicorn,
sync workers, free loopback ports), optionally nginx in front of it, and always stopped.

``front`` is parametrized over the Python gateway and nginx (``auth_request``), so every flow test
runs against both and the nginx mode must give the same results. Without Debian's nginx the
nginx half is skipped with a reason.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from demo_gateway.supervisor import (
    DemoConfig,
    DemoError,
    DemoPorts,
    DemoStack,
    ManagedProcess,
    free_port,
    nginx_binary,
    start_nginx,
)

USERS = {
    "alice": ("alice-password", ["customers:read", "orders:read"]),
    "bob": ("bob-password", ["customers:read", "orders:read", "orders:write"]),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-keys")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[DemoStack]:
    config = DemoConfig(
        ports=DemoPorts.free(),
        keys_dir=keys_dir,
        log_dir=tmp_path_factory.mktemp("service-logs"),
        jwks_min_refresh_seconds=1,
        gateway_workers=2,
        service_workers=2,
        worker_class="sync",
    )
    started = DemoStack.start(config)
    try:
        yield started
    finally:
        started.stop()
    dead = [p.name for p in started.processes if p.popen.returncode not in (0, -15)]
    assert not dead, f"services exited badly: {dead}"


@pytest.fixture(scope="session")
def nginx(stack: DemoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (/usr/sbin/nginx); `./run test` installs nginx-light")
    port = free_port(stack.config.host)
    try:
        process: ManagedProcess = start_nginx(
            stack.config, port=port, prefix=tmp_path_factory.mktemp("nginx")
        )
    except DemoError as exc:
        pytest.fail(str(exc))
    try:
        yield f"http://{stack.config.host}:{port}"
    finally:
        process.stop()


@dataclass(frozen=True)
class Front:
    """The edge a client talks to: the Python gateway or nginx with auth_request."""

    name: str
    url: str
    stack: DemoStack


@pytest.fixture(params=["gateway", "nginx"])
def front(request: pytest.FixtureRequest, stack: DemoStack) -> Front:
    if request.param == "nginx":
        return Front("nginx", request.getfixturevalue("nginx"), stack)
    return Front("gateway", stack.gateway_url, stack)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxies or .netrc between the tests and loopback
        yield session


@pytest.fixture(scope="session")
def users() -> dict[str, tuple[str, list[str]]]:
    """The demo users: ``name -> (password, sorted scopes)``."""
    return USERS


@pytest.fixture(scope="session")
def login() -> Any:
    """``login(session, base_url, user)``: log in through the login form."""
    return login_with_form


@pytest.fixture(scope="session")
def mint_at_gateway() -> Any:
    """``mint_at_gateway(stack, user, path)``: a token from the gateway's ``/_auth`` endpoint."""
    return gateway_token


@pytest.fixture(scope="session")
def decode_header() -> Any:
    """``decode_header(raw)``: the JOSE header of a token, unverified."""
    return jwt_header


def hidden_inputs(html: str) -> dict[str, str]:
    """``name -> value`` of the hidden inputs of a form (the CSRF token among them)."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", html, flags=re.I):
        if not re.search(r"type\s*=\s*[\"']?hidden", tag, flags=re.I):
            continue
        name = re.search(r"name\s*=\s*[\"']([^\"']*)", tag, flags=re.I)
        value = re.search(r"value\s*=\s*[\"']([^\"']*)", tag, flags=re.I)
        if name:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


def login_with_form(session: requests.Session, base_url: str, user: str) -> requests.Response:
    """Log in through the gateway's login page (GET the form, POST it with its CSRF field)."""
    page = session.get(f"{base_url}/login", timeout=10)
    assert page.status_code == 200, page.text[:300]
    form = hidden_inputs(page.text)
    form.update(username=user, password=USERS[user][0])
    return session.post(f"{base_url}/login", data=form, timeout=10, allow_redirects=False)


def jwt_header(raw: str) -> dict[str, Any]:
    segment = raw.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return header


def gateway_token(stack: DemoStack, user: str, path: str = "/orders/whoami") -> str:
    """A token minted by the gateway's auth_request endpoint, as nginx would get it."""
    response = requests.get(
        f"{stack.gateway_url}/_auth",
        auth=(user, USERS[user][0]),
        headers={"X-Original-URI": path, "X-Original-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    token = response.headers["X-Access-Token"]
    return token
