"""Fetching documents over HTTP(S) for the core: JWKS and discovery documents, bounded and explained.

Trusted: the URLs the deployer configured, and nothing a fetched document says beyond what
callers check (:func:`fetch_discovery` checks ``issuer``; :func:`discovered_url` the shape of a
URL member). Every GET is bounded by a whole-response deadline and a size limit
(:data:`MAX_JWKS_BYTES`). A failure raises :class:`FetchError` whose message is the cause in
operator terms, naming the URL ("connection refused by 127.0.0.1:9 fetching …"); values taken
from a remote document are quoted and shortened (:func:`_shown`) before they reach a message.
Messages go to logs and :attr:`KeysUnavailable.cause`, never to HTTP clients.

Used by the key source (:mod:`.keys`, which re-exports these names), the token exchange, the
introspection client and the OAuth POST helper.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

MAX_JWKS_BYTES = 512 * 1024

class FetchError(Exception):
    """A key or discovery document could not be fetched or parsed.

    The message is the cause in operator terms, naming the URL (for logs and
    :attr:`KeysUnavailable.cause`); it is never sent to HTTP clients. ``status`` is the HTTP
    status when the server answered with one other than 200.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _max_age(cache_control: str | None) -> int | None:
    if not cache_control:
        return None
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for d in directives:
        if d.startswith("max-age="):
            try:
                return max(0, int(d[8:].strip('"')))
            except ValueError:
                return None
    return None


def _shown(value: Any, limit: int = 120) -> str:
    """A value from a remote document, quoted and shortened: safe to put in a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _host_port(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _network_cause(exc: BaseException, url: str, timeout: float) -> str:
    """Why a fetch of ``url`` failed, from the exception urllib or the socket raised."""
    reason: Any = getattr(exc, "reason", exc)  # URLError wraps the socket's error
    where = _host_port(url)
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s fetching {url}"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {where} fetching {url}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host of {url} ({reason.strerror or reason})"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted ({reason.verify_message}) fetching {url}"
    if isinstance(reason, (http.client.HTTPException, ConnectionResetError)):
        return f"{where} closed the connection or did not answer HTTP fetching {url}"
    text = (reason.strerror if isinstance(reason, OSError) else None) or str(reason) or type(reason).__name__
    return f"cannot fetch {url}: {text}"


def http_get_json(url: str, timeout: float, max_bytes: int = MAX_JWKS_BYTES) -> tuple[Any, str | None]:
    """GET ``url`` and parse JSON, within ``timeout`` seconds overall. Returns (document, Cache-Control).

    Raises :class:`FetchError` naming the cause and the URL.
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "token-middleware"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured URL)
            if response.status != 200:
                raise FetchError(f"HTTP {response.status} from {url}", status=response.status)
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out after {timeout:g} s fetching {url}")
                chunk = response.read1(16384)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"the response from {url} is larger than {max_bytes // 1024} KiB")
                chunks.append(chunk)
            cache_control = response.headers.get("Cache-Control")
            content_type = response.headers.get("Content-Type") or ""
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"HTTP {exc.code} from {url}", status=exc.code) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise FetchError(_network_cause(exc, url, timeout)) from None
    try:
        return json.loads(b"".join(chunks)), cache_control
    except (ValueError, RecursionError):
        served = f" (Content-Type {_shown(content_type, 60)})" if "json" not in content_type.lower() else ""
        raise FetchError(f"the response from {url} is not JSON{served}") from None


Fetcher = Callable[[str, float], "tuple[Any, str | None]"]


def fetch_discovery(issuer: str, fetch: Fetcher, timeout: float) -> tuple[str, Mapping[str, Any]]:
    """``(url, document)``: ``issuer``'s OpenID discovery document, whose ``issuer`` is checked.

    The one reader of discovery documents: the key source takes ``jwks_uri`` from it, the token
    exchange (:mod:`token_middleware.core.exchange`) ``token_endpoint``. Raises
    :class:`FetchError` naming the cause.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        document, _ = fetch(url, timeout)
    except FetchError as exc:
        if exc.status == 404:
            raise FetchError(f"{exc}: is ISSUER right? Set JWKS_URL if the issuer publishes "
                             "no discovery document") from None
        raise
    if not isinstance(document, Mapping):
        raise FetchError(f"discovery document at {url} is not a JSON object")
    # OpenID Connect Discovery 1.0 §4.3: the issuer in the document MUST match.
    named = document.get("issuer")
    if named != issuer:
        slash = (" (they differ only by a trailing slash)"
                 if isinstance(named, str) and named.rstrip("/") == issuer.rstrip("/") else "")
        raise FetchError(f"discovery document at {url} names issuer {_shown(named)} but ISSUER is "
                         f"{issuer!r}{slash}: set ISSUER to exactly the issuer the document names")
    return url, document


def discovered_url(document: Mapping[str, Any], name: str, url: str) -> str:
    """The URL member ``name`` of the discovery document fetched from ``url``; raises :class:`FetchError`."""
    value = document.get(name)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) \
            or len(value) > 2048 or not value.isprintable() or " " in value:
        got = f" (it names {_shown(value)})" if value is not None else ""
        raise FetchError(f"discovery document at {url} has no usable {name}{got}")
    return value


def _public_url(url: str | None) -> str | None:
    """``url`` without credentials (``user:password@``), for spans and events."""
    if url is None or "@" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
