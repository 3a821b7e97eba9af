"""The forwarding WSGI app: sends an authenticated request to its route's upstream service.

What is trusted: the routes (configuration) and the token that the gateway put in
``environ[ENVIRON_TOKEN]`` after authenticating the client. Nothing the client sent about its
identity is: every ``Authorization`` header and identity header (``X-User*``, ``X-Auth-*``,
``X-Forwarded-User``, ``X-Remote-User``, ``Remote-User``, ``X-Access-Token``, …), every header
that asks a server to use another path or method (``X-Original-URL``, ``X-Rewrite-URL``,
``X-HTTP-Method-Override``, ``X-Method-Override``, …) and the gateway's own cookies are removed
before ``Authorization: Bearer <minted>`` is set. ``X-Forwarded-*`` and ``Forwarded`` from the
client are replaced by the gateway's own, unless the client address is a trusted proxy. Without
a token in the environ, nothing is forwarded (401).

On the wire: path and query are forwarded unchanged; hop-by-hop headers (``Connection`` and the
headers it names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``,
``Proxy-*``) are removed both ways; ``X-Request-ID`` is kept when sane, else generated. The
request body is read to its end first (:mod:`.body`: bounded in size and time, spooled to disk
past a threshold; 413 / 408) and sent with a ``Content-Length``, so an upstream worker is never
held by a slow client; ``GET`` and ``HEAD`` must not have one (400). Upstream calls go through
urllib3 (:mod:`.upstream`), and responses are streamed back as they arrive. A refused or broken
connection becomes 502 and a timeout 504, each with a JSON body.

Example::

    proxy = Proxy(config.routes, timeout=10)
    environ[ENVIRON_TOKEN] = minted;  return proxy(environ, start_response)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from ..config import Route, route_for
from .body import BodyError, BufferedBody, body_framing, read_body
from .wire import (
    ENVIRON_REQUEST_ID,
    HOP_BY_HOP,
    IDENTITY_HEADERS,
    IDENTITY_PREFIXES,
    OVERRIDE_HEADERS,
    display_name,
    header_name,
    is_stripped,
    json_response,
    request_id,
    response_headers,
    status_line,
    strip_cookies,
)
from .upstream import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BODY_MEMORY_BYTES", "BODY_TIMEOUT", "ENVIRON_REQUEST_ID", "ENVIRON_ROUTE", "ENVIRON_TOKEN",
    "HOP_BY_HOP", "IDENTITY_HEADERS", "IDENTITY_PREFIXES", "MAX_BODY_BYTES", "OVERRIDE_HEADERS",
    "REFUSED_METHODS", "BadRequest", "Proxy", "UpstreamAborted", "is_stripped", "json_response",
    "path_problem", "request_id", "strip_cookies",
]

log = logging.getLogger(__name__)

ENVIRON_TOKEN = "token_middleware.gateway.access_token"
ENVIRON_ROUTE = "token_middleware.gateway.route"

CHUNK_SIZE = 64 * 1024
#: Request bodies: the largest accepted (413 beyond), the part kept in memory (the rest is
#: spooled to a temporary file), and the time the whole body may take to arrive (408).
MAX_BODY_BYTES = 1024 * 1024
BODY_MEMORY_BYTES = 64 * 1024
BODY_TIMEOUT = 30.0

_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})

#: Methods that announce an empty body with ``Content-Length: 0`` (RFC 9110 §8.6).
_EMPTY_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NOT_A_HEADER = "\n"  # in Proxy._names: an environ key that is not a header (no name has "\n")
_MAX_NAMES = 512  # environ keys remembered by Proxy._forward_name (client-chosen: bounded)


class UpstreamAborted(Exception):
    """The upstream broke off a response whose status was already sent to the client.

    Raised from the body iterator so the WSGI server drops the connection instead of ending a
    chunked body cleanly: the client sees a truncated response, not a silently short one.
    """


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


class BadRequest(ValueError):
    """The request cannot be forwarded as sent (a 400, never a 500)."""


class Proxy:
    """WSGI app forwarding to ``routes``; see the module docstring for what it trusts.

    ``timeout`` is both the connect and the read timeout, in seconds. ``strip_cookie_names`` are
    the gateway's own cookies. ``pool_maxsize`` connections are kept per upstream origin; beyond
    that, extra connections are opened and closed rather than waited for. ``max_body_bytes``,
    ``body_memory_bytes`` and ``body_timeout`` bound request bodies (:mod:`.body`).
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        timeout: float = 10.0,
        strip_cookie_names: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        pool_maxsize: int = 64,
        chunk_size: int = CHUNK_SIZE,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_memory_bytes: int = BODY_MEMORY_BYTES,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.routes = tuple(routes)
        self.timeout = timeout
        self.strip_cookie_names = tuple(strip_cookie_names)
        self.trusted_proxies = tuple(trusted_proxies)
        self.chunk_size = chunk_size
        self.max_body_bytes = max_body_bytes
        self.body_memory_bytes = body_memory_bytes
        self.body_timeout = body_timeout
        # One pool per origin, shared by the routes that point at it.
        by_origin: dict[tuple[str, str, int], UpstreamPool] = {}
        self.pools: dict[str, UpstreamPool] = {}
        for route in self.routes:
            pool = UpstreamPool(route.upstream, timeout=timeout, maxsize=pool_maxsize)
            existing = by_origin.setdefault(pool.origin, pool)
            if existing is not pool:
                pool.close()
            self.pools[route.upstream] = existing
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
        body: BufferedBody | None = None
        try:
            if not _TOKEN_CHARS.match(method):
                raise BadRequest("invalid method")
            problem = path_problem(environ)
            if problem:
                raise BadRequest(problem)
            target = self._target(environ, route)
            headers = self.upstream_headers(environ, token, rid)
            length = body_framing(environ, method)
            body = read_body(
                environ, length, max_bytes=self.max_body_bytes,
                memory_bytes=self.body_memory_bytes, timeout=self.body_timeout,
                chunk_size=self.chunk_size,
            )
            if body is not None:
                headers["Content-Length"] = str(body.length)
            elif method in _EMPTY_BODY_METHODS:
                headers["Content-Length"] = "0"
            response = pool.request(method, target, headers, None if body is None else body.data)
        except BadRequest as exc:
            return json_response(start_response, 400, "invalid_request", str(exc), rid_header)
        except BodyError as exc:
            return json_response(start_response, exc.status, "invalid_request", exc.description, rid_header)
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
        finally:
            if body is not None:
                body.close()
        try:
            start_response(status_line(response.status), response_headers(response.headers, rid))
        except BaseException:
            response.close()
            raise
        return _UpstreamBody(response, self.chunk_size, route.prefix, rid)

    # -- request side -------------------------------------------------------------------------

    def _forward_name(self, key: str) -> str:
        """How the environ ``key`` is forwarded: the header name to send it under, ``""`` for a
        header that is never forwarded, :data:`_NOT_A_HEADER` for any other key. Remembered."""
        lower = header_name(key)
        if lower is None:
            name = _NOT_A_HEADER
        elif is_stripped(lower) or lower == "content-length" or not _TOKEN_CHARS.match(lower):
            name = ""  # never forwarded (the body's length is set from the buffered body)
        else:
            name = display_name(lower)
        if len(self._names) < _MAX_NAMES:
            self._names[key] = name
        return name

    def upstream_headers(self, environ: WSGIEnvironment, token: str, rid: str) -> dict[str, str]:
        """Every header to send upstream but ``Host`` and the body's length: the client's headers
        minus stripped ones, then ``X-Forwarded-*``, ``X-Request-ID`` and the minted token."""
        connection = environ.get("HTTP_CONNECTION")
        connection_named = (
            {t.strip().lower() for t in connection.split(",")} if isinstance(connection, str) else None
        )
        names = self._names
        headers: dict[str, str] = {}
        for key, value in environ.items():
            name = names.get(key)
            if name is None:
                name = self._forward_name(key)
            if name == _NOT_A_HEADER or not isinstance(value, str):
                continue
            if "\n" in value or "\r" in value or "\x00" in value:
                raise BadRequest(f"invalid characters in the {name or display_name(str(header_name(key)))} header")
            if not name or (connection_named and name.lower() in connection_named):
                continue
            if name == "Cookie":
                value = strip_cookies(value, self._cookie_names)
            if value:
                try:
                    value.encode("latin-1")
                except UnicodeEncodeError:
                    raise BadRequest("header values must be ISO-8859-1 text") from None
                headers[name] = value
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
        headers["X-Forwarded-For"] = forwarded_for
        headers["X-Forwarded-Proto"] = proto
        if host:
            headers["X-Forwarded-Host"] = host
        headers["X-Request-ID"] = rid
        headers["Authorization"] = f"Bearer {token}"
        return headers

    @staticmethod
    def _target(environ: WSGIEnvironment, route: Route) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if (
            raw.startswith("/")
            and not raw.startswith("//")
            and not _UNSAFE_TARGET.search(raw)
            and raw.isascii()
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
