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
connections are pooled (urllib3, keep-alive) and bodies are streamed both ways in chunks. A
refused or broken connection becomes 502 and a timeout 504, each with a JSON body.

Example::

    proxy = Proxy(config.routes, timeout=10)
    environ[ENVIRON_TOKEN] = minted;  return proxy(environ, start_response)
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import urllib3
from urllib3.exceptions import (
    HTTPError as Urllib3Error,
)
from urllib3.exceptions import (
    NewConnectionError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from .config import Route

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

ENVIRON_TOKEN = "token_middleware.gateway.access_token"
ENVIRON_ROUTE = "token_middleware.gateway.route"
ENVIRON_REQUEST_ID = "token_middleware.gateway.request_id"

CHUNK_SIZE = 64 * 1024

#: Hop-by-hop headers (RFC 9110 §7.6.1), plus ``Expect`` and ``Host`` which the server and
#: urllib3 handle themselves. Any ``Proxy-*`` header is dropped as well.
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
_FORBIDDEN_VALUE_CHARS = re.compile(r"[\r\n\x00]")
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f#]")

REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})


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
    rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
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
    for candidate in (path, unquote(raw.split("?", 1)[0])):
        if any(ord(c) < 0x20 or c == "\x7f" for c in candidate):
            return "control characters in the path"
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
    the gateway's own cookies. ``pool_maxsize`` connections are kept per upstream host; beyond
    that, extra connections are opened and closed rather than waited for.
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
        self.pool = urllib3.PoolManager(
            num_pools=max(4, len(self.routes) * 2),
            maxsize=pool_maxsize,
            block=False,
            retries=False,
        )
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)

    def close(self) -> None:
        """Close the pooled upstream connections."""
        self.pool.clear()

    def route_for(self, path: str) -> Route | None:
        """The route with the longest matching prefix, or None."""
        best: Route | None = None
        for route in self.routes:
            if route.matches(path) and (best is None or len(route.prefix) > len(best.prefix)):
                best = route
        return best

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        rid = request_id(environ)
        rid_header = [("X-Request-ID", rid)]
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        route = environ.get(ENVIRON_ROUTE)
        if not isinstance(route, Route):
            route = self.route_for(path)
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
        try:
            if not _TOKEN_CHARS.match(method):
                raise BadRequest("invalid method")
            problem = path_problem(environ)
            if problem:
                raise BadRequest(problem)
            headers = self.upstream_headers(environ, token, rid)
            body = self._request_body(environ)
        except BadRequest as exc:
            return json_response(start_response, 400, "invalid_request", str(exc), rid_header)

        url = route.upstream + self._target(environ, route)
        try:
            response = self.pool.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=self._timeout,
            )
        except NewConnectionError as exc:
            log.warning("upstream %s unreachable (request %s): %s", route.prefix, rid, type(exc).__name__)
            return json_response(
                start_response, 502, "bad_gateway", "the upstream service is unreachable", rid_header
            )
        except Urllib3Timeout as exc:
            log.warning("upstream %s timed out (request %s): %s", route.prefix, rid, type(exc).__name__)
            return json_response(
                start_response,
                504,
                "gateway_timeout",
                "the upstream service did not answer in time",
                rid_header,
            )
        except Urllib3Error as exc:
            log.warning("upstream %s failed (request %s): %s", route.prefix, rid, type(exc).__name__)
            return json_response(
                start_response, 502, "bad_gateway", "the upstream service failed", rid_header
            )

        start_response(_status_line(response.status), self._response_headers(response, rid))
        return _UpstreamBody(response, self.chunk_size, route.prefix, rid)

    # -- request side -------------------------------------------------------------------------

    def upstream_headers(self, environ: WSGIEnvironment, token: str, rid: str) -> dict[str, str]:
        """The headers to send upstream: client headers minus stripped ones, plus ours."""
        connection_named = {
            t.strip().lower() for t in environ.get("HTTP_CONNECTION", "").split(",") if t.strip()
        }
        headers: dict[str, str] = {}
        for key, value in environ.items():
            name = _header_name(key)
            if name is None or not isinstance(value, str):
                continue
            if _FORBIDDEN_VALUE_CHARS.search(value):
                raise BadRequest(f"invalid characters in the {_display(name)} header")
            if is_stripped(name) or name in connection_named:
                continue
            if name in ("content-type", "content-length") and not value:
                continue
            if name == "cookie":
                value = strip_cookies(value, self.strip_cookie_names)
                if not value:
                    continue
            headers[_display(name)] = value
        remote = str(environ.get("REMOTE_ADDR") or "")
        trusted = remote in self.trusted_proxies
        incoming_for = environ.get("HTTP_X_FORWARDED_FOR", "").strip()
        headers["X-Forwarded-For"] = f"{incoming_for}, {remote}" if trusted and incoming_for else remote
        incoming_proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
        headers["X-Forwarded-Proto"] = (
            incoming_proto
            if trusted and incoming_proto in ("http", "https")
            else str(environ.get("wsgi.url_scheme", "http"))
        )
        incoming_host = environ.get("HTTP_X_FORWARDED_HOST", "").strip()
        host = incoming_host if trusted and incoming_host else environ.get("HTTP_HOST", "")
        if host:
            headers["X-Forwarded-Host"] = host
        headers["X-Request-ID"] = rid
        headers["Authorization"] = f"Bearer {token}"
        return headers

    def _request_body(self, environ: WSGIEnvironment) -> Iterator[bytes] | bytes | None:
        stream = environ.get("wsgi.input")
        raw_length = environ.get("CONTENT_LENGTH", "")
        if raw_length:
            if not raw_length.isdigit():
                raise BadRequest("invalid Content-Length")
            length = int(raw_length)
            if length == 0 or stream is None:
                return b"" if length == 0 else None
            return _read_exactly(stream, length, self.chunk_size)
        if environ.get("wsgi.input_terminated") and stream is not None:
            return _read_all(stream, self.chunk_size)  # chunked upload: forwarded chunked
        return None

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
        return f"{path}?{query}" if query else path

    # -- response side ------------------------------------------------------------------------

    @staticmethod
    def _response_headers(response: Any, rid: str) -> list[tuple[str, str]]:
        connection_named = {
            t.strip().lower() for t in response.headers.get("Connection", "").split(",") if t.strip()
        }
        headers: list[tuple[str, str]] = []
        for name, value in response.headers.items():
            lower = name.lower()
            if lower in RESPONSE_DROP or lower.startswith("proxy-") or lower in connection_named:
                continue
            if lower == "x-request-id" or _FORBIDDEN_VALUE_CHARS.search(value):
                continue
            headers.append((name, value))
        headers.append(("X-Request-ID", rid))
        return headers


def _status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


def _read_exactly(stream: Any, length: int, chunk_size: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(chunk_size, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        yield chunk


def _read_all(stream: Any, chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        yield chunk


class _UpstreamBody:
    """The upstream response body as a WSGI iterable: chunks as they arrive; ``close()`` returns
    the connection to the pool (or closes it when the body was not read to the end)."""

    def __init__(self, response: Any, chunk_size: int, prefix: str, rid: str) -> None:
        self._response = response
        self._chunk_size = chunk_size
        self._prefix = prefix
        self._rid = rid
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._response.stream(self._chunk_size, decode_content=False):
                if chunk:
                    yield chunk
        except Urllib3Error as exc:
            log.warning(
                "upstream %s broke off its response (request %s): %s",
                self._prefix,
                self._rid,
                type(exc).__name__,
            )
            raise UpstreamAborted(f"upstream {self._prefix} broke off its response") from None
        self._complete = True

    def close(self) -> None:
        if not self._complete:
            self._response.close()
        self._response.release_conn()
