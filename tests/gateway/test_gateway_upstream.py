"""The gateway's upstream client on its own and through the proxy: keep-alive reuse, stale pooled
connections, strict response framing (502, never a mis-framed body), truncation, and what a
bodiless request looks like on the wire.

The upstream here is a scripted raw-socket server on loopback: each response is exact bytes, so
malformed and hostile answers can be sent on purpose.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from _gateway_support import basic
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from token_middleware.gateway import Gateway, GatewayConfig, Route
from token_middleware.gateway.edge.proxy import UpstreamAborted
from token_middleware.gateway.edge.upstream import UpstreamFailed, UpstreamPool, UpstreamTimeout

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

#: A response for the n-th request on a connection: bytes to send, then whether to close.
Script = Callable[[bytes, int], tuple[bytes, bool]]


@dataclass
class RawUpstream:
    """Accepts connections, reads each request head (and a Content-Length body), answers per
    ``script``. Counts connections and keeps the raw requests."""

    script: Script
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    url: str = ""
    last: socket.socket | None = None
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self.last = conn
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def inject(self, data: bytes) -> None:
        """Send ``data`` on the newest connection now, unasked (as a desynchronised server does)."""
        assert self.last is not None
        self.last.sendall(data)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        finally:
            conn.close()
            self.closed.release()

    def _exchange(self, conn: socket.socket) -> None:
        buffer = b""
        n = 0
        conn.settimeout(5)
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    more = conn.recv(65536)
                except OSError:
                    return
                if not more:
                    return
                buffer += more
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                    while len(buffer) < length:
                        buffer += conn.recv(65536)
                    buffer = buffer[length:]
            self.requests.append(head)
            response, close = self.script(head, n)
            n += 1
            try:
                conn.sendall(response)
            except OSError:
                return
            if close:
                return


@pytest.fixture
def raw_upstream() -> Iterator[Callable[[Script], RawUpstream]]:
    servers: list[RawUpstream] = []

    def start(script: Script) -> RawUpstream:
        server = RawUpstream(script)
        sock = socket.create_server(("127.0.0.1", 0))
        server._sock = sock
        server.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        threading.Thread(target=server.serve, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server._stop.set()
        assert server._sock is not None
        server._sock.close()


def always(response: bytes, close: bool = False) -> Script:
    return lambda head, n: (response, close)


def fetch(pool: UpstreamPool, method: str = "GET", target: str = "/x") -> tuple[int, bytes]:
    response = pool.request(method, target, {})
    try:
        return response.status, b"".join(response.body(65536))
    finally:
        response.close()


# -- the client on its own ------------------------------------------------------------------------


def test_keep_alive_connections_are_reused(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    server = raw_upstream(always(OK))
    pool = UpstreamPool(server.url, timeout=5)
    assert [fetch(pool) for _ in range(5)] == [(200, b"ok")] * 5
    assert server.connections == 1
    assert pool.idle_connections() == 1
    pool.close()
    assert pool.idle_connections() == 0


@pytest.mark.parametrize(
    ("response", "body", "reused"),
    [
        pytest.param(OK, b"ok", True, id="content-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
                     b"abcde", True, id="chunked-with-extension-and-trailer"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", b"", True, id="no-content"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"ok", True, id="100-continue-skipped"),
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", b"ok", True, id="bare-lf-line-ends"),
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 6\n\nab\r\n\r\n", b"ab\r\n\r\n", True, id="bare-lf-head-crlf-body"),
        # Allowed (RFC 9110 §8.6), but http.client cannot frame it: read, then never reused.
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", b"ok", False, id="repeated-equal-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False, id="connection-close"),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False, id="http-1.0"),
    ],
)
def test_response_framing(
    raw_upstream: Callable[[Script], RawUpstream], response: bytes, body: bytes, reused: bool
) -> None:
    server = raw_upstream(always(response, close=not reused))
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (204 if b" 204 " in response else 200, body)
    assert fetch(pool) == (204 if b" 204 " in response else 200, body)
    assert server.connections == (1 if reused else 2)
    pool.close()


def test_obsolete_line_folding_becomes_a_space(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    # RFC 9112 §5.2: a proxy replaces each obs-fold with SP (or refuses the message).
    server = raw_upstream(always(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok"))
    pool = UpstreamPool(server.url, timeout=5)
    response = pool.request("GET", "/x", {})
    assert ("X-A", "1 folded") in response.headers
    response.close()
    pool.close()


def test_body_until_close(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    server = raw_upstream(always(b"HTTP/1.1 200 OK\r\n\r\nall of it", close=True))
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (200, b"all of it")
    assert pool.idle_connections() == 0


def test_head_response_has_no_body_whatever_its_length(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    server = raw_upstream(always(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool, "HEAD") == (200, b"")
    assert fetch(pool, "HEAD") == (200, b"")
    assert server.connections == 1
    pool.close()


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/2 200 OK\r\n\r\n", id="not-http-1"),
        pytest.param(b"garbage\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n", id="space-in-name"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", id="conflicting-lengths"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", id="conflicting-length-list"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2 3\r\n\r\nok", id="length-with-a-space"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", id="length-and-chunked"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", id="unsupported-coding"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", id="coding-list"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", id="chunked-twice"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", id="upgrade"),
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK, id="interim-103"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", id="head-too-large"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", id="too-many-fields"),
        pytest.param(b"", id="closed-without-answer"),
    ],
)
def test_malformed_responses_fail_cleanly(raw_upstream: Callable[[Script], RawUpstream], response: bytes) -> None:
    server = raw_upstream(always(response, close=True))
    pool = UpstreamPool(server.url, timeout=5)
    with pytest.raises(UpstreamFailed):
        fetch(pool)
    assert pool.idle_connections() == 0


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", id="short-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", id="short-chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", id="bad-chunk-size"),
    ],
)
def test_broken_bodies_raise_instead_of_ending_quietly(
    raw_upstream: Callable[[Script], RawUpstream], response: bytes
) -> None:
    server = raw_upstream(always(response, close=True))
    pool = UpstreamPool(server.url, timeout=5)
    with pytest.raises(UpstreamFailed):
        fetch(pool)
    assert pool.idle_connections() == 0


def test_a_silent_upstream_times_out(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    release = threading.Event()

    def hang(head: bytes, n: int) -> tuple[bytes, bool]:
        release.wait(10)
        return b"", True

    server = raw_upstream(hang)
    pool = UpstreamPool(server.url, timeout=0.2)
    try:
        with pytest.raises(UpstreamTimeout):
            fetch(pool)
        assert len(server.requests) == 1, "a timed-out GET must not be sent again"
    finally:
        release.set()


def closes_after_each(head: bytes, n: int) -> tuple[bytes, bool]:
    """Answers keep-alive, then closes anyway (as a keep-alive timeout or worker restart does)."""
    return OK, True


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "PATCH"])
def test_a_pooled_connection_closed_while_idle_is_replaced(
    raw_upstream: Callable[[Script], RawUpstream], method: str
) -> None:
    server = raw_upstream(closes_after_each)
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (200, b"ok")
    assert pool.idle_connections() == 1
    assert server.closed.acquire(timeout=5)  # the upstream has closed it by now
    assert fetch(pool, method)[0] == 200  # urllib3 checks a pooled connection before use
    assert server.connections == 2
    pool.close()


def reads_then_closes_the_second(head: bytes, n: int) -> tuple[bytes, bool]:
    """The second request on a connection is read, then the connection closes unanswered (the
    race a keep-alive timeout can cause: closed just as the gateway reused it)."""
    return (OK, False) if n == 0 else (b"", True)


def test_a_bodiless_get_whose_reused_connection_breaks_is_sent_once_more(
    raw_upstream: Callable[[Script], RawUpstream],
) -> None:
    server = raw_upstream(reads_then_closes_the_second)
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (200, b"ok")
    assert fetch(pool, "GET", "/again") == (200, b"ok")
    assert [h.split(b" ")[:2] for h in server.requests] == [[b"GET", b"/x"], [b"GET", b"/again"], [b"GET", b"/again"]]
    assert server.connections == 2
    pool.close()


def test_a_request_with_a_body_is_never_replayed(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    server = raw_upstream(reads_then_closes_the_second)
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (200, b"ok")
    with pytest.raises(UpstreamFailed):
        pool.request("POST", "/x", {"Content-Length": "3"}, b"abc")
    assert [h.split(b" ")[0] for h in server.requests] == [b"GET", b"POST"]
    assert server.connections == 1


SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nnot-for-you!"


@pytest.mark.parametrize("when", ["with-the-answer", "after-the-answer"])
def test_stray_bytes_after_an_answer_never_reach_the_next_request(
    raw_upstream: Callable[[Script], RawUpstream], when: str
) -> None:
    """The response-mixing finding: an upstream that answers a request hidden in another one's
    body leaves a second answer on the connection. It must never become the next caller's."""
    answers = iter([OK + SMUGGLED if when == "with-the-answer" else OK])

    def script(head: bytes, n: int) -> tuple[bytes, bool]:
        return next(answers, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"), False

    server = raw_upstream(script)
    pool = UpstreamPool(server.url, timeout=5)
    assert fetch(pool) == (200, b"ok")
    if when == "after-the-answer":
        server.inject(SMUGGLED)  # arrives while the connection sits in the pool
        (pooled,) = [c for c in list(pool._pool.pool.queue) if c is not None and c.sock is not None]  # type: ignore[union-attr]
        readable, _, _ = select.select([pooled.sock], [], [], 5)
        assert readable, "the stray answer did not arrive"
    assert fetch(pool) == (200, b"mine")
    pool.close()


def test_an_unread_body_closes_its_connection(raw_upstream: Callable[[Script], RawUpstream]) -> None:
    server = raw_upstream(always(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef"))
    pool = UpstreamPool(server.url, timeout=5)
    response = pool.request("GET", "/x", {})
    next(response.body(2))  # the client went away after two bytes
    response.close()
    assert pool.idle_connections() == 0
    assert fetch(pool) == (200, b"abcdef")
    assert server.connections == 2
    pool.close()


# -- through the proxy ----------------------------------------------------------------------------


@pytest.fixture
def gateway_to(make_config: Callable[..., GatewayConfig]) -> Iterator[Callable[[str], Gateway]]:
    made: list[Gateway] = []

    def make(url: str) -> Gateway:
        gateway = Gateway(make_config(routes=(Route("/orders", url, ("orders-service",)),)))
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


def test_a_bodiless_get_carries_no_body_framing(
    raw_upstream: Callable[[Script], RawUpstream], gateway_to: Callable[[str], Gateway]
) -> None:
    server = raw_upstream(always(OK))
    environ = EnvironBuilder(path="/orders/x", headers=basic("alice")).get_environ()
    environ["wsgi.input_terminated"] = True  # as gunicorn sets it on every request
    app_iter, status, _ = run_wsgi_app(gateway_to(server.url), environ)
    assert b"".join(app_iter) == b"ok"
    assert status.startswith("200")
    names = {line.split(b":")[0].lower() for line in server.requests[-1].split(b"\r\n")[1:]}
    assert {b"transfer-encoding", b"content-length"}.isdisjoint(names)


@pytest.mark.parametrize(
    ("response", "status"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", 502, id="smuggling-shape"),
        pytest.param(b"nonsense\r\n\r\n", 502, id="not-http"),
    ],
)
def test_malformed_upstream_answers_are_502(
    raw_upstream: Callable[[Script], RawUpstream], gateway_to: Callable[[str], Gateway], response: bytes, status: int
) -> None:
    server = raw_upstream(always(response, close=True))
    answer = Client(gateway_to(server.url)).get("/orders/x", headers=basic("alice"))
    assert answer.status_code == status
    assert answer.json is not None and answer.json["error"] == "bad_gateway"


def test_a_truncated_upstream_body_truncates_the_client_response(
    raw_upstream: Callable[[Script], RawUpstream], gateway_to: Callable[[str], Gateway]
) -> None:
    server = raw_upstream(always(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close=True))
    environ = EnvironBuilder(path="/orders/x", headers=basic("alice")).get_environ()
    app_iter, status, _ = run_wsgi_app(gateway_to(server.url), environ, buffered=False)
    assert status.startswith("200")
    with pytest.raises(UpstreamAborted):
        b"".join(app_iter)
    getattr(app_iter, "close", lambda: None)()


@pytest.mark.parametrize(
    ("environ", "status"),
    [
        pytest.param({"CONTENT_LENGTH": "10"}, 400, id="body-shorter-than-its-length"),
        pytest.param({"CONTENT_LENGTH": "\u00b2"}, 400, id="length-a-superscript-digit"),
        pytest.param({"HTTP_X_NOTE": "caf\u00e9 \u2603"}, 400, id="header-value-not-latin-1"),
        pytest.param({"HTTP_X_A:B": "1"}, 200, id="odd-header-name-dropped"),
    ],
)
def test_odd_requests_are_4xx_or_cleaned_never_500(
    raw_upstream: Callable[[Script], RawUpstream], gateway_to: Callable[[str], Gateway],
    environ: dict[str, str], status: int,
) -> None:
    server = raw_upstream(always(OK))
    env = EnvironBuilder(path="/orders/x", method="POST", data=b"abc", headers=basic("alice")).get_environ()
    env.update(environ)
    app_iter, got, _ = run_wsgi_app(gateway_to(server.url), env)
    b"".join(app_iter)
    assert got.startswith(str(status))
    for head in server.requests:
        assert b"x-a:b" not in head.lower()
