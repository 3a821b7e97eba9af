"""Helpers shared by the gateway tests: a recording upstream HTTP server and credentials."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

#: Cheap hashes keep the tests fast; the demo's users file uses werkzeug's default cost.
FAST_HASH = "pbkdf2:sha256:1000"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
SCOPES = {"alice": ["orders:read", "customers:read"], "bob": ["orders:read", "orders:write", "customers:read"]}
ISSUER = "http://gateway.test"


@dataclass
class Recorded:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


@dataclass
class Upstream:
    """What the upstream saw, and levers for slow and streamed answers."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    first_chunk_read: threading.Event = field(default_factory=threading.Event)
    released_by_client: list[bool] = field(default_factory=list)

    def last(self) -> Recorded:
        assert self.requests, "nothing reached the upstream"
        return self.requests[-1]


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _handle(self) -> None:
        up = self.server.upstream
        body = self._read_body()
        up.requests.append(Recorded(self.command, self.path, list(self.headers.items()), body))
        path = self.path.split("?", 1)[0]
        if path == "/orders/slow":
            up.stop.wait(10)
            self._json(200, {"slow": True})
        elif path == "/orders/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"first-chunk;")
            up.released_by_client.append(up.first_chunk_read.wait(10))
            self._chunk(b"second-chunk")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/orders/hop":
            payload = b"hop"
            self.send_response(200)
            self.send_header("Connection", "keep-alive, X-Hop-Secret")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("X-Hop-Secret", "1")
            self.send_header("Proxy-Authenticate", 'Basic realm="upstream"')
            self.send_header("Upgrade", "h2c")
            self.send_header("X-Kept", "yes")
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif path == "/orders/big":
            payload = bytes(range(256)) * 4096  # 1 MiB
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        else:
            self._json(200, {"method": self.command, "target": self.path, "body_length": len(body)})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_FOO = _handle


class UpstreamServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream: Upstream


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = f"{user}:{PASSWORDS[user] if password is None else password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer_of(recorded: Recorded) -> str:
    value = recorded.header("Authorization")
    assert value is not None and value.startswith("Bearer "), value
    return value[len("Bearer ") :]


