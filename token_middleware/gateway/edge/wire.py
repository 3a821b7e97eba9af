"""What crosses the wire at the edge: which headers pass in each direction, request ids, and the
JSON body of the gateway's own answers.

What is trusted: nothing from the request. A request header is forwarded unless
:func:`is_stripped` says otherwise: hop-by-hop headers (RFC 9110 §7.6.1), every client-sent
credential or identity claim (:data:`IDENTITY_HEADERS`, :data:`IDENTITY_PREFIXES`), and every
header that asks a server to act on another path or method than the request line's
(:data:`OVERRIDE_HEADERS`). The nginx template drops the same names (a test keeps the lists in
step). A response header passes unless it is hop-by-hop, named by the upstream's
``Connection``, or holds CR, LF or NUL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ENVIRON_REQUEST_ID = "token_middleware.gateway.request_id"

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
        "x-client-ip",
        "true-client-ip",
        "x-request-id",
        "x-authenticated-user",
        "x-email",
        "x-username",
        "x-scopes",
    }
)
#: Headers that ask a server or framework to act on another path or method than the request
#: line's (IIS/ASP.NET, Symfony, Laravel, Rails, Express, ...); never forwarded.
OVERRIDE_HEADERS = frozenset(
    {
        "x-original-url",
        "x-original-uri",
        "x-original-method",
        "x-rewrite-url",
        "x-override-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-http-destinationurl",
        "x-envoy-original-path",
    }
)
IDENTITY_PREFIXES = ("x-user", "x-auth", "x-forwarded-", "x-remote-", "remote-", "proxy-", "x-original-")

#: Response headers the WSGI server sets itself.
RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}\Z")


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


def header_name(environ_key: str) -> str | None:
    if environ_key.startswith("HTTP_"):
        return environ_key[5:].replace("_", "-").lower()
    if environ_key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ_key.replace("_", "-").lower()
    return None


def display_name(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def is_stripped(name: str) -> bool:
    """True for a (lower-case) request header the gateway never forwards."""
    return (
        name in HOP_BY_HOP
        or name in IDENTITY_HEADERS
        or name in OVERRIDE_HEADERS
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



# -- response side ----------------------------------------------------------------------------


def response_headers(upstream_headers: list[tuple[str, str]], rid: str) -> list[tuple[str, str]]:
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


def status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"{status} Unknown"
