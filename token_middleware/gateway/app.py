"""The gateway as one WSGI app: authenticate the client, mint the token, forward the request.

What is trusted: the configuration, the keys directory and the users file. From a request, only
two things can establish who the caller is, and both are checked here:

- ``Authorization: Basic …`` checked against the users file (hashes, constant-time compare);
- the gateway's own session cookie, whose HMAC must verify (set by ``POST /login``).

Anything else, including ``Authorization: Bearer …``, is not a gateway credential: the request
gets 401 with ``WWW-Authenticate: Basic realm="gateway"`` and nothing is forwarded. Requests
authenticated by cookie with an unsafe method must also come from the gateway's own origin
(``Origin`` or ``Sec-Fetch-Site``), and the login and logout forms carry CSRF tokens.

Endpoints:

======================================== ======================================================
``GET /.well-known/jwks.json``           public keys (current and recently retired)
``GET /.well-known/openid-configuration`` discovery: ``issuer``, ``jwks_uri``, algorithms
``GET|POST /login``, ``POST /logout``    the login form and the session cookie
``GET /app``, ``GET /app.js``            a page that calls ``/orders`` and ``/orders/chain``
``* /_auth``                             nginx ``auth_request``: 200 with ``X-Access-Token``
                                         and ``X-Accel-Expires`` (how long nginx may cache it)
``GET /healthz``                         liveness
``* <route prefix>/…``                   forwarded with ``Authorization: Bearer <minted>``
======================================== ======================================================

Example::

    app = create_app(GatewayConfig.from_env(os.environ))     # gunicorn module:app
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.sansio.http import parse_cookie
from werkzeug.wrappers import Request, Response

from . import pages
from .config import GatewayConfig, Route
from .issuing import wellknown
from .issuing.keystore import KeyStore
from .issuing.minting import TokenMinter
from .edge.proxy import (
    ENVIRON_ROUTE,
    ENVIRON_TOKEN,
    Proxy,
    client_address,
    json_response,
    request_id,
)
from .sessions import LoginLimiter, SessionCodec
from .users import User, UserStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="gateway"')
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_AUTHORIZATION_LENGTH = 4096
MAX_FORM_BYTES = 16 * 1024
_CLIENT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")

_HTML_HEADERS = (
    ("Content-Security-Policy", pages.CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


@dataclass(frozen=True)
class Refusal:
    """Why a request is not authenticated: becomes a JSON error response."""

    status: int
    error: str
    description: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user and the ``client_id`` to put in its tokens."""

    user: User
    client_id: str


def parse_basic(value: str) -> tuple[str, str] | None:
    """RFC 7617 credentials from the part after ``Basic``; ``None`` when malformed."""
    value = value.strip()
    if not value or len(value) > MAX_AUTHORIZATION_LENGTH:
        return None
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        return None
    username, sep, password = text.partition(":")
    if not sep or not username or any(ord(c) < 0x20 or c == "\x7f" for c in username):
        return None
    return username, password


class Gateway:
    """The gateway WSGI app. Everything it owns (keys, users, caches, pool) is per instance."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        keystore: KeyStore | None = None,
        users: UserStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.keystore = keystore or KeyStore(
            config.keys_dir,
            alg=config.alg,
            token_ttl=config.token_ttl,
            check_interval=config.key_check_interval,
        )
        self.users = users or UserStore.from_file(config.users_file)
        self.sessions = SessionCodec(self.keystore.session_secret(), ttl=config.session_ttl, clock=clock)
        self.limiter = LoginLimiter(
            max_failures=config.login_max_failures, window=float(config.login_window)
        )
        self.clock = clock
        self.minter = TokenMinter(config.issuer, self.keystore, ttl=config.token_ttl, clock=clock)
        cookie_prefix = "__Host-" if config.secure_cookies else ""
        self.session_cookie = f"{cookie_prefix}gw_session"
        self.csrf_cookie = f"{cookie_prefix}gw_csrf"
        self.proxy = Proxy(
            config.routes,
            timeout=config.upstream_timeout,
            strip_cookie_names=(self.session_cookie, self.csrf_cookie),
            trusted_proxies=config.trusted_proxies,
        )
        self._endpoints: dict[str, tuple[frozenset[str], Callable[[Request], Response]]] = {
            wellknown.JWKS_PATH: (frozenset({"GET", "HEAD"}), self.jwks),
            wellknown.DISCOVERY_PATH: (frozenset({"GET", "HEAD"}), self.discovery),
            "/login": (frozenset({"GET", "HEAD", "POST"}), self.login),
            "/logout": (frozenset({"POST"}), self.logout),
            "/app": (frozenset({"GET", "HEAD"}), self.app_page),
            "/app.js": (frozenset({"GET", "HEAD"}), self.app_js),
            "/healthz": (frozenset({"GET", "HEAD"}), self.healthz),
            "/": (frozenset({"GET", "HEAD"}), self.index),
        }

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
                request = Request(environ)
                request.max_content_length = MAX_FORM_BYTES * 4
                request.max_form_memory_size = MAX_FORM_BYTES
                response = handler(request)
                response.headers["X-Request-ID"] = rid
                return response(environ, start_response)
            route = self.config.route_for(environ.get("SCRIPT_NAME", "") + path)
            if route is not None:
                return self.forward(environ, start_response, route)
            return json_response(
                start_response, 404, "not_found", "no route for this path", [("X-Request-ID", rid)]
            )
        except HTTPException as exc:  # werkzeug's own 4xx (body too large, bad form encoding)
            code = exc.code or 400
            return json_response(
                start_response,
                code if 400 <= code < 500 else 400,
                "invalid_request",
                exc.name,
                [("X-Request-ID", rid)],
            )

    # -- client authentication ----------------------------------------------------------------

    def authenticate(self, environ: WSGIEnvironment, method: str) -> Principal | Refusal:
        """The caller from Basic credentials or the session cookie, or why not."""
        authorization = str(environ.get("HTTP_AUTHORIZATION", "")).strip()
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            return self._authenticate_basic(environ, credentials)
        session = self.sessions.decode(self._cookies(environ).get(self.session_cookie))
        if session is not None:
            user = self.users.get(session.username)
            if user is not None:
                if method not in SAFE_METHODS and not self._same_origin(environ):
                    return Refusal(403, "forbidden", "cross-site request refused")
                return Principal(user, session.client_id)
        return Refusal(
            401,
            "unauthorized",
            "authenticate with HTTP Basic or sign in at /login",
            (BASIC_CHALLENGE,),
        )

    def _authenticate_basic(self, environ: WSGIEnvironment, credentials: str) -> Principal | Refusal:
        client = client_address(environ, self.config.trusted_proxies)
        wait = self.limiter.retry_after(client)
        if wait:
            return Refusal(
                429, "too_many_requests", "too many failed logins; try again later",
                (("Retry-After", str(wait)),),
            )
        parsed = parse_basic(credentials)
        if parsed is None:
            return Refusal(400, "invalid_request", "malformed Basic credentials", (BASIC_CHALLENGE,))
        user = self.users.authenticate(*parsed)
        if user is None:
            self.limiter.failure(client)
            return Refusal(401, "invalid_credentials", "wrong username or password", (BASIC_CHALLENGE,))
        return Principal(user, "gateway")

    @staticmethod
    def _cookies(environ: WSGIEnvironment) -> dict[str, str]:
        # WSGI gives headers as latin-1 text; bytes that are not UTF-8 become U+FFFD rather than
        # an exception (werkzeug.http.parse_cookie(environ) raises on them).
        raw = str(environ.get("HTTP_COOKIE", ""))
        text = raw.encode("latin-1", "replace").decode("utf-8", "replace")
        return dict(parse_cookie(text))

    def _same_origin(self, environ: WSGIEnvironment) -> bool:
        if environ.get("HTTP_SEC_FETCH_SITE") == "same-origin":
            return True
        origin = environ.get("HTTP_ORIGIN", "")
        if not origin or origin == "null":
            return False
        issuer = urlsplit(self.config.issuer)
        own = {f"{issuer.scheme}://{issuer.netloc}"}
        host = environ.get("HTTP_HOST")
        if host:
            own.add(f"{environ.get('wsgi.url_scheme', 'http')}://{host}")
        return origin in own

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
        """nginx ``auth_request``: 200 with ``X-Access-Token``, 401 with a Basic challenge, or
        403 (unknown route, bad request, too many failures: nginx passes only 2xx/401/403 on).

        A 200 also carries ``X-Accel-Expires`` (:meth:`edge_cache_seconds`): the template caches
        it per route and credential for safe methods; refusals carry none and are never cached."""
        uri = str(environ.get("HTTP_X_ORIGINAL_URI", ""))
        method = str(environ.get("HTTP_X_ORIGINAL_METHOD") or environ.get("REQUEST_METHOD", "GET"))
        method = method.upper()
        path = unquote(uri.split("?", 1)[0])
        segments = path.split("/")
        if (
            not uri.startswith("/")
            or "." in segments
            or ".." in segments
            or any(ord(c) < 0x20 or c == "\x7f" for c in path)
        ):
            return self._refuse(
                start_response,
                Refusal(403, "forbidden", "X-Original-URI missing or not a plain path"),
                environ,
            )
        route = self.config.route_for(path)
        if route is None:
            return self._refuse(start_response, Refusal(403, "forbidden", "no route for this path"), environ)
        result = self.authenticate(environ, method)
        if isinstance(result, Refusal):
            if result.status != 401:
                result = Refusal(403, result.error, result.description, result.headers)
            return self._refuse(start_response, result, environ)
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
        )
        return _json(document, headers=wellknown.DISCOVERY_HEADERS)

    def healthz(self, request: Request) -> Response:
        """Liveness: 200 once the app is built (keys loaded, users read)."""
        return _json({"status": "ok"}, headers={"Cache-Control": "no-store"})

    # -- login, logout and the demo page ------------------------------------------------------

    def index(self, request: Request) -> Response:
        return _redirect("/app")

    def _csrf(self, request: Request) -> tuple[str, str | None]:
        """The CSRF form token and, when the cookie is missing, the new nonce to set."""
        nonce = self._cookies(request.environ).get(self.csrf_cookie)
        if nonce and len(nonce) <= 128:
            return self.sessions.csrf_token(nonce), None
        nonce = self.sessions.new_nonce()
        return self.sessions.csrf_token(nonce), nonce

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.config.secure_cookies,
            httponly=True,
            samesite="Lax",
        )

    def _html(self, body: str, status: int = 200, new_nonce: str | None = None) -> Response:
        response = Response(body, status=status, mimetype="text/html")
        for name, value in _HTML_HEADERS:
            response.headers[name] = value
        if new_nonce is not None:
            self._set_cookie(response, self.csrf_cookie, new_nonce, self.config.session_ttl)
        return response

    def login(self, request: Request) -> Response:
        """``GET``: the form. ``POST``: check CSRF, the limiter and the password; set the cookie."""
        if request.method != "POST":
            if self.sessions.decode(self._cookies(request.environ).get(self.session_cookie)) is not None:
                return _redirect("/app")
            token, new_nonce = self._csrf(request)
            return self._html(pages.login_page(token), new_nonce=new_nonce)

        client = client_address(request.environ, self.config.trusted_proxies)
        wait = self.limiter.retry_after(client)
        if wait:
            response = self._html(
                pages.message_page("Too many attempts", f"Too many failed logins. Try again in {wait} s."),
                status=429,
            )
            response.headers["Retry-After"] = str(wait)
            return response
        form = request.form
        nonce = self._cookies(request.environ).get(self.csrf_cookie)
        if not self.sessions.csrf_valid(nonce, form.get("csrf_token")):
            token, new_nonce = self._csrf(request)
            return self._html(
                pages.login_page(token, error="The form expired. Please sign in again."),
                status=403,
                new_nonce=new_nonce,
            )
        username = form.get("username", "")
        password = form.get("password", "")
        client_name = form.get("client_name", "").strip()
        token, _ = self._csrf(request)
        if client_name and not _CLIENT_NAME.match(client_name):
            return self._html(
                pages.login_page(
                    token, error="Client name: 1-64 letters, digits, '.', '_' or '-'.", username=username
                ),
                status=400,
            )
        user = self.users.authenticate(username, password)
        if user is None:
            self.limiter.failure(client)
            return self._html(
                pages.login_page(token, error="Wrong username or password.", username=username)
            )
        response = _redirect("/app")
        self._set_cookie(
            response,
            self.session_cookie,
            self.sessions.encode(user.username, client_name or "gateway"),
            self.config.session_ttl,
        )
        # A fresh CSRF nonce for the signed-in session (no fixation of the pre-login one).
        self._set_cookie(response, self.csrf_cookie, self.sessions.new_nonce(), self.config.session_ttl)
        return response

    def logout(self, request: Request) -> Response:
        """Forget the session cookie (CSRF-protected, so no page can sign a user out)."""
        if not self.sessions.csrf_valid(
            self._cookies(request.environ).get(self.csrf_cookie), request.form.get("csrf_token")
        ):
            return self._html(
                pages.message_page("Sign-out refused", "The form expired; reload the page."), status=403
            )
        response = _redirect("/login")
        response.delete_cookie(
            self.session_cookie,
            path="/",
            secure=self.config.secure_cookies,
            httponly=True,
            samesite="Lax",
        )
        return response

    def app_page(self, request: Request) -> Response:
        """The demo page; without a session, a redirect to the login form."""
        session = self.sessions.decode(self._cookies(request.environ).get(self.session_cookie))
        if session is None or session.username not in self.users:
            return _redirect("/login")
        token, new_nonce = self._csrf(request)
        return self._html(pages.app_page(session.username, session.client_id, token), new_nonce=new_nonce)

    def app_js(self, request: Request) -> Response:
        response = Response(pages.APP_JS, mimetype="text/javascript")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _redirect(location: str) -> Response:
    response = Response("", status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app(config: GatewayConfig) -> Gateway:
    """The gateway WSGI app for ``config`` (creates the keys directory and key if needed)."""
    return Gateway(config)
