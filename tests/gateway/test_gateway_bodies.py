"""Request bodies at the edge (token_middleware.gateway.edge.body): read to their end before any
upstream connection, bounded in size (413), memory (spooled to a file) and time (408)."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from _gateway_support import Upstream, basic
from werkzeug.test import EnvironBuilder, run_wsgi_app

from token_middleware.gateway import Gateway, GatewayConfig
from token_middleware.gateway.edge.body import CHUNKED, BodyError, read_body


def post_environ(body: bytes, *, chunked: bool = False) -> dict[str, object]:
    environ = EnvironBuilder(path="/orders", method="POST", data=body, headers=basic("bob")).get_environ()
    if chunked:
        del environ["CONTENT_LENGTH"]
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    return environ


def status_of(gateway: Gateway, environ: dict[str, object]) -> int:
    app_iter, status, _ = run_wsgi_app(gateway, environ)
    b"".join(app_iter)
    return int(status.split()[0])


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_a_body_over_the_limit_is_413_and_not_forwarded(
    make_config: Callable[..., GatewayConfig], upstream: Upstream, chunked: bool
) -> None:
    gateway = Gateway(make_config(max_body_bytes=1000))
    assert status_of(gateway, post_environ(b"x" * 1001, chunked=chunked)) == 413
    assert status_of(gateway, post_environ(b"x" * 1000, chunked=chunked)) == 200
    assert [len(r.body) for r in upstream.requests] == [1000]
    gateway.close()


@pytest.mark.parametrize(
    ("length", "size", "in_memory"),
    [
        pytest.param(10, 10, True, id="small"),
        pytest.param(100_000, 100_000, False, id="past-the-threshold-with-length"),
        pytest.param(CHUNKED, 10, True, id="small-chunked"),
        pytest.param(CHUNKED, 100_000, False, id="past-the-threshold-chunked"),
    ],
)
def test_bodies_past_the_memory_threshold_are_spooled_to_a_file(length: int, size: int, in_memory: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
    body = read_body({"wsgi.input": io.BytesIO(payload)}, size if length != CHUNKED else CHUNKED,
                     max_bytes=1 << 20, memory_bytes=64 * 1024, timeout=5)
    assert body is not None
    try:
        assert isinstance(body.data, bytes) is in_memory
        data = body.data if isinstance(body.data, bytes) else body.data.read()
        assert data == payload and body.length == size
    finally:
        body.close()


@pytest.fixture
def client_socket() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the client's end, the server's end) of a real connected socket pair."""
    client, server = socket.socketpair()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def test_a_body_that_does_not_arrive_in_time_is_408(client_socket: tuple[socket.socket, socket.socket]) -> None:
    client, server = client_socket
    client.sendall(b"only the first part")  # of 100 bytes; the rest never comes
    with server.makefile("rb") as stream:
        with pytest.raises(BodyError) as refused:
            read_body({"wsgi.input": stream, "gunicorn.socket": server}, 100,
                      max_bytes=1000, memory_bytes=1000, timeout=0.3)
    assert refused.value.status == 408


def test_a_body_that_ends_early_is_400(client_socket: tuple[socket.socket, socket.socket]) -> None:
    client, server = client_socket
    client.sendall(b"short")
    client.shutdown(socket.SHUT_WR)
    with server.makefile("rb") as stream:
        with pytest.raises(BodyError) as refused:
            read_body({"wsgi.input": stream, "gunicorn.socket": server}, 100,
                      max_bytes=1000, memory_bytes=1000, timeout=30)
    assert refused.value.status == 400


class TrickleInput:
    """A request body that arrives only when the test says so."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.release = threading.Event()
        self.waiting = threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.waiting.set()
        assert self.release.wait(10)
        return self.data.read(size)


def test_no_upstream_request_starts_before_the_whole_body_is_in(gateway: Gateway, upstream: Upstream) -> None:
    """The slow-body finding: a trickling client must not hold a service worker."""
    environ = post_environ(b"x" * 5000)
    trickle = TrickleInput(b"x" * 5000)
    environ["wsgi.input"] = trickle
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(status_of(gateway, environ)))
    worker.start()
    try:
        assert trickle.waiting.wait(10)
        assert upstream.requests == []
    finally:
        trickle.release.set()
        worker.join(10)
    assert result == [200]
    assert len(upstream.last().body) == 5000


def test_a_login_form_that_does_not_arrive_in_time_is_408(
    make_config: Callable[..., GatewayConfig], client_socket: tuple[socket.socket, socket.socket]
) -> None:
    """The gateway's own form reads its body with the same bounds as a forwarded one."""
    client, server = client_socket
    client.sendall(b"username=alice&pass")  # of 100 bytes
    with server.makefile("rb") as stream:
        environ = EnvironBuilder(path="/login", method="POST").get_environ()
        environ.update({"wsgi.input": stream, "gunicorn.socket": server, "CONTENT_LENGTH": "100",
                        "CONTENT_TYPE": "application/x-www-form-urlencoded"})
        gateway = Gateway(make_config(body_timeout=0.3))
        assert status_of(gateway, environ) == 408
        gateway.close()
