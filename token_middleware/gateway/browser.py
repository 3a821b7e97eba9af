"""The gateway's pages for browsers: the login form, logout, and the demo page at ``/app``.

What is trusted: the session secret (cookies and CSRF tokens are HMAC-checked by
:class:`~.sessions.SessionCodec`) and the users file. The login form goes through the same
failed-login limit as HTTP Basic (:meth:`.authn.ClientAuth.check_password`); its CSRF token is a
signed double submit, and a successful login gets a fresh CSRF nonce (no fixation). Every page
is served with a strict Content-Security-Policy and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.wrappers import Request, Response

from . import pages
from .authn import ClientAuth, Refusal, client_address
from .config import GatewayConfig
from .metrics import GatewayMetrics
from .sessions import SessionCodec
from .users import UserStore

_CLIENT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")

_HTML_HEADERS = (
    ("Content-Security-Policy", pages.CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


class BrowserPages:
    """The handlers of ``/``, ``/login``, ``/logout``, ``/app`` and ``/app.js``."""

    def __init__(
        self,
        config: GatewayConfig,
        users: UserStore,
        sessions: SessionCodec,
        auth: ClientAuth,
        *,
        session_cookie: str,
        csrf_cookie: str,
    ) -> None:
        self.config = config
        self.users = users
        self.sessions = sessions
        self.auth = auth
        self.session_cookie = session_cookie
        self.csrf_cookie = csrf_cookie
        #: Counts each judged login form (``ok``, ``failed``, ``limited``); the gateway sets it.
        self.metrics: GatewayMetrics | None = None

    def index(self, request: Request) -> Response:
        return _redirect("/app")

    def _csrf(self, request: Request) -> tuple[str, str | None]:
        """The CSRF form token and, when the cookie is missing, the new nonce to set."""
        nonce = self.auth.cookies(request.environ).get(self.csrf_cookie)
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

    def _login_page(self, csrf_token: str, **kwargs: Any) -> str:
        return pages.login_page(csrf_token, note=self.config.login_note, **kwargs)

    def login(self, request: Request) -> Response:
        """``GET``: the form. ``POST``: check CSRF, the limiter and the password; set the cookie."""
        if request.method != "POST":
            if self.sessions.decode(self.auth.cookies(request.environ).get(self.session_cookie)) is not None:
                return _redirect("/app")
            token, new_nonce = self._csrf(request)
            return self._html(self._login_page(token), new_nonce=new_nonce)

        form = request.form
        nonce = self.auth.cookies(request.environ).get(self.csrf_cookie)
        if not self.sessions.csrf_valid(nonce, form.get("csrf_token")):
            token, new_nonce = self._csrf(request)
            return self._html(
                self._login_page(token, error="The form expired. Please sign in again."),
                status=403,
                new_nonce=new_nonce,
            )
        username = form.get("username", "")
        password = form.get("password", "")
        client_name = form.get("client_name", "").strip()
        token, _ = self._csrf(request)
        if client_name and not _CLIENT_NAME.match(client_name):
            return self._html(
                self._login_page(
                    token, error="Client name: 1-64 letters, digits, '.', '_' or '-'.", username=username
                ),
                status=400,
            )
        if not username or any(ord(c) < 0x20 or c == "\x7f" for c in username):
            if self.metrics is not None:
                self.metrics.login("failed")
            return self._html(
                self._login_page(token, error="Wrong username or password.", username=""), status=400
            )
        address = client_address(request.environ, self.config.trusted_proxies)
        user = self.auth.check_password(username, password, address)
        if isinstance(user, Refusal):
            wait = dict(user.headers).get("Retry-After")
            if self.metrics is not None:
                self.metrics.login("limited" if wait is not None else "failed")
            if wait is not None:
                response = self._html(
                    pages.message_page("Too many attempts", f"Too many failed logins. Try again in {wait} s."),
                    status=429,
                )
                response.headers["Retry-After"] = wait
                return response
            return self._html(
                self._login_page(token, error="Wrong username or password.", username=username)
            )
        if self.metrics is not None:
            self.metrics.login("ok")
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
            self.auth.cookies(request.environ).get(self.csrf_cookie), request.form.get("csrf_token")
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
        session = self.sessions.decode(self.auth.cookies(request.environ).get(self.session_cookie))
        if session is None or session.username not in self.users:
            return _redirect("/login")
        token, new_nonce = self._csrf(request)
        return self._html(pages.app_page(session.username, session.client_id, token), new_nonce=new_nonce)

    def app_js(self, request: Request) -> Response:
        response = Response(pages.APP_JS, mimetype="text/javascript")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _redirect(location: str) -> Response:
    response = Response("", status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response
