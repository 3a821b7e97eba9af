"""Loopback servers for tests: a JWKS (with discovery) and an RFC 7662 introspection endpoint.

Trusted: nothing leaves the machine. Each server is a standard-library ``ThreadingHTTPServer``
on 127.0.0.1 and a free port, started by ``with`` (or :meth:`start`) and stopped by the end of
the block; nothing here imports a web framework.

:class:`LoopbackJWKS` serves the public keys of :class:`~token_middleware.core.issuer.SigningKey`
objects at ``/jwks`` and a discovery document at ``/.well-known/openid-configuration``::

    with LoopbackJWKS([key]) as jwks:
        settings = {"ISSUER": jwks.issuer, "AUDIENCE": "orders-service", "JWKS_URL": jwks.jwks_url}

:class:`LoopbackIntrospection` is an RFC 7662 endpoint that knows the opaque tokens you
:meth:`~LoopbackIntrospection.issue` (or :meth:`~LoopbackIntrospection.register`) until you
:meth:`~LoopbackIntrospection.revoke` them. It demands the client credential of
:meth:`~LoopbackIntrospection.settings` as HTTP Basic, and can be told to misbehave (``mode``)::

    with LoopbackIntrospection() as endpoint:
        app.config.update(endpoint.flask_config(ISSUER=endpoint.issuer, AUDIENCE="orders-service"))
        token = endpoint.issue(scope="orders:read", sub="alice")
        client.get("/orders", headers=bearer(token))      # introspected, then cached
        endpoint.revoke(token)

Both count the requests they get (``requests``, on the server side), so a test can prove that a
cache hit made no call.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..core.introspection import basic_credential
from ..core.issuer import SigningKey, jwks_document
from ..core.settings import PREFIX

__all__ = ["INTROSPECTION_MODES", "LoopbackIntrospection", "LoopbackJWKS"]

#: ``ok``: answer; ``500``: fail; ``not_json``: a HTML page; ``no_active``: ``{}``;
#: ``hang``: answer nothing until released; ``redirect``: 307 to ``redirect_to``.
INTROSPECTION_MODES = ("ok", "500", "not_json", "no_active", "hang", "redirect")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # never print tokens or credentials to the test output

    def send(self, status: int, body: bytes, content_type: str = "application/json",
             headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.owner._get(self)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.server.owner._post(self)


class _Loopback:
    """Start, stop and address one loopback server."""

    def __init__(self) -> None:
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._release = threading.Event()
        #: Requests received, by path (counted on the server side).
        self.requests: dict[str, int] = {}

    def start(self) -> Any:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._release.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: from now on a connection is refused (a real outage)."""
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _count(self, path: str) -> None:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1

    def _get(self, handler: _Handler) -> None:
        self._count(urlsplit(handler.path).path)
        handler.send(404, b'{"error":"not_found"}')

    def _post(self, handler: _Handler) -> None:
        self._get(handler)


class LoopbackJWKS(_Loopback):
    """A JWKS at ``/jwks`` and a discovery document naming it, for ``keys``.

    ``issuer`` is the discovery document's ``issuer`` (default: the server's base URL, so that
    ``ISSUER=jwks.issuer`` works with discovery). :meth:`rotate` changes the keys served.
    """

    def __init__(self, keys: Iterable[SigningKey], *, issuer: str | None = None) -> None:
        super().__init__()
        self._keys = list(keys)
        self._issuer = issuer

    @property
    def issuer(self) -> str:
        return self._issuer or self.url

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks"

    def rotate(self, keys: Iterable[SigningKey]) -> None:
        with self._lock:
            self._keys = list(keys)

    def _get(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        self._count(path)
        if path == "/.well-known/openid-configuration":
            document: Any = {"issuer": self.issuer, "jwks_uri": self.jwks_url}
        elif path == "/jwks":
            with self._lock:
                document = jwks_document(self._keys)
        else:
            handler.send(404, b'{"error":"not_found"}')
            return
        handler.send(200, json.dumps(document).encode())


class LoopbackIntrospection(_Loopback):
    """An RFC 7662 endpoint at ``/introspect`` on loopback. See the module docstring.

    Every answer follows RFC 7662 §2.2: ``{"active": false}`` for a token it does not know, that
    was revoked or whose ``exp`` has passed; ``{"active": true, …members}`` otherwise. A request
    without the right HTTP Basic credential gets 401 ``invalid_client``.
    """

    def __init__(
        self,
        *,
        client_id: str = "test-service",
        client_secret: str | None = None,
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        #: The endpoint's own clock, for ``exp``: share a test's fake clock with the service.
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret if client_secret is not None else secrets.token_urlsafe(24)
        self._issuer = issuer
        self._tokens: dict[str, dict[str, Any]] = {}
        self._mode = "ok"
        #: Where ``mode = "redirect"`` sends the client.
        self.redirect_to = "http://127.0.0.1:9/introspect"
        #: The form fields of every introspection request, in order (``token`` included).
        self.forms: list[dict[str, str]] = []
        #: Set by each request that found the credential wrong.
        self.refused_credentials = 0
        #: While ``mode == "hang"``, a request waits this long (or until :meth:`release`).
        self.hang_seconds = 30.0
        #: Set when a request arrives in ``hang`` mode (a test waits on it, never on a timer).
        self.hanging = threading.Event()

    # -- configuration ----------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The ``iss`` of issued tokens: the server's base URL unless given."""
        return self._issuer or self.url

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in INTROSPECTION_MODES:
            raise ValueError(f"mode must be one of {INTROSPECTION_MODES}")
        self._mode = value

    def release(self) -> None:
        """Let requests waiting in ``hang`` mode answer now (as ``ok``)."""
        self._release.set()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``INTROSPECTION_URL``, ``CLIENT_ID`` and ``CLIENT_SECRET`` for this endpoint, plus ``overrides``."""
        return {
            "INTROSPECTION_URL": self.introspection_url,
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.client_secret,
            **overrides,
        }

    def flask_config(self, **overrides: Any) -> dict[str, Any]:
        """The same settings as ``app.config`` keys (``TOKEN_MIDDLEWARE_INTROSPECTION_URL`` …)."""
        return {PREFIX + name: value for name, value in self.settings(**overrides).items()}

    # -- tokens -----------------------------------------------------------------------------

    def issue(
        self,
        *,
        scope: str | Iterable[str] = "",
        sub: str | None = "alice",
        client_id: str = "test-client",
        ttl: int = 300,
        **members: Any,
    ) -> str:
        """A new random opaque token, active for ``ttl`` seconds; ``members`` add to its answer.

        The answer has ``scope``, ``client_id``, ``sub``, ``iss`` (this server's :attr:`issuer`),
        ``iat``, ``exp`` and ``token_type``; a member set to ``None`` is left out.
        """
        token = secrets.token_urlsafe(32)
        now = int(self.clock())
        answer: dict[str, Any] = {
            "scope": scope if isinstance(scope, str) else " ".join(scope),
            "client_id": client_id,
            "sub": sub,
            "iss": self.issuer,
            "iat": now,
            "exp": now + ttl,
            "token_type": "Bearer",
            **members,
        }
        self.register(token, **{k: v for k, v in answer.items() if v is not None})
        return token

    def register(self, token: str, **members: Any) -> None:
        """Answer ``{"active": true, **members}`` for ``token`` (until revoked or past ``exp``)."""
        with self._lock:
            self._tokens[token] = dict(members)

    def revoke(self, token: str) -> None:
        """From now on, ``token`` is ``active: false``."""
        with self._lock:
            self._tokens.pop(token, None)

    def answer_for(self, token: str) -> dict[str, Any]:
        """What the endpoint answers about ``token`` right now."""
        with self._lock:
            members = self._tokens.get(token)
        exp = members.get("exp") if members else None
        if members is None or (isinstance(exp, (int, float)) and exp < self.clock()):
            return {"active": False}
        return {"active": True, **members}

    # -- the endpoint -----------------------------------------------------------------------

    def _post(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        self._count(path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(min(length, 1 << 20))
        if path != "/introspect":
            handler.send(404, b'{"error":"not_found"}')
            return
        expected = basic_credential(self.client_id, self.client_secret)
        if not secrets.compare_digest(handler.headers.get("Authorization", ""), expected):
            with self._lock:
                self.refused_credentials += 1
            handler.send(401, b'{"error":"invalid_client"}', headers={"WWW-Authenticate": 'Basic realm="introspection"'})
            return
        if "application/x-www-form-urlencoded" not in (handler.headers.get("Content-Type") or ""):
            handler.send(400, b'{"error":"invalid_request"}')
            return
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii", "replace"), keep_blank_values=True).items()}
        with self._lock:
            self.forms.append(form)
        mode = self._mode
        if mode == "hang":
            self.hanging.set()
            self._release.wait(self.hang_seconds)
        elif mode == "500":
            handler.send(500, b"internal error", "text/plain")
            return
        elif mode == "not_json":
            handler.send(200, b"<!doctype html><h1>Sign in</h1>", "text/html")
            return
        elif mode == "no_active":
            handler.send(200, b"{}")
            return
        elif mode == "redirect":
            handler.send(307, b"", headers={"Location": self.redirect_to})
            return
        if "token" not in form:
            handler.send(400, b'{"error":"invalid_request"}')
            return
        handler.send(200, json.dumps(self.answer_for(form["token"])).encode(),
                     headers={"Cache-Control": "no-store"})
