"""The gateway's upstream calls, on urllib3: keep-alive pools, streamed bodies, strict framing.

One :class:`urllib3.HTTPConnectionPool` per upstream origin (scheme, host, port). Responses are
streamed (``preload_content=False``) and passed on as they are (``decode_content=False``: a
compressed body stays compressed, with its ``Content-Encoding``).

What is trusted: the upstream URL (operator configuration) and the request handed in (the proxy
built it from checked parts; its body is already buffered, never read from the client here).
The upstream's answer is checked before a single byte of it is passed on, so a body is never
mis-framed:

- its head must parse cleanly (``urllib3.util.response.assert_header_parsing``): a line that
  is not a header field would otherwise turn the rest of the head into body;
- ``Transfer-Encoding`` must be exactly ``chunked`` (once) and never comes with a
  ``Content-Length``; ``Content-Length`` must be digits, identical when repeated;
- interim ``1xx`` answers other than ``100 Continue`` (which the standard library skips) and
  protocol upgrades are refused: a WSGI server cannot pass them on.

Anything else raises :class:`UpstreamFailed` and that connection is closed, never reused.

Connection reuse: urllib3 checks a pooled connection before each use and drops it when the
upstream closed it or sent stray bytes while it was idle (``is_connection_dropped``). A response
whose body was not read to the end is closed, never put back. A ``GET``, ``HEAD`` or
``OPTIONS`` without a body whose connection breaks before any answer (the upstream closed it
just as it was reused) is sent once more on a fresh connection (RFC 9110 §9.2.2: idempotent);
a timeout is never retried, and a request with a body is never replayed.

Errors: :class:`UpstreamUnreachable` (connect refused or failed), :class:`UpstreamTimeout`
(connect or read timeout), :class:`UpstreamFailed` (reset, malformed answer). The proxy turns
them into 502, 504 and 502.

Example::

    pool = UpstreamPool("http://127.0.0.1:8001", timeout=10)
    response = pool.request("GET", "/orders", {"Accept": "*/*"})
    for chunk in response.body(64 * 1024): ...
    response.close()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Union
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HeaderParsingError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util import SKIP_HEADER, Retry, Timeout
from urllib3.util.response import assert_header_parsing

if TYPE_CHECKING:
    from typing_extensions import Self
    from urllib3.connectionpool import ConnectionPool

#: A request body: bytes, a readable file (already buffered, rewound), or none.
Body = Union[bytes, IO[bytes], None]

REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_LENGTH_DIGITS = 18


class UpstreamError(Exception):
    """The upstream could not be used; the message is safe to log (no request data)."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, no route, name resolution)."""


class UpstreamTimeout(UpstreamError):
    """Connecting, sending or waiting for the answer took longer than the timeout."""


class UpstreamFailed(UpstreamError):
    """The connection broke or the upstream's answer is not well-formed HTTP/1.1."""


class _StaleConnectionRetry(Retry):
    """urllib3's ``Retry`` for exactly one case: a bodiless idempotent request whose connection
    broke before any answer. Timeouts are never retried (the upstream may still be working on
    the first one); connection errors are not either (a fresh connection failed already)."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


_RETRY_ONCE = _StaleConnectionRetry(
    total=1, connect=0, read=1, redirect=False, status=0, other=0,
    allowed_methods=REPLAYABLE_METHODS, raise_on_redirect=False, raise_on_status=False,
)
_NO_RETRY = Retry(total=False, redirect=False, raise_on_redirect=False, raise_on_status=False)


class UpstreamResponse:
    """Status, headers and the body of one upstream answer.

    Iterate :meth:`body` once, then call :meth:`close`: a connection whose body was read to the
    end goes back to the pool, any other is closed.
    """

    __slots__ = ("status", "headers", "_response", "_complete")

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self.status: int = response.status
        #: Every header line as received (repeated names, e.g. ``Set-Cookie``, stay separate).
        self.headers: list[tuple[str, str]] = list(response.headers.items())
        self._response: urllib3.BaseHTTPResponse | None = response
        self._complete = False

    def body(self, chunk_size: int) -> Iterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed, content coding kept).
        Raises :class:`UpstreamFailed` or :class:`UpstreamTimeout` if the upstream breaks off."""
        response = self._response
        if response is None:
            return
        try:
            if response.chunked:
                for piece in response.read_chunked(chunk_size, decode_content=False):
                    if piece:
                        yield piece
            else:
                while True:
                    piece = response.read1(chunk_size, decode_content=False)
                    if not piece:
                        break
                    yield piece
        except ReadTimeoutError:
            raise UpstreamTimeout("timed out reading the response body") from None
        except (HTTPError, OSError) as exc:
            raise UpstreamFailed(f"the response body broke off ({type(exc).__name__})") from None
        self._complete = True

    def close(self) -> None:
        """Back to the pool when the body was read to the end, else closed. Idempotent."""
        response, self._response = self._response, None
        if response is None:
            return
        if not self._complete:
            response.close()  # closes the connection: unread bytes never meet the next request
        response.release_conn()

    def __del__(self) -> None:  # dropped without close() (a test client may do that)
        response, self._response = self._response, None
        if response is not None:
            response.close()


class UpstreamPool:
    """Keep-alive connections to one upstream origin (urllib3); safe to share between threads.

    ``timeout`` is the connect timeout and the timeout of every send and receive, in seconds.
    ``maxsize`` connections are kept; beyond that, extra ones are opened and closed rather than
    waited for.
    """

    def __init__(self, url: str, *, timeout: float, maxsize: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.maxsize = maxsize
        pool_class = urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
        self._pool = pool_class(
            self.host, self.port, maxsize=maxsize, block=False, retries=_NO_RETRY,
            timeout=Timeout(connect=timeout, read=timeout),
        )

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when released."""
        self._pool.close()

    def idle_connections(self) -> int:
        """How many open connections wait in the pool (for tests and metrics)."""
        queue = self._pool.pool
        if queue is None:
            return 0
        return sum(1 for conn in list(queue.queue) if conn is not None and conn.sock is not None)

    def request(
        self, method: str, target: str, headers: Mapping[str, str], body: Body = None
    ) -> UpstreamResponse:
        """Send one request (``target``: the path and query) and read the answer's head.

        ``headers`` must not hold ``Host`` (the pool's own) nor any body framing but the
        ``Content-Length`` of ``body``; ``User-Agent`` is not added when the client sent none.
        """
        headers = dict(headers)
        headers.setdefault("User-Agent", SKIP_HEADER)
        headers.setdefault("Accept-Encoding", SKIP_HEADER)
        retries = _RETRY_ONCE if body is None and method in REPLAYABLE_METHODS else _NO_RETRY
        try:
            response = self._pool.urlopen(
                method, target, body=body, headers=headers, retries=retries, redirect=False,
                assert_same_host=False, release_conn=False, preload_content=False,
                decode_content=False, enforce_content_length=True,
            )
        except MaxRetryError as exc:
            raise _translate(exc.reason or exc) from None
        except (HTTPError, OSError) as exc:
            raise _translate(exc) from None
        try:
            check_framing(response, method)
        except UpstreamFailed:
            response.close()
            response.release_conn()
            raise
        return UpstreamResponse(response)


def check_framing(response: urllib3.BaseHTTPResponse, method: str) -> None:
    """Refuse an answer whose body framing is not exactly one of HTTP/1.1's unambiguous ones."""
    status = response.status
    if status < 200:
        raise UpstreamFailed(f"interim or upgrade answer {status} is not forwarded")
    original = getattr(response, "_original_response", None)  # the http.client response
    if original is not None:
        try:
            assert_header_parsing(original.msg)
        except HeaderParsingError:
            raise UpstreamFailed("malformed response header field") from None
    headers = response.headers  # (a value with CR, LF or NUL is never passed on: .wire)
    codings = headers.getlist("Transfer-Encoding")
    lengths = headers.getlist("Content-Length")
    if codings:
        if lengths:
            raise UpstreamFailed("both Transfer-Encoding and Content-Length")
        if len(codings) != 1 or codings[0].strip().lower() != "chunked":
            raise UpstreamFailed("unsupported Transfer-Encoding")
    if lengths:
        values = {v.strip() for line in lengths for v in line.split(",")}
        length = values.pop() if len(values) == 1 else ""
        if not (length.isascii() and length.isdigit()) or len(length) > _MAX_LENGTH_DIGITS:
            raise UpstreamFailed("malformed or conflicting Content-Length")


def _translate(exc: BaseException) -> UpstreamError:
    """urllib3's and the socket's errors as the gateway's three kinds (messages without data)."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, NewConnectionError):  # a subclass of ConnectTimeoutError: first
        return UpstreamUnreachable("cannot connect")
    if isinstance(exc, ConnectTimeoutError):
        return UpstreamTimeout("timed out connecting")
    if isinstance(exc, (ReadTimeoutError, TimeoutError)):
        return UpstreamTimeout("timed out waiting for the response")
    return UpstreamFailed(f"the upstream failed ({type(exc).__name__})")
