"""Helpers shared by the end-to-end tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import http.client
from collections.abc import Mapping
from dataclasses import dataclass

from demo_gateway.supervisor import DemoStack

USERS = {
    "alice": ("alice-password", ["customers:read", "orders:read"]),
    "bob": ("bob-password", ["customers:read", "orders:read", "orders:write"]),
}
FAST_HASH = "pbkdf2:sha256:1000"
#: Gateway workers in the test stacks: each counts failed logins on its own.
GATEWAY_WORKERS = 2
#: A short body deadline, so the slow-body test sees the 408 quickly.
BODY_TIMEOUT = 3.0
EDGE_NAMES = ["python", "nginx"]
NO_NGINX = "nginx is not installed (/usr/sbin/nginx); `./run test` installs nginx-light"


@dataclass(frozen=True)
class Front:
    """The edge a client talks to: the Python gateway, or nginx with auth_request."""

    name: str
    url: str
    stack: DemoStack


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request_from(source: str, url: str, path: str, headers: Mapping[str, str], method: str = "GET"
                 ) -> tuple[int, dict[str, str], bytes]:
    """One request to ``url`` from the local address ``source`` (another loopback address,
    e.g. 127.0.0.2, stands for another client)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        connection.request(method, path, headers=dict(headers))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
