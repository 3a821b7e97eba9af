"""End to end: opaque tokens of a real django-oauth-toolkit server under gunicorn, introspected.

django-oauth-toolkit (the ``test`` extra) runs as its own gunicorn process on a free loopback
port, with a fresh SQLite database and two confidential client-credentials applications:
``orders-service`` (this resource server, which authenticates at ``/o/introspect/``) and
``shop-client`` (the caller, which gets tokens at ``/o/token/`` and revokes them at
``/o/revoke_token/``). The resource server is the WSGI middleware in this process, with a
clock the test moves: the cache time passes without sleeping.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _idp_support import FakeClock

from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.wsgi import TokenMiddleware

pytest.importorskip("oauth2_provider", reason="django-oauth-toolkit is in the test extra")
pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent / "dot_project"
GUNICORN = Path(sys.executable).with_name("gunicorn")
SERVICE = ("orders-service", "orders-service-secret")
CALLER = ("shop-client", "shop-client-secret")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DOTServer:
    """django-oauth-toolkit under gunicorn; :meth:`stop` makes it a real outage."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("TOKEN_MIDDLEWARE_", "DJANGO_"))},
                    "DOT_DATABASE": str(directory / "dot.sqlite3"), "DJANGO_SETTINGS_MODULE": "dot_settings",
                    "PYTHONPATH": str(PROJECT)}
        setup = subprocess.run([sys.executable, "dot_setup.py", "=".join(SERVICE), "=".join(CALLER)],
                               cwd=PROJECT, env=self.env, capture_output=True, text=True, timeout=120)
        assert setup.returncode == 0, setup.stderr[-3000:]
        self.log = directory / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [str(GUNICORN), "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4",
             "--worker-class", "gthread", "--chdir", str(PROJECT), "--error-logfile", str(self.log),
             "dot_wsgi:application"],
            cwd=PROJECT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._answers():
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "django-oauth-toolkit did not start"
            time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/o"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        try:
            self.post("/token/", {"grant_type": "client_credentials"}, ("nobody", "x"))
        except urllib.error.HTTPError:
            return True  # 401 invalid_client: Django is up
        except OSError:
            return False
        return True

    def post(self, path: str, form: dict[str, str], client: tuple[str, str]) -> Any:
        pair = f"{urllib.parse.quote_plus(client[0])}:{urllib.parse.quote_plus(client[1])}"
        request = urllib.request.Request(self.base + path, data=urllib.parse.urlencode(form).encode(), headers={
            "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            body = response.read()
        return json.loads(body) if body else None

    def token(self, scope: str = "orders:read") -> str:
        answer = self.post("/token/", {"grant_type": "client_credentials", "scope": scope}, CALLER)
        assert answer["token_type"] == "Bearer" and answer["scope"] == scope
        token: str = answer["access_token"]
        assert token.count(".") == 0  # django-oauth-toolkit's tokens are opaque
        return token

    def revoke(self, token: str) -> None:
        self.post("/revoke_token/", {"token": token, "token_type_hint": "access_token"}, CALLER)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def dot(tmp_path: Path) -> Iterator[DOTServer]:
    server = DOTServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _app(dot: DOTServer, clock: FakeClock, **names: Any) -> TokenMiddleware:
    settings = Settings.from_mapping({
        "ISSUER": dot.base, "AUDIENCE": "orders-service",
        "INTROSPECTION_URL": dot.base + "/introspect/",
        "CLIENT_ID": SERVICE[0], "CLIENT_SECRET": SERVICE[1],
        "INTROSPECTION_CACHE_SECONDS": 2, **names,
    })

    def view(environ: Any, start_response: Any) -> list[bytes]:
        token = environ["token_middleware.access_token"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"client_id": token.client_id, "scopes": sorted(token.scopes),
                            "sub": token.subject}).encode()]

    # No key prefetch: this django-oauth-toolkit publishes no keys (docs/identity-providers.md).
    return TokenMiddleware(view, validator=TokenValidator(settings, clock=clock), prefetch=False)


def _get(app: TokenMiddleware, token: str) -> tuple[int, dict[str, str], Any]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/orders", "HTTP_ACCEPT": "application/json",
                         "HTTP_AUTHORIZATION": f"Bearer {token}"}, start_response))
    return seen["status"], seen["headers"], json.loads(body)


def test_accepted_then_refused_after_revocation_once_the_cache_time_has_passed(dot: DOTServer) -> None:
    clock = FakeClock(time.time())  # django-oauth-toolkit's exp is real time
    app = _app(dot, clock)
    token = dot.token("orders:read")
    assert _get(app, token) == (200, {"Content-Type": "application/json"},
                                {"client_id": "shop-client", "scopes": ["orders:read"], "sub": ""})
    dot.revoke(token)
    assert _get(app, token)[0] == 200  # the cached answer, within INTROSPECTION_CACHE_SECONDS
    clock.advance(2.001)
    status, headers, body = _get(app, token)
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert body == {"error": "invalid_token", "error_description": "the access token is not active"}


def test_an_outage_gives_503_and_cached_answers_still_serve(dot: DOTServer) -> None:
    clock = FakeClock(time.time())
    app = _app(dot, clock)
    known, unseen = dot.token(), dot.token()
    assert _get(app, known)[0] == 200
    dot.stop()
    status, headers, body = _get(app, unseen)
    assert status == 503 and headers["Retry-After"] == "5" and body["error"] == "temporarily_unavailable"
    assert _get(app, known)[0] == 200  # from the cache until it expires
    clock.advance(2.001)
    assert _get(app, known)[0] == 503


def test_the_pitfalls_of_the_recipe(dot: DOTServer) -> None:
    clock = FakeClock(time.time())
    token = dot.token()
    # Without the trailing slash Django redirects, and the redirect is not followed.
    app = _app(dot, clock, INTROSPECTION_URL=dot.base + "/introspect")
    validator = app.validator
    assert _get(app, token)[0] == 503
    assert validator.introspector is not None and "redirect" in (validator.introspector.last_error or "")
    # A wrong secret: 503, and the cause says which settings to check.
    app = _app(dot, clock, CLIENT_SECRET="wrong")
    assert _get(app, token)[0] == 503
    assert "CLIENT_SECRET" in (app.validator.introspector.last_error or "")  # type: ignore[union-attr]
