"""The gateway as one WSGI app: authenticate the client, mint the token, forward the request.

What is trusted: the configuration, the keys directory and the users file. From a request, only
two things can establish who the caller is (:mod:`.authn`): HTTP Basic checked against the users
file, after the failed-login limit for that user name (:mod:`.limits`), or the gateway's own
signed session cookie. Anything else, including ``Authorization: Bearer …``, gets 401 with
``WWW-Authenticate: Basic realm="gateway"`` and nothing is forwarded. Cookie-authenticated unsafe
requests must come from the gateway's own origin, and the login and logout forms carry CSRF
tokens. Before any of that, a request with ambiguous body framing or a body on ``GET``/``HEAD``
gets 400 (:mod:`.edge.body`), whatever its path.

Endpoints:

======================================== ======================================================
``GET /.well-known/jwks.json``           public keys (current and recently retired)
``GET /.well-known/openid-configuration`` discovery: ``issuer``, ``jwks_uri``, algorithms
``GET|POST /login``, ``POST /logout``    the login form and the session cookie
``GET /app``, ``GET /app.js``            a page that calls ``/orders`` and ``/orders/chain``
``* /_auth``                             nginx ``auth_request``: 200 with ``X-Access-Token``
                                         and ``X-Accel-Expires`` (how long nginx may cache it)
``GET /healthz``                         liveness
``POST /oauth2/token``                   RFC 8693 token exchange for services (:mod:`.issuing.exchange`),
                                         when ``GATEWAY_CLIENTS_FILE`` is set (404 otherwise)
``GET /metrics``                         the gateway's Prometheus counters (:mod:`.metrics`);
                                         404 without prometheus_client; never forwarded
``* <route prefix>/…``                   forwarded with ``Authorization: Bearer <minted>``
======================================== ======================================================

Example::

    app = create_app(GatewayConfig.from_env(os.environ))     # gunicorn module:app
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from .authn import ClientAuth, Principal, Refusal, parse_basic
from .browser import BrowserPages
from .config import GatewayConfig, Route
from .edge.body import BodyError, body_framing, read_body
from .edge.proxy import (
    ENVIRON_ROUTE,
    ENVIRON_TOKEN,
    REFUSED_METHODS,
    Proxy,
    json_response,
    path_problem,
    request_id,
)
from .issuing import wellknown
from .issuing.exchange import TOKEN_PATH, ClientStore, TokenExchange
from .issuing.keystore import KeyStore
from .issuing.minting import TokenMinter
from .limits import FailureStore, LoginLimiter, MemoryFailureStore
from .metrics import GatewayMetrics, gateway_metrics
from .sessions import SessionCodec
from .users import UserStore
from .. import metrics as token_metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Gateway", "Principal", "Refusal", "create_app", "parse_basic"]

MAX_FORM_BYTES = 16 * 1024

#: The answer for a path under no route (the same in the Python edge and through nginx).
NO_ROUTE = Refusal(404, "not_found", "no route for this path")

#: The gateway's own Prometheus endpoint: always answered here (404 with metrics off), never
#: forwarded, even if a route prefix would cover it.
METRICS_PATH = "/metrics"



class Gateway:
    """The gateway WSGI app. Everything it owns (keys, users, caches, pool) is per instance."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        keystore: KeyStore | None = None,
        users: UserStore | None = None,
        clock: Callable[[], float] = time.time,
        metrics: GatewayMetrics | bool = True,
        clients: ClientStore | None = None,
    ) -> None:
        self.config = config
        #: The gateway's counters (:mod:`.metrics`); ``None`` without prometheus_client or with
        #: ``metrics=False``. ``True``: prometheus_client's default registry.
        self.metrics: GatewayMetrics | None = (
            metrics if isinstance(metrics, GatewayMetrics) else gateway_metrics() if metrics else None
        )
        self.keystore = keystore or KeyStore(
            config.keys_dir,
            alg=config.alg,
            token_ttl=config.token_ttl,
            check_interval=config.key_check_interval,
        )
        self.users = users or UserStore.from_file(config.users_file)
        self.sessions = SessionCodec(self.keystore.session_secret(), ttl=config.session_ttl, clock=clock)
        self.limiter = LoginLimiter(
            _failure_store(config.redis_url),
            max_failures=config.login_max_failures,
            max_failures_per_address=config.login_max_failures_per_address,
            window=float(config.login_window),
        )
        self.clock = clock
        self.minter = TokenMinter(config.issuer, self.keystore, ttl=config.token_ttl, clock=clock,
                                  on_mint=self.metrics.minted if self.metrics is not None else None)
        cookie_prefix = "__Host-" if config.secure_cookies else ""
        self.session_cookie = f"{cookie_prefix}gw_session"
        self.csrf_cookie = f"{cookie_prefix}gw_csrf"
        self.auth = ClientAuth(
            users=self.users,
            sessions=self.sessions,
            limiter=self.limiter,
            session_cookie=self.session_cookie,
            issuer=config.issuer,
            trusted_proxies=config.trusted_proxies,
        )
        self.pages = BrowserPages(config, self.users, self.sessions, self.auth,
                                  session_cookie=self.session_cookie, csrf_cookie=self.csrf_cookie)
        self.pages.metrics = self.metrics
        self.proxy = Proxy(
            config.routes,
            timeout=config.upstream_timeout,
            strip_cookie_names=(self.session_cookie, self.csrf_cookie),
            trusted_proxies=config.trusted_proxies,
            max_body_bytes=config.max_body_bytes,
            body_memory_bytes=config.body_memory_bytes,
            body_timeout=config.body_timeout,
        )
        if clients is None and config.clients_file is not None:
            clients = ClientStore.from_file(config.clients_file)
        #: The token endpoint (:mod:`.issuing.exchange`), or ``None``: no clients, no exchange.
        self.token_exchange: TokenExchange | None = (
            TokenExchange(config.issuer, self.keystore, clients, ttl=config.token_ttl, clock=clock)
            if clients is not None else None
        )
        self._endpoints: dict[str, tuple[frozenset[str], Callable[[Request], Response]]] = {
            wellknown.JWKS_PATH: (frozenset({"GET", "HEAD"}), self.jwks),
            wellknown.DISCOVERY_PATH: (frozenset({"GET", "HEAD"}), self.discovery),
            "/login": (frozenset({"GET", "HEAD", "POST"}), self.pages.login),
            "/logout": (frozenset({"POST"}), self.pages.logout),
            "/app": (frozenset({"GET", "HEAD"}), self.pages.app_page),
            "/app.js": (frozenset({"GET", "HEAD"}), self.pages.app_js),
            "/healthz": (frozenset({"GET", "HEAD"}), self.healthz),
            METRICS_PATH: (frozenset({"GET", "HEAD"}), self.prometheus_metrics),
            "/": (frozenset({"GET", "HEAD"}), self.pages.index),
        }
        if self.token_exchange is not None:
            self._endpoints[TOKEN_PATH] = (frozenset({"POST"}), self.token_endpoint)

    def close(self) -> None:
        """Release the upstream connection pool (tests; gunicorn just exits)."""
        self.proxy.close()

    # -- dispatch -----------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        rid = request_id(environ)
        header_bytes = sum(
            len(k) + len(v) for k, v in environ.items() if k.startswith("HTTP_") and isinstance(v, str)
        )
        if header_bytes > self.config.max_request_header_bytes:
            return json_response(
                start_response, 431, "invalid_request", "request headers too large", [("X-Request-ID", rid)]
            )
        path = environ.get("PATH_INFO") or "/"
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            length = body_framing(environ, method)  # ambiguous framing, a body on GET/HEAD: 400
        except BodyError as exc:
            return json_response(
                start_response, exc.status, "invalid_request", exc.description, [("X-Request-ID", rid)]
            )
        try:
            if path == "/_auth":
                return self.auth_request(environ, start_response)
            endpoint = self._endpoints.get(path)
            if endpoint is not None:
                allowed, handler = endpoint
                if method not in allowed:
                    return json_response(
                        start_response,
                        405,
                        "method_not_allowed",
                        f"use {', '.join(sorted(allowed))}",
                        [("Allow", ", ".join(sorted(allowed))), ("X-Request-ID", rid)],
                    )
                if length:  # the login form: read whole first, bounded in size and time
                    try:
                        self._buffer_form(environ, length)
                    except BodyError as exc:
                        return json_response(
                            start_response, exc.status, "invalid_request", exc.description,
                            [("X-Request-ID", rid)],
                        )
                request = Request(environ)
                request.max_content_length = MAX_FORM_BYTES * 4
                request.max_form_memory_size = MAX_FORM_BYTES
                response = handler(request)
                response.headers["X-Request-ID"] = rid
                return response(environ, start_response)
            route = self.config.route_for(environ.get("SCRIPT_NAME", "") + path)
            if route is not None:
                return self.forward(environ, start_response, route)
            return self._refuse(start_response, NO_ROUTE, environ)
        except HTTPException as exc:  # werkzeug's own 4xx (body too large, bad form encoding)
            code = exc.code or 400
            return json_response(
                start_response,
                code if 400 <= code < 500 else 400,
                "invalid_request",
                exc.name,
                [("X-Request-ID", rid)],
            )

    def _buffer_form(self, environ: WSGIEnvironment, length: int) -> None:
        """Replace the request body of one of the gateway's own endpoints by its bytes, read
        with the same bounds as a forwarded body (a slow client never holds a worker)."""
        body = read_body(environ, length, max_bytes=MAX_FORM_BYTES * 4,
                         memory_bytes=MAX_FORM_BYTES * 4, timeout=self.config.body_timeout)
        data = b"" if body is None else body.data
        assert isinstance(data, bytes)  # memory_bytes == max_bytes: never a file
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        environ.pop("HTTP_TRANSFER_ENCODING", None)

    def authenticate(self, environ: WSGIEnvironment, method: str) -> Principal | Refusal:
        """The caller from Basic credentials or the session cookie, or why not (:mod:`.authn`)."""
        return self.auth.authenticate(environ, method)

    # -- forwarding and nginx auth_request ----------------------------------------------------

    def forward(
        self, environ: WSGIEnvironment, start_response: StartResponse, route: Route
    ) -> Iterable[bytes]:
        """Authenticate, mint (or reuse) the token for this route, and forward."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        result = self.authenticate(environ, method)
        if isinstance(result, Refusal):
            return self._refuse(start_response, result, environ)
        environ[ENVIRON_TOKEN] = self.minter.token_for(result.user, route, result.client_id)
        environ[ENVIRON_ROUTE] = route
        return self.proxy(environ, start_response)

    def auth_request(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """nginx ``auth_request`` for the request described by ``X-Original-URI`` and
        ``X-Original-Method``, judged as :meth:`forward` would judge it, in the same order.

        200 with ``X-Access-Token`` and ``X-Accel-Expires`` (:meth:`edge_cache_seconds`; the
        template caches the answer per route and credential, for safe methods). A refusal is 401
        (with the Basic challenge) or, since nginx passes only 2xx, 401 and 403 on, 403 for
        everything else; either way it carries ``X-Auth-Status`` (the status the Python edge
        answers) and ``X-Auth-Body`` (its exact JSON body), so the demo's nginx answers alike.
        """
        uri = str(environ.get("HTTP_X_ORIGINAL_URI", ""))
        method = str(environ.get("HTTP_X_ORIGINAL_METHOD") or environ.get("REQUEST_METHOD", "GET"))
        method = method.upper()
        raw_path = uri.split("?", 1)[0]
        path = unquote(raw_path, encoding="latin-1")  # as a WSGI server decodes PATH_INFO
        if not uri.startswith("/"):
            return self._refuse_auth(
                start_response, Refusal(400, "invalid_request", "X-Original-URI missing or not a path"), environ
            )
        route = self.config.route_for(path)
        if route is None:
            return self._refuse_auth(start_response, NO_ROUTE, environ)
        result = self.authenticate(environ, method)
        if isinstance(result, Refusal):
            return self._refuse_auth(start_response, result, environ)
        problem = path_problem({"PATH_INFO": path, "RAW_URI": uri})
        if method in REFUSED_METHODS:
            refusal = Refusal(405, "method_not_allowed", f"{method} is not forwarded")
            return self._refuse_auth(start_response, refusal, environ)
        if problem:
            return self._refuse_auth(start_response, Refusal(400, "invalid_request", problem), environ)
        token, expires = self.minter.token_and_expiry(result.user, route, result.client_id)
        body = json.dumps({"sub": result.user.username, "route": route.prefix}).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("X-Accel-Expires", str(self.edge_cache_seconds(expires))),
                ("X-Access-Token", token),
                ("X-Request-ID", request_id(environ)),
            ],
        )
        return [body]

    def edge_cache_seconds(self, expires: int) -> int:
        """How long nginx may reuse a ``/_auth`` answer whose token expires at ``expires``:
        at most ``auth_cache_seconds``, and only while the token keeps more than the minter's
        re-mint margin of life, so a token nginx forwards is as fresh as one the gateway
        forwards itself (0: do not cache). Only safe methods use the cache (nginx config)."""
        left = int(expires - self.clock() - self.minter.margin)
        return max(0, min(self.config.auth_cache_seconds, left))

    @staticmethod
    def _refuse(
        start_response: StartResponse, refusal: Refusal, environ: WSGIEnvironment
    ) -> Iterable[bytes]:
        return json_response(
            start_response,
            refusal.status,
            refusal.error,
            refusal.description,
            [*refusal.headers, ("X-Request-ID", request_id(environ))],
        )

    @staticmethod
    def _refuse_auth(
        start_response: StartResponse, refusal: Refusal, environ: WSGIEnvironment
    ) -> Iterable[bytes]:
        body = json.dumps({"error": refusal.error, "error_description": refusal.description})
        headers = [
            *refusal.headers,
            ("X-Auth-Status", str(refusal.status)),
            ("X-Auth-Body", body),
            ("X-Request-ID", request_id(environ)),
        ]
        status = 401 if refusal.status == 401 else 403
        return json_response(start_response, status, refusal.error, refusal.description, headers)

    # -- keys and discovery -------------------------------------------------------------------

    def jwks(self, request: Request) -> Response:
        """The public keys: current first, then retired keys whose tokens may still be alive."""
        return _json(self.keystore.jwks(), headers=wellknown.JWKS_HEADERS)

    def discovery(self, request: Request) -> Response:
        """OpenID Connect discovery: enough for a service to find the keys from the issuer."""
        document = wellknown.discovery_document(
            self.config.issuer,
            self.config.issuer_base,
            self.keystore.algorithms(),
            self.users.all_scopes(),
            token_endpoint=self.config.issuer_base + TOKEN_PATH if self.token_exchange is not None else None,
        )
        return _json(document, headers=wellknown.DISCOVERY_HEADERS)

    def token_endpoint(self, request: Request) -> Response:
        """RFC 8693 token exchange (:mod:`.issuing.exchange`); counted as ``ok`` or the error code."""
        assert self.token_exchange is not None  # routed only when there are clients
        response, result = self.token_exchange.answer(request)
        if self.metrics is not None:
            self.metrics.exchange(result)
        return response

    def prometheus_metrics(self, request: Request) -> Response:
        """The gateway's counters in the Prometheus text format (OpenMetrics when asked); 404
        when metrics are off. With the default registry and ``PROMETHEUS_MULTIPROC_DIR`` set,
        every worker's values (:func:`token_middleware.metrics.exposition`)."""
        if self.metrics is None:
            return _json({"error": "not_found", "error_description": "metrics are off"}, status=404,
                         headers={"Cache-Control": "no-store"})
        registry = None if self.metrics.default_registry else self.metrics.registry
        body, content_type = token_metrics.exposition(registry, accept=request.headers.get("Accept"))
        response = Response(body, status=200, content_type=content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    def healthz(self, request: Request) -> Response:
        """Liveness: 200 once the app is built (keys loaded, users read)."""
        return _json({"status": "ok"}, headers={"Cache-Control": "no-store"})


def _failure_store(redis_url: str | None) -> FailureStore:
    """Where login failures are counted: Redis (``GATEWAY_REDIS_URL``, shared) or this process."""
    if not redis_url:
        return MemoryFailureStore()
    from token_middleware.redis_store import RedisFailureStore  # the optional "redis" extra

    return RedisFailureStore(redis_url)


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def create_app(config: GatewayConfig) -> Gateway:
    """The gateway WSGI app for ``config`` (creates the keys directory and key if needed)."""
    return Gateway(config)
