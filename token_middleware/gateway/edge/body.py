"""Request bodies at the edge: framing checked, then read whole, bounded, before any upstream call.

The gateway never streams a client's body to a service as it trickles in: a client sending one
byte a second would otherwise hold a service worker for as long as it likes. So the body is read
to its end first, with three bounds:

- **size:** more than ``max_bytes`` is refused with 413, before reading when ``Content-Length``
  says so, else as soon as the body grows past it;
- **memory:** up to ``memory_bytes`` stay in memory, a longer body is spooled to a temporary file
  (:class:`tempfile.SpooledTemporaryFile`, deleted when the request ends);
- **time:** the whole body must arrive within ``timeout`` seconds, else 408. The deadline is
  enforced by shutting the client socket down for reading (``SHUT_RD``) when it passes, which
  wakes a read blocked inside the WSGI server; it needs the server's socket in the environ
  (``gunicorn.socket`` or ``werkzeug.socket``). Without one, only the size bound applies.

What is trusted: nothing from the request. The WSGI server's framing is relied on only for what
it parses (gunicorn refuses a repeated or ambiguous ``Transfer-Encoding`` and ``Content-Length``
beside ``Transfer-Encoding`` itself); :func:`body_framing` refuses the rest with 400:
``Transfer-Encoding`` other than exactly ``chunked``, a ``Content-Length`` that is not digits,
both together, and any body on ``GET`` or ``HEAD``. A request with neither header has no body
(RFC 9112 §6.3).

Example::

    length = body_framing(environ, "POST")          # raises BodyError (a 4xx)
    body = read_body(environ, length, max_bytes=1 << 20, memory_bytes=64 << 10, timeout=30)
"""

from __future__ import annotations

import io
import socket
import tempfile
import threading
from collections.abc import Mapping
from typing import IO, Any, Protocol, cast

#: Methods whose requests must not carry a body here (RFC 9110 §9.3.1-2: no defined meaning,
#: and a server that ignores it leaves it on the connection as the next "request").
BODILESS_METHODS = frozenset({"GET", "HEAD"})
#: The length of a body of unknown length (chunked).
CHUNKED = -1
_MAX_LENGTH_DIGITS = 18
_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


class BodyError(Exception):
    """The request's body cannot be accepted: ``status`` (4xx) and a short, safe description."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def body_framing(environ: Mapping[str, Any], method: str) -> int:
    """The request body's length: 0 for none, :data:`CHUNKED` for a chunked one.

    Raises :class:`BodyError` (400) for ambiguous framing and for a body on ``GET``/``HEAD``.
    """
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    raw_length = environ.get("CONTENT_LENGTH") or ""
    if coding is not None:
        if str(coding).strip().lower() != "chunked":
            raise BodyError(400, "unsupported or repeated Transfer-Encoding")
        if raw_length:
            raise BodyError(400, "both Transfer-Encoding and Content-Length")
        length = CHUNKED
    elif raw_length:
        if not (raw_length.isascii() and raw_length.isdigit()) or len(raw_length) > _MAX_LENGTH_DIGITS:
            raise BodyError(400, "invalid Content-Length")
        length = int(raw_length)
    else:
        length = 0
    if length and method in BODILESS_METHODS:
        raise BodyError(400, f"{method} requests must not have a body")
    return length


class BufferedBody:
    """A request body read to its end: ``data`` (bytes, or a rewound temporary file) and its
    ``length``. :meth:`close` deletes a temporary file."""

    __slots__ = ("data", "length")

    def __init__(self, data: bytes | IO[bytes], length: int) -> None:
        self.data = data
        self.length = length

    def close(self) -> None:
        if not isinstance(self.data, bytes):
            self.data.close()


class _Deadline:
    """Shuts ``sock`` down for reading after ``seconds``, unless :meth:`cancel` comes first."""

    def __init__(self, sock: _Socket | None, seconds: float) -> None:
        self.expired = False
        self._sock = sock
        self._lock = threading.Lock()
        self._done = False
        self._timer: threading.Timer | None = None
        if sock is not None and seconds > 0:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._done or self._sock is None:
                return
            self.expired = True
            try:
                self._sock.shutdown(socket.SHUT_RD)
            except OSError:  # already closed by the client: nothing left to wake
                pass

    def cancel(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


class _Socket(Protocol):
    def shutdown(self, how: int, /) -> None: ...


def _client_socket(environ: Mapping[str, Any]) -> _Socket | None:
    for key in _SOCKET_KEYS:
        sock = environ.get(key)
        if callable(getattr(sock, "shutdown", None)):  # a socket (gevent's is not a subclass)
            return cast(_Socket, sock)
    return None


def read_body(
    environ: Mapping[str, Any],
    length: int,
    *,
    max_bytes: int,
    memory_bytes: int,
    timeout: float,
    chunk_size: int = 64 * 1024,
) -> BufferedBody | None:
    """Read the body announced by ``length`` (from :func:`body_framing`); ``None`` for none.

    Raises :class:`BodyError`: 413 beyond ``max_bytes``, 408 past ``timeout``, 400 when the
    body ends early or the connection breaks.
    """
    if length == 0:
        return None
    if length > max_bytes:
        raise BodyError(413, "the request body is too large")
    stream = environ.get("wsgi.input")
    if stream is None:
        raise BodyError(400, "the request body is missing")
    sink: IO[bytes] = (
        io.BytesIO() if 0 <= length <= memory_bytes else tempfile.SpooledTemporaryFile(max_size=memory_bytes)
    )
    deadline = _Deadline(_client_socket(environ), timeout)
    total = 0
    broken = False
    try:
        try:
            while length == CHUNKED or total < length:
                want = chunk_size if length == CHUNKED else min(chunk_size, length - total)
                try:
                    piece = stream.read(want)
                except OSError:  # the client went away, or the deadline shut its socket
                    broken = True
                    break
                if not piece:
                    break
                total += len(piece)
                if total > max_bytes:
                    raise BodyError(413, "the request body is too large")
                sink.write(piece)
        finally:
            deadline.cancel()
        if broken or (length != CHUNKED and total < length):
            if deadline.expired:
                raise BodyError(408, "the request body did not arrive in time")
            raise BodyError(400, "the request body is shorter than its Content-Length"
                            if not broken else "the request body broke off")
    except BaseException:
        sink.close()
        raise
    sink.seek(0)
    if total <= memory_bytes:  # small: plain bytes (a chunked body starts in a spooled file)
        data = sink.read()
        sink.close()
        return BufferedBody(data, total)
    return BufferedBody(sink, total)
