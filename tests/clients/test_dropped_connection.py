"""The propagating session retries an idempotent request once when its pooled connection is
dropped, and never a POST or a timed-out read, against a real socket server.

The server answers the first request on each connection with ``Connection: keep-alive``; a
connection's second request, when the server is told to drop it, is read and then the
connection is closed with no answer: what a service whose keep-alive timer fires as the request
arrives does. requests reuses the pooled connection for the second call, so the drop is certain,
not a race.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from token_middleware.requests_auth import propagating_session


@dataclass
class DroppingServer:
    """Loopback HTTP/1.1 server; records every request line per connection."""

    drop_second: bool = True
    stall: bool = False
    sock: socket.socket = field(default_factory=socket.socket)
    connections: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)
    handlers: list[tuple[threading.Thread, socket.socket]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            thread = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            with self.lock:
                self.handlers.append((thread, conn))
            thread.start()

    def stop(self) -> None:
        """Stop accepting, end every open connection and wait for its handler."""
        self.stopped.set()
        with self.lock:
            handlers = list(self.handlers)
        for _, conn in handlers:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # a handler blocked in readline() sees EOF
            except OSError:
                pass  # already closed by its handler
        for thread, _ in handlers:
            thread.join(timeout=5)

    def handle(self, conn: socket.socket) -> None:
        try:
            self._serve_connection(conn)
        except OSError:
            pass  # the client or stop() ended the connection (a reset, a shutdown, the timeout)

    def _serve_connection(self, conn: socket.socket) -> None:
        seen: list[str] = []
        with self.lock:
            self.connections.append(seen)
        with conn, conn.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                reader.read(length)
                seen.append(line.decode("latin-1").split(" ")[0])
                if self.stall:
                    self.stopped.wait(3)  # stop() ends the stall at once
                    return
                if len(seen) > 1 and self.drop_second:
                    return  # closed with no answer
                body = b'{"ok": true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )


@pytest.fixture
def server() -> Iterator[DroppingServer]:
    srv = DroppingServer()
    srv.sock.bind(("127.0.0.1", 0))
    srv.sock.listen(16)
    srv.sock.settimeout(0.1)  # the accept loop sees `stopped` within 0.1 s
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    yield srv
    srv.stopped.set()
    thread.join(timeout=5)
    srv.stop()
    srv.sock.close()


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_idempotent_request_on_a_dropped_connection_is_sent_again(server: DroppingServer, method: str) -> None:
    with propagating_session([]) as session:
        assert session.request(method, server.url + "/a", timeout=5).status_code == 200
        assert session.request(method, server.url + "/b", timeout=5).status_code == 200
    # Second call: sent on the pooled connection, dropped, sent once more on a new one.
    assert server.connections == [[method, method], [method]]


def test_without_retries_the_dropped_connection_is_an_error(server: DroppingServer) -> None:
    with propagating_session([], retries=0) as session:
        session.get(server.url + "/a", timeout=5)
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/b", timeout=5)
    assert server.connections == [["GET", "GET"]]


def test_post_is_never_sent_twice(server: DroppingServer) -> None:
    with propagating_session([]) as session:
        session.post(server.url + "/a", json={"n": 1}, timeout=5)
        with pytest.raises(requests.ConnectionError):
            session.post(server.url + "/b", json={"n": 2}, timeout=5)
    assert server.connections == [["POST", "POST"]]


def test_read_timeout_is_not_retried(server: DroppingServer) -> None:
    server.stall = True
    with propagating_session([]) as session:
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            session.get(server.url + "/slow", timeout=0.5)
        waited = time.monotonic() - started
    assert server.connections == [["GET"]]
    assert waited < 2.5  # one timeout's worth, not two plus a second connection


def test_more_retries_give_up_after_that_many(server: DroppingServer) -> None:
    server.drop_second = False
    with propagating_session([], retries=3) as session:
        assert session.get(server.url, timeout=5).status_code == 200
    assert server.connections == [["GET"]]
    adapter = session.get_adapter("https://example.test/")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter.max_retries.read == 3 and adapter.max_retries.connect == 0
