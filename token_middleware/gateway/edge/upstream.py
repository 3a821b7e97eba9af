"""A lean HTTP/1.1 client for the gateway's upstream calls: pooled keep-alive connections and
streamed bodies, with connect and read timeouts.

Why not urllib3 or ``http.client``: on the gateway's hot path their request building and
``email``-based response parsing cost more Python time than the rest of a forwarded request
together. This client sends the request head in one write and parses the response head with
plain string operations; bodies still flow through in chunks as they arrive, both ways.

What is trusted: the upstream URL (operator configuration) and the request head handed in (the
proxy built it from checked parts). The upstream's response is parsed strictly enough that a body
is never mis-framed: a status line ``HTTP/1.x NNN``, header lines ``name: value`` with a token
name and no obsolete line folding, at most :data:`MAX_HEADERS` lines in :data:`MAX_HEAD_BYTES`;
``Content-Length`` must be digits (identical when repeated); ``Transfer-Encoding`` must be exactly
``chunked`` and never comes with a ``Content-Length``. Anything else raises
:class:`UpstreamFailed`, and that connection is closed, never reused.

Connections are kept per upstream (scheme, host, port), at most ``maxsize`` idle ones; beyond
that they are closed rather than waited for. A pooled connection may have been closed by the
upstream while idle (keep-alive timeout, worker restart). A ``GET``, ``HEAD`` or ``OPTIONS``
without a body that meets such a connection (closed before a single byte of an answer) is sent
once more on a fresh connection (RFC 9110 §9.2.2). Any other request is never replayed: before
it is sent, its pooled connection is checked with a non-blocking read and replaced when closed,
and if the upstream closes it anyway before answering, it fails with :class:`UpstreamFailed`.

Errors: :class:`UpstreamUnreachable` (connect refused or failed), :class:`UpstreamTimeout`
(connect or read timeout), :class:`UpstreamFailed` (reset, malformed response). The proxy turns
them into 502, 504 and 502.

Example::

    pool = UpstreamPool("http://127.0.0.1:8001", timeout=10)
    response = pool.request("GET", b"GET /orders HTTP/1.1\\r\\nHost: ...\\r\\n\\r\\n", None, replayable=True)
    for chunk in response.body(64 * 1024): ...
    response.close()
"""

from __future__ import annotations

import re
import socket
import ssl
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
RECV_SIZE = 64 * 1024

_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_NO_BODY_STATUSES = frozenset({204, 304})
_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class UpstreamError(Exception):
    """The upstream could not be used; the message is safe to log (no request data)."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, no route, name resolution)."""


class UpstreamTimeout(UpstreamError):
    """Connecting, sending or waiting for the answer took longer than the timeout."""


class UpstreamFailed(UpstreamError):
    """The connection broke or the upstream's answer is not well-formed HTTP/1.1."""


class _Connection:
    """One socket with its unread input; ``reused`` once it has carried a full exchange."""

    __slots__ = ("sock", "buffer", "reused")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.reused = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def idle_but_closed(self, timeout: float) -> bool:
        """True when the peer closed (or sent something) while the connection sat idle.

        A non-blocking one-byte read (not a poll: under gevent a poll yields to the hub): "would
        block" means alive and quiet; end of stream, stray bytes or an error mean unusable.
        """
        sock = self.sock
        try:
            sock.settimeout(0.0)
            try:
                sock.recv(1)
            finally:
                sock.settimeout(timeout)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True
        return True

    def recv(self) -> bytes:
        """The next bytes from the socket (``b""`` at end of stream)."""
        return self.sock.recv(RECV_SIZE)

    def read_head(self) -> bytes:
        """The response head up to and including its blank line; the rest stays buffered."""
        data = self.buffer
        while True:
            end, skip = data.find(b"\r\n\r\n"), 4
            bare = data.find(b"\n\n")  # bare LF line ends (tolerated, RFC 9112 §2.2)
            if bare >= 0 and (end < 0 or bare < end):
                end, skip = bare, 2
            if end > MAX_HEAD_BYTES or (end < 0 and len(data) > MAX_HEAD_BYTES):
                raise UpstreamFailed("response head too large")
            if end >= 0:
                self.buffer = data[end + skip :]
                return data[: end + skip // 2]
            more = self.recv()
            if not more:
                raise UpstreamFailed("connection closed before a complete response head")
            data += more

    def read_line(self) -> bytes:
        """One line (for chunk sizes and trailers), without its line end."""
        data = self.buffer
        while True:
            end = data.find(b"\n")
            if end >= 0:
                self.buffer = data[end + 1 :]
                return data[:end].rstrip(b"\r")
            if len(data) > MAX_CHUNK_LINE:
                raise UpstreamFailed("chunk size line too long")
            more = self.recv()
            if not more:
                raise UpstreamFailed("connection closed inside a chunked body")
            data += more

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes: buffered ones first, else what one ``recv`` brings."""
        data = self.buffer
        if data:
            self.buffer = data[limit:]
            return data[:limit]
        return self.sock.recv(min(limit, RECV_SIZE))


class UpstreamResponse:
    """Status, headers and the body of one upstream answer.

    Iterate :meth:`body` once, then call :meth:`close`: a connection whose body was read to the
    end goes back to the pool, any other is closed.
    """

    __slots__ = ("status", "headers", "_pool", "_conn", "_length", "_chunked", "_until_close",
                 "_keep_alive", "_complete")

    def __init__(
        self,
        pool: UpstreamPool,
        conn: _Connection,
        status: int,
        headers: list[tuple[str, str]],
        *,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self._pool = pool
        self._conn: _Connection | None = conn
        self._length = length
        self._chunked = chunked
        self._until_close = length is None and not chunked
        self._keep_alive = keep_alive and not self._until_close
        self._complete = length == 0

    def body(self, chunk_size: int) -> Iterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed). Raises
        :class:`UpstreamFailed` or :class:`UpstreamTimeout` if the upstream breaks off."""
        conn = self._conn
        if conn is None or self._complete:
            return
        try:
            if self._chunked:
                yield from self._chunked_body(conn, chunk_size)
            elif self._until_close:
                while True:
                    data = conn.read_some(chunk_size)
                    if not data:
                        break
                    yield data
            else:
                remaining = self._length or 0
                while remaining > 0:
                    data = conn.read_some(min(chunk_size, remaining))
                    if not data:
                        raise UpstreamFailed("connection closed inside the response body")
                    remaining -= len(data)
                    yield data
        except socket.timeout:
            raise UpstreamTimeout("timed out reading the response body") from None
        except OSError as exc:
            raise UpstreamFailed(f"connection broke in the response body ({type(exc).__name__})") from None
        self._complete = True

    @staticmethod
    def _chunked_body(conn: _Connection, chunk_size: int) -> Iterator[bytes]:
        while True:
            line = conn.read_line()
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
                raise UpstreamFailed("malformed chunk size")
            remaining = int(size_text, 16)
            if remaining == 0:
                break
            while remaining > 0:
                data = conn.read_some(min(chunk_size, remaining))
                if not data:
                    raise UpstreamFailed("connection closed inside a chunk")
                remaining -= len(data)
                yield data
            if conn.read_line():
                raise UpstreamFailed("chunk not followed by a line end")
        trailers = 0
        while conn.read_line():  # trailer fields are dropped
            trailers += 1
            if trailers > MAX_HEADERS:
                raise UpstreamFailed("too many trailer fields")

    def __del__(self) -> None:
        # Dropped without close() (a WSGI server must call it; a test client may not).
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Return the connection to the pool when reusable, else close it. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive and not conn.buffer:
            conn.reused = True
            self._pool.release(conn)
        else:
            conn.close()


class UpstreamPool:
    """Keep-alive connections to one upstream origin; safe to share between threads.

    ``timeout`` is the connect timeout and the timeout of every send and receive, in seconds.
    """

    def __init__(self, url: str, *, timeout: float, maxsize: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        #: The ``Host`` header for this upstream (as written in the URL, without userinfo).
        self.host_header = parts.netloc.rpartition("@")[2]
        self.timeout = timeout
        self.maxsize = maxsize
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: deque[_Connection] = deque()
        self._closed = False
        # A pool dropped without close() (a test's throw-away app) still closes its sockets.
        weakref.finalize(self, _close_all, self._idle)

    # -- connections --------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout:
            raise UpstreamTimeout("timed out connecting") from None
        except OSError as exc:
            raise UpstreamUnreachable(f"cannot connect ({type(exc).__name__})") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except socket.timeout:
            sock.close()
            raise UpstreamTimeout("timed out in the TLS handshake") from None
        except OSError as exc:
            sock.close()
            raise UpstreamUnreachable(f"TLS handshake failed ({type(exc).__name__})") from None
        return _Connection(sock)

    def _checkout(self, check: bool) -> _Connection:
        """A pooled connection (checked for a close while idle when ``check``) or a new one."""
        while True:
            try:
                conn = self._idle.pop()  # most recently used first: likeliest to be alive
            except IndexError:
                return self._connect()
            if check and conn.idle_but_closed(self.timeout):
                conn.close()
                continue
            return conn

    def release(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next request (or close it when the pool is full or closed)."""
        if self._closed or len(self._idle) >= self.maxsize:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when released."""
        self._closed = True
        _close_all(self._idle)

    def idle_connections(self) -> int:
        """How many connections wait in the pool (for tests and metrics)."""
        return len(self._idle)

    # -- one exchange -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        head: bytes,
        body: Iterable[bytes] | None,
        *,
        replayable: bool,
    ) -> UpstreamResponse:
        """Send ``head`` (request line and headers, ending in a blank line) and ``body`` (already
        framed: raw bytes for ``Content-Length``, chunk-encoded pieces for chunked), and read the
        response head.

        ``replayable``: the request may be sent a second time if a reused connection turns out
        to be closed before any byte of an answer (only for bodiless ``GET``/``HEAD``/``OPTIONS``).
        """
        replayable = replayable and method in _REPLAYABLE_METHODS and body is None
        # A replayable request skips the idle check (three system calls): if the connection
        # turns out to be closed, the request is simply sent again on a new one.
        conn = self._checkout(check=not replayable)
        try:
            return self._exchange(conn, method, head, body)
        except _StaleConnection:
            conn.close()
            if not replayable:
                raise UpstreamFailed("the upstream closed the connection without answering") from None
        return self._exchange(self._connect(), method, head, None)  # a fresh one is never stale

    def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: Iterable[bytes] | None
    ) -> UpstreamResponse:
        try:
            try:
                _send(conn.sock, head)
                if body is not None:
                    for piece in body:
                        if piece:
                            _send(conn.sock, piece)
                first = conn.recv()
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                if conn.reused:
                    raise _StaleConnection from None
                raise
            if not first:
                if conn.reused:
                    raise _StaleConnection
                raise UpstreamFailed("connection closed before a response")
            conn.buffer = first
            while True:
                status, headers, length, chunked, keep_alive = _parse_head(conn.read_head(), method)
                if status >= 200 or status == 101:
                    break
                # 1xx interim answers (100 Continue, 103 Early Hints) are not passed on.
            if status == 101:
                raise UpstreamFailed("protocol upgrades are not forwarded")
        except _StaleConnection:
            raise
        except UpstreamError:
            conn.close()
            raise
        except socket.timeout:
            conn.close()
            raise UpstreamTimeout("timed out waiting for the response") from None
        except OSError as exc:
            conn.close()
            raise UpstreamFailed(f"connection broke ({type(exc).__name__})") from None
        except BaseException:  # e.g. the client's body could not be read: never pool this one
            conn.close()
            raise
        response = UpstreamResponse(
            self, conn, status, headers, length=length, chunked=chunked, keep_alive=keep_alive
        )
        if length == 0:
            response.close()  # nothing to read: back to the pool at once
        return response


def _send(sock: socket.socket, data: bytes) -> None:
    """``sock.sendall(data)``, in one plain ``send`` when it all fits (gevent's ``sendall``
    asks the socket for its buffer size on every call)."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def _close_all(idle: deque[_Connection]) -> None:
    while True:
        try:
            idle.pop().close()
        except IndexError:
            return


class _StaleConnection(Exception):
    """A reused connection was closed by the upstream before any byte of an answer."""


def _parse_head(
    head: bytes, method: str
) -> tuple[int, list[tuple[str, str]], int | None, bool, bool]:
    """Status, headers, body length (``None``: chunked or until close), chunked, keep-alive."""
    lines = head.decode("latin-1").split("\n")
    status_line = lines[0].rstrip("\r")
    if (
        len(status_line) < 12
        or not status_line.startswith("HTTP/1.")
        or status_line[8] != " "
        or not status_line[9:12].isdigit()
        or status_line[12:13] not in ("", " ")
    ):
        raise UpstreamFailed("malformed status line")
    http10 = status_line[7] == "0"
    status = int(status_line[9:12])
    if len(lines) > MAX_HEADERS + 2:
        raise UpstreamFailed("too many response header fields")
    headers: list[tuple[str, str]] = []
    content_length: str | None = None
    transfer_encoding: str | None = None
    connection = ""
    is_name = _FIELD_NAME.match
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not is_name(name):
            if line == "" or line == "\r":
                continue  # the blank line ending the head
            raise UpstreamFailed("malformed response header field")  # includes obsolete folding
        value = value.strip(" \t\r")
        lower = name.lower()
        if lower in _FRAMING:
            if lower == "content-length":
                if content_length is not None and content_length != value:
                    raise UpstreamFailed("conflicting Content-Length")
                content_length = value
            elif lower == "transfer-encoding":
                transfer_encoding = value if transfer_encoding is None else f"{transfer_encoding},{value}"
            else:
                connection = f"{connection},{value}" if connection else value
        headers.append((name, value))
    keep_alive = not http10 and "close" not in {t.strip().lower() for t in connection.split(",")}
    if method == "HEAD" or status < 200 or status in _NO_BODY_STATUSES:
        return status, headers, 0, False, keep_alive
    if transfer_encoding is not None:
        if content_length is not None:
            raise UpstreamFailed("both Transfer-Encoding and Content-Length")
        if transfer_encoding.strip().lower() != "chunked":
            raise UpstreamFailed("unsupported Transfer-Encoding")
        return status, headers, None, True, keep_alive
    if content_length is not None:
        values = {v.strip() for v in content_length.split(",")}  # "5, 5" is allowed, "5, 6" not
        length = values.pop() if len(values) == 1 else ""
        if not length.isdigit() or not length.isascii() or len(length) > 18:
            raise UpstreamFailed("malformed Content-Length")
        return status, headers, int(length), False, keep_alive
    return status, headers, None, False, False
