"""The forwarding WSGI app: sends an authenticated request to its route's upstream service.

What is trusted: the routes (configuration) and the token that the gateway put in
``environ[ENVIRON_TOKEN]`` after authenticating the client. Nothing the client sent about its
identity is: every ``Authorization`` header and identity header (``X-User*``, ``X-Auth-*``,
``X-Forwarded-User``, ``X-Remote-User``, ``Remote-User``, ``X-Access-Token``, …) and the gateway's
own cookies are removed before ``Authorization: Bearer <minted>`` is set. ``X-Forwarded-*`` and
``Forwarded`` from the client are replaced by the gateway's own, unless the client address is a
trusted proxy. Without a token in the environ, nothing is forwarded (401).

On the wire: path and query are forwarded unchanged; hop-by-hop headers (``Connection`` and the
headers it names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``,
``Proxy-*``) are removed both ways; ``X-Request-ID`` is kept when sane, else generated. Upstream
connections are pooled (keep-alive, :mod:`.upstream`) and bodies are streamed both ways in
chunks. A refused or broken connection becomes 502 and a timeout 504, each with a JSON body.

Hot path: which environ key becomes which forwarded header is worked out once per key and
remembered (bounded); the request head is built as one string and sent in one write.

Example::

    proxy = Proxy(config.routes, timeout=10)
    environ[ENVIRON_TOKEN] = minted;  return proxy(environ, start_response)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from ..config import Route, route_for
from .upstream import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

ENVIRON_TOKEN = "token_middleware.gateway.access_token"
ENVIRON_ROUTE = "token_middleware.gateway.route"
ENVIRON_REQUEST_ID = "token_middleware.gateway.request_id"

CHUNK_SIZE = 64 * 1024

#: Hop-by-hop headers (RFC 9110 §7.6.1), plus ``Expect`` and ``Host`` which the server and
#: the upstream client handle themselves. Any ``Proxy-*`` header is dropped as well.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
    }
)

#: Identity headers a client might send to impersonate someone; never forwarded.
IDENTITY_HEADERS = frozenset(
    {
        "authorization",
        "x-remote-user",
        "remote-user",
        "x-access-token",
        "x-id-token",
        "x-jwt-assertion",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)
IDENTITY_PREFIXES = ("x-user", "x-auth", "x-forwarded-", "x-remote-", "remote-", "proxy-")

#: Response headers the WSGI server sets itself.
RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}\Z")
_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})

_EMPTY_BODY_FRAMING = MappingProxyType({m: "Content-Length: 0\r\n" for m in ("POST", "PUT", "PATCH")})
_NOT_A_HEADER = "\n"  # in Proxy._names: an environ key that is not a header (no name has "\n")
_MAX_NAMES = 512  # environ keys remembered by Proxy._forward_name (client-chosen: bounded)


class UpstreamAborted(Exception):
    """The upstream broke off a response whose status was already sent to the client.

    Raised from the body iterator so the WSGI server drops the connection instead of ending a
    chunked body cleanly: the client sees a truncated response, not a silently short one.
    """


def json_response(
    start_response: StartResponse,
    status: int,
    error: str,
    description: str,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    """A small JSON error response ``{"error": …, "error_description": …}``."""
    body = json.dumps({"error": error, "error_description": description}).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]


def request_id(environ: WSGIEnvironment) -> str:
    """The incoming ``X-Request-ID`` when it is short and plain, else a fresh one."""
    existing = environ.get(ENVIRON_REQUEST_ID)
    if isinstance(existing, str):
        return existing
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    rid = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
    environ[ENVIRON_REQUEST_ID] = rid
    return rid


def client_address(environ: WSGIEnvironment, trusted_proxies: Iterable[str] = ()) -> str:
    """The client's address: ``REMOTE_ADDR``, or the rightmost untrusted ``X-Forwarded-For``
    entry when the request came through a trusted proxy."""
    trusted = set(trusted_proxies)
    remote = str(environ.get("REMOTE_ADDR") or "unknown")
    if remote not in trusted:
        return remote
    forwarded_for = str(environ.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return remote


def path_problem(environ: WSGIEnvironment) -> str | None:
    """Why the request path cannot be forwarded (dot segments, control characters), or None."""
    path = environ.get("PATH_INFO", "")
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    decoded = unquote(raw.partition("?")[0])
    for candidate in (path,) if decoded == path else (path, decoded):
        if _CONTROL.search(candidate):
            return "control characters in the path"
        if "/." in candidate or candidate.startswith("."):
            segments = candidate.split("/")
            if "." in segments or ".." in segments:
                return "dot segments in the path"
    return None


def _header_name(environ_key: str) -> str | None:
    if environ_key.startswith("HTTP_"):
        return environ_key[5:].replace("_", "-").lower()
    if environ_key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ_key.replace("_", "-").lower()
    return None


def _display(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def is_stripped(name: str) -> bool:
    """True for a (lower-case) request header the gateway never forwards."""
    return (
        name in HOP_BY_HOP
        or name in IDENTITY_HEADERS
        or any(name.startswith(p) for p in IDENTITY_PREFIXES)
    )


def strip_cookies(value: str, names: Iterable[str]) -> str:
    """``value`` (a ``Cookie`` header) without the cookies called ``names``."""
    drop = set(names)
    kept = [
        part.strip()
        for part in value.split(";")
        if part.strip() and part.split("=", 1)[0].strip() not in drop
    ]
    return "; ".join(kept)


class BadRequest(ValueError):
    """The request cannot be forwarded as sent (a 400, never a 500)."""


class Proxy:
    """WSGI app forwarding to ``routes``; see the module docstring for what it trusts.

    ``timeout`` is both the connect and the read timeout, in seconds. ``strip_cookie_names`` are
    the gateway's own cookies. ``pool_maxsize`` idle connections are kept per upstream origin;
    beyond that, extra connections are opened and closed rather than waited for.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        timeout: float = 10.0,
        strip_cookie_names: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        pool_maxsize: int = 32,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.routes = tuple(routes)
        self.timeout = timeout
        self.strip_cookie_names = tuple(strip_cookie_names)
        self.trusted_proxies = tuple(trusted_proxies)
        self.chunk_size = chunk_size
        # One pool per origin, shared by the routes that point at it.
        by_origin: dict[tuple[str, str, int], UpstreamPool] = {}
        self.pools: dict[str, UpstreamPool] = {}
        for route in self.routes:
            pool = UpstreamPool(route.upstream, timeout=timeout, maxsize=pool_maxsize)
            pool = by_origin.setdefault((pool.scheme, pool.host, pool.port), pool)
            self.pools[route.upstream] = pool
        self._cookie_names = frozenset(self.strip_cookie_names)
        self._trusted = frozenset(self.trusted_proxies)
        # environ key -> the header name to forward it under, "" for a header that is never
        # forwarded, _NOT_A_HEADER for other keys. Filled as keys are seen, bounded.
        self._names: dict[str, str] = {}

    def close(self) -> None:
        """Close the pooled upstream connections."""
        for pool in self.pools.values():
            pool.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        rid = request_id(environ)
        rid_header = [("X-Request-ID", rid)]
        route = environ.get(ENVIRON_ROUTE)
        if not isinstance(route, Route):
            route = route_for(self.routes, environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        if route is None:
            return json_response(start_response, 404, "not_found", "no route for this path", rid_header)
        token = environ.get(ENVIRON_TOKEN)
        if not isinstance(token, str) or not token:
            return json_response(
                start_response,
                401,
                "unauthorized",
                "authentication required",
                [("WWW-Authenticate", 'Basic realm="gateway"'), *rid_header],
            )
        method = str(environ.get("REQUEST_METHOD", ""))
        if method in REFUSED_METHODS:
            return json_response(
                start_response, 405, "method_not_allowed", f"{method} is not forwarded", rid_header
            )
        pool = self.pools.get(route.upstream)
        if pool is None:  # a Route object this proxy was not built with: nowhere to send it
            return json_response(start_response, 404, "not_found", "no route for this path", rid_header)
        try:
            if not _TOKEN_CHARS.match(method):
                raise BadRequest("invalid method")
            problem = path_problem(environ)
            if problem:
                raise BadRequest(problem)
            lines = [method, " ", self._target(environ, route), " HTTP/1.1\r\nHost: ", pool.host_header, "\r\n"]
            self.add_upstream_headers(lines, environ, token, rid)
            body, framing = self._request_body(environ, method)
            if framing:
                lines.append(framing)
            lines.append("\r\n")
            try:
                head = "".join(lines).encode("latin-1")
            except UnicodeEncodeError:
                raise BadRequest("header values must be ISO-8859-1 text") from None
            response = pool.request(method, head, body, replayable=body is None)
        except BadRequest as exc:
            return json_response(start_response, 400, "invalid_request", str(exc), rid_header)
        except UpstreamUnreachable as exc:
            log.warning("upstream %s unreachable (request %s): %s", route.prefix, rid, exc)
            return json_response(
                start_response, 502, "bad_gateway", "the upstream service is unreachable", rid_header
            )
        except UpstreamTimeout as exc:
            log.warning("upstream %s timed out (request %s): %s", route.prefix, rid, exc)
            return json_response(
                start_response,
                504,
                "gateway_timeout",
                "the upstream service did not answer in time",
                rid_header,
            )
        except UpstreamError as exc:
            log.warning("upstream %s failed (request %s): %s", route.prefix, rid, exc)
            return json_response(
                start_response, 502, "bad_gateway", "the upstream service failed", rid_header
            )
        try:
            start_response(_status_line(response.status), _response_headers(response.headers, rid))
        except BaseException:
            response.close()
            raise
        return _UpstreamBody(response, self.chunk_size, route.prefix, rid)

    # -- request side -------------------------------------------------------------------------

    def _forward_name(self, key: str) -> str:
        """How the environ ``key`` is forwarded: the header name to send it under, ``""`` for a
        header that is never forwarded, :data:`_NOT_A_HEADER` for any other key. Remembered."""
        lower = _header_name(key)
        if lower is None:
            name = _NOT_A_HEADER
        elif is_stripped(lower) or lower == "content-length" or not _TOKEN_CHARS.match(lower):
            name = ""  # never forwarded (body framing is set by _request_body; odd names dropped)
        else:
            name = _display(lower)
        if len(self._names) < _MAX_NAMES:
            self._names[key] = name
        return name

    def add_upstream_headers(self, lines: list[str], environ: WSGIEnvironment, token: str, rid: str) -> None:
        """Append ``Name: value\r\n`` for every header to send upstream: the client's headers
        minus stripped ones, then ``X-Forwarded-*``, ``X-Request-ID`` and the minted token."""
        connection = environ.get("HTTP_CONNECTION")
        connection_named = (
            {t.strip().lower() for t in connection.split(",")} if isinstance(connection, str) else None
        )
        names = self._names
        for key, value in environ.items():
            name = names.get(key)
            if name is None:
                name = self._forward_name(key)
            if name == _NOT_A_HEADER or not isinstance(value, str):
                continue
            if "\n" in value or "\r" in value or "\x00" in value:
                raise BadRequest(f"invalid characters in the {name or _display(str(_header_name(key)))} header")
            if not name or (connection_named and name.lower() in connection_named):
                continue
            if name == "Cookie":
                value = strip_cookies(value, self._cookie_names)
            elif name == "Content-Type" and not value:
                continue
            if value:
                lines += (name, ": ", value, "\r\n")
        remote = str(environ.get("REMOTE_ADDR") or "")
        if remote in self._trusted:
            incoming_for = environ.get("HTTP_X_FORWARDED_FOR", "").strip()
            forwarded_for = f"{incoming_for}, {remote}" if incoming_for else remote
            incoming_proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
            proto = incoming_proto if incoming_proto in ("http", "https") else str(environ.get("wsgi.url_scheme", "http"))
            host = environ.get("HTTP_X_FORWARDED_HOST", "").strip() or environ.get("HTTP_HOST", "")
        else:
            forwarded_for = remote
            proto = str(environ.get("wsgi.url_scheme", "http"))
            host = environ.get("HTTP_HOST", "")
        lines += ("X-Forwarded-For: ", forwarded_for, "\r\nX-Forwarded-Proto: ", proto, "\r\n")
        if host:
            lines += ("X-Forwarded-Host: ", host, "\r\n")
        lines += ("X-Request-ID: ", rid, "\r\nAuthorization: Bearer ", token, "\r\n")

    def upstream_headers(self, environ: WSGIEnvironment, token: str, rid: str) -> dict[str, str]:
        """The headers sent upstream (without ``Host`` and body framing), as a dict."""
        lines: list[str] = []
        self.add_upstream_headers(lines, environ, token, rid)
        return {lines[i]: lines[i + 2] for i in range(0, len(lines), 4)}

    def _request_body(
        self, environ: WSGIEnvironment, method: str
    ) -> tuple[Iterable[bytes] | None, str]:
        """The body to send (already framed) and its framing header line.

        With ``Content-Length``: exactly that many bytes (a short body is a 400). Without it, a
        body the server marks as present (``Transfer-Encoding``, or ``wsgi.input_terminated``
        and a first chunk that is not empty) is forwarded chunked, piece by piece. No body:
        ``Content-Length: 0`` for methods that define one (RFC 9110 §8.6), else nothing.
        """
        no_body = (None, _EMPTY_BODY_FRAMING.get(method, ""))
        stream = environ.get("wsgi.input")
        raw_length = environ.get("CONTENT_LENGTH", "")
        if raw_length:
            if not (raw_length.isascii() and raw_length.isdigit()):
                raise BadRequest("invalid Content-Length")
            length = int(raw_length)
            framing = f"Content-Length: {length}\r\n"
            if length == 0:
                return None, framing
            if stream is None:
                raise BadRequest("request body missing")
            if length <= self.chunk_size:
                data = _read_up_to(stream, length)
                if len(data) < length:
                    raise BadRequest("request body shorter than its Content-Length")
                return (data,), framing
            return _read_exactly(stream, length, self.chunk_size), framing
        if stream is None or not (environ.get("wsgi.input_terminated") or "HTTP_TRANSFER_ENCODING" in environ):
            return no_body
        first = stream.read(self.chunk_size)
        if not first:
            return no_body
        return _chunked(first, stream, self.chunk_size), "Transfer-Encoding: chunked\r\n"

    @staticmethod
    def _target(environ: WSGIEnvironment, route: Route) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if (
            raw.startswith("/")
            and not raw.startswith("//")
            and not _UNSAFE_TARGET.search(raw)
            and route.matches(unquote(raw.split("?", 1)[0]))
        ):
            return str(raw)
        path = quote(
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            safe="/:@!$&'()*+,;=-._~",
        )
        query = environ.get("QUERY_STRING", "")
        if _UNSAFE_TARGET.search(query):
            # CR/LF, NUL, spaces or '#' would break (or smuggle into) the upstream request line.
            raise BadRequest("invalid characters in the query string")
        # Anything else outside RFC 3986's query characters (non-ASCII) is percent-encoded;
        # existing %XX escapes are kept as they are.
        # (WSGI carries the raw bytes as latin-1 text: encode back to those bytes first.)
        query = quote(query.encode("latin-1", "replace"), safe="/?:@!$&'()*+,;=-._~%[]")
        return f"{path}?{query}" if query else path


# -- response side ----------------------------------------------------------------------------


def _response_headers(upstream_headers: list[tuple[str, str]], rid: str) -> list[tuple[str, str]]:
    """The upstream's headers minus hop-by-hop ones (and those its ``Connection`` names), its
    ``X-Request-ID``, ``Date`` and ``Server``; then ours."""
    connection_named: set[str] = set()
    for name, value in upstream_headers:
        if name.lower() == "connection":
            connection_named.update(t.strip().lower() for t in value.split(","))
    headers: list[tuple[str, str]] = []
    for name, value in upstream_headers:
        lower = name.lower()
        if lower in RESPONSE_DROP or lower.startswith("proxy-") or lower in connection_named:
            continue
        if "\r" in value or "\n" in value or "\x00" in value:
            continue
        headers.append((name, value))
    headers.append(("X-Request-ID", rid))
    return headers


_STATUS_LINES = MappingProxyType({s.value: f"{s.value} {s.phrase}" for s in HTTPStatus})


def _status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"{status} Unknown"


def _read_up_to(stream: Any, length: int) -> bytes:
    """Up to ``length`` bytes of ``stream`` (fewer only at its end)."""
    data = stream.read(length)
    while len(data) < length:
        more = stream.read(length - len(data))
        if not more:
            break
        data += more
    return bytes(data)


def _read_exactly(stream: Any, length: int, chunk_size: int) -> Iterator[bytes]:
    """``length`` bytes of ``stream`` in pieces; a short body is a :class:`BadRequest`."""
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(chunk_size, remaining))
        if not chunk:
            raise BadRequest("request body shorter than its Content-Length")
        remaining -= len(chunk)
        yield chunk


def _chunked(first: bytes, stream: Any, chunk_size: int) -> Iterator[bytes]:
    """``first`` and the rest of ``stream`` in HTTP/1.1 chunked framing."""
    chunk = first
    while chunk:
        yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        chunk = stream.read(chunk_size)
    yield b"0\r\n\r\n"


class _UpstreamBody:
    """The upstream response body as a WSGI iterable: chunks as they arrive; ``close()`` returns
    the connection to the pool (or closes it when the body was not read to the end)."""

    __slots__ = ("_response", "_chunk_size", "_prefix", "_rid")

    def __init__(self, response: UpstreamResponse, chunk_size: int, prefix: str, rid: str) -> None:
        self._response = response
        self._chunk_size = chunk_size
        self._prefix = prefix
        self._rid = rid

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.body(self._chunk_size)
        except UpstreamError as exc:
            log.warning(
                "upstream %s broke off its response (request %s): %s", self._prefix, self._rid, exc
            )
            raise UpstreamAborted(f"upstream {self._prefix} broke off its response") from None

    def close(self) -> None:
        self._response.close()
