"""End-to-end fixtures: the demo stack as ``./run demo`` starts it (gateway, orders, customers under
real gunicorn, sync service workers, free loopback ports), once per edge, always stopped.

- ``stack``: the demo's default edge, nginx whenever the machine has it (the Python gateway then
  sits behind it on a port of its own), else the Python gateway forwarding by itself.
- ``python_stack``: the Python gateway as the edge (the demo's fallback without nginx); the same
  stack as ``stack`` when nginx is missing.
- ``front`` is parametrized over both edges, so every flow test runs against each and both must
  give the same results. Without Debian's nginx the nginx half is skipped with a reason.

The users file has the demo's users and passwords with cheap hashes (the demo's own cost
0.44 s per check, which a burst of wrong passwords would pay many times over).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.security import generate_password_hash

from _e2e_support import BODY_TIMEOUT, EDGE_NAMES, FAST_HASH, GATEWAY_WORKERS, NO_NGINX, USERS, Front

from demo_gateway.supervisor import DemoConfig, DemoPorts, DemoStack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    path.write_text(json.dumps({
        name: {"password_hash": generate_password_hash(password, method=FAST_HASH), "scopes": scopes}
        for name, (password, scopes) in USERS.items()
    }))
    return path


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-keys")


def start_stack(edge: str, keys: Path, users: Path, logs: Path) -> DemoStack:
    return DemoStack.start(DemoConfig(
        ports=DemoPorts.free(),
        keys_dir=keys,
        users_file=users,
        log_dir=logs,
        jwks_min_refresh_seconds=1,
        gateway_workers=GATEWAY_WORKERS,
        service_workers=2,
        worker_class="sync",
        edge=edge,
        body_timeout=BODY_TIMEOUT,
    ))


def stopped_cleanly(stack: DemoStack) -> None:
    stack.stop()
    dead = [p.name for p in stack.processes if p.popen.returncode not in (0, -15)]
    assert not dead, f"services exited badly: {dead}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, users_file: Path) -> Iterator[DemoStack]:
    started = start_stack("auto", keys_dir, users_file, tmp_path_factory.mktemp("service-logs"))
    try:
        yield started
    finally:
        stopped_cleanly(started)


@pytest.fixture(scope="session")
def python_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 users_file: Path) -> Iterator[DemoStack]:
    default: DemoStack = request.getfixturevalue("stack")
    if default.edge == "python":
        yield default
        return
    started = start_stack("python", tmp_path_factory.mktemp("python-edge-keys"), users_file,
                          tmp_path_factory.mktemp("python-edge-logs"))
    try:
        yield started
    finally:
        stopped_cleanly(started)


@pytest.fixture(scope="session")
def nginx_stack(stack: DemoStack) -> DemoStack:
    if stack.edge != "nginx":
        pytest.skip(NO_NGINX)
    return stack


@pytest.fixture(scope="session")
def nginx(nginx_stack: DemoStack) -> str:
    """The URL of the demo's nginx edge."""
    return nginx_stack.gateway_url


@pytest.fixture(params=EDGE_NAMES)
def front(request: pytest.FixtureRequest) -> Front:
    fixture = "nginx_stack" if request.param == "nginx" else "python_stack"
    edge_stack: DemoStack = request.getfixturevalue(fixture)
    return Front(request.param, edge_stack.gateway_url, edge_stack)


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


def login_with_form(session: requests.Session, base_url: str, user: str, password: str | None = None
                    ) -> requests.Response:
    """Log in through the gateway's login page (GET the form, POST it with its CSRF field)."""
    page = session.get(f"{base_url}/login", timeout=10)
    assert page.status_code == 200, page.text[:300]
    form = hidden_inputs(page.text)
    form.update(username=user, password=USERS[user][0] if password is None else password)
    return session.post(f"{base_url}/login", data=form, timeout=10, allow_redirects=False)


def jwt_header(raw: str) -> dict[str, Any]:
    segment = raw.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return header


def gateway_token(stack: DemoStack, user: str, path: str = "/orders/whoami") -> str:
    """A token minted by the gateway's auth_request endpoint (on its own port), as nginx gets it."""
    response = requests.get(
        f"{stack.backend_url}/_auth",
        auth=(user, USERS[user][0]),
        headers={"X-Original-URI": path, "X-Original-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    token = response.headers["X-Access-Token"]
    return token
