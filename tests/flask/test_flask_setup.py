"""Flask start-up and outages: bad settings fail at init_app, unreachable keys give 503, real server."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from token_middleware.core.errors import ConfigurationError
from token_middleware.flask_ext import TokenAuth, get_state
from token_middleware.testing import bearer, configure_flask


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        pytest.param({"TOKEN_MIDDLEWARE_ISSUER": None}, "ISSUER", id="missing-issuer"),
        pytest.param({"TOKEN_MIDDLEWARE_ALGORITHMS": "none"}, "ALGORITHMS", id="alg-none"),
        pytest.param({"TOKEN_MIDDLEWARE_PUBLIC_KEYS": "/nonexistent.json"}, "PUBLIC_KEYS", id="missing-key-file"),
    ],
)
def test_misconfiguration_fails_at_init_app(
    token_issuer: Any, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], setting: str
) -> None:
    monkeypatch.delenv("TOKEN_MIDDLEWARE_ISSUER", raising=False)
    app = Flask(__name__)
    configure_flask(app, token_issuer)
    app.config.update(config)
    with pytest.raises(ConfigurationError) as info:
        TokenAuth(app)
    assert info.value.setting == setting
    assert "token_middleware" not in app.extensions


def test_environment_is_the_fallback(token_issuer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_MIDDLEWARE_ISSUER", token_issuer.url)
    monkeypatch.setenv("TOKEN_MIDDLEWARE_AUDIENCE", "from-env")
    app = Flask(__name__)
    app.config["TOKEN_MIDDLEWARE_AUDIENCE"] = "from-config"
    app.config["TOKEN_MIDDLEWARE_PUBLIC_KEYS"] = str(token_issuer.jwks_path)
    TokenAuth(app)
    settings = get_state(app).settings
    assert (settings.issuers, settings.audience) == ((token_issuer.url,), "from-config")


def test_init_app_pattern_serves_several_apps(token_issuer: Any, make_token: Any) -> None:
    from token_middleware.flask_ext import current_token, require_scopes

    auth = TokenAuth()
    apps = []
    for audience in ("a-service", "b-service"):
        app = Flask(audience)
        configure_flask(app, token_issuer, AUDIENCE=audience)
        auth.init_app(app)

        @app.get("/")
        @require_scopes("x")
        def index() -> str:
            return current_token.subject

        apps.append(app)
    token = make_token(audience="a-service", scopes=["x"])
    assert apps[0].test_client().get("/", headers=bearer(token)).status_code == 200
    assert apps[1].test_client().get("/", headers=bearer(token)).status_code == 401
    assert apps[1].test_client().get("/").headers["WWW-Authenticate"] == 'Bearer realm="b-service"'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_keys_give_503_with_retry_after(token_issuer: Any, make_token: Any) -> None:
    from token_middleware.flask_ext import require_token

    app = Flask(__name__)
    configure_flask(
        app, token_issuer, PUBLIC_KEYS=None,
        JWKS_URL=f"http://127.0.0.1:{_closed_port()}/jwks.json", HTTP_TIMEOUT=2,
    )
    TokenAuth(app, prefetch=False)

    @app.get("/")
    @require_token()
    def index() -> str:
        return "ok"

    response = app.test_client().get("/", headers=bearer(make_token()))
    assert response.status_code == 503
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 30
    assert "WWW-Authenticate" not in response.headers
    assert response.get_json()["error"] == "temporarily_unavailable"


@pytest.fixture
def served_app(app: Any) -> Iterator[str]:
    """The test app behind a real HTTP server on a free loopback port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize(
    ("path", "auth", "status", "body"),
    [
        pytest.param("/stream", {"sub": "henry"}, 200, "henry\nhenry\nhenry\n", id="streamed-body-sees-token"),
        pytest.param("/all", None, 401, None, id="no-token"),
        pytest.param("/async", {"sub": "ivy", "scopes": ["orders:read"]}, 200, None, id="async-view",
                     marks=pytest.mark.skipif(importlib.util.find_spec("asgiref") is None, reason="flask[async]")),
    ],
)
def test_over_real_http(served_app: str, make_token: Any, path: str, auth: Any, status: int, body: str | None) -> None:
    request = urllib.request.Request(served_app + path, headers=bearer(make_token(**auth)) if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            got_status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        got_status, text = err.code, err.read().decode()
        assert err.headers["WWW-Authenticate"] == 'Bearer realm="orders-service"'
    assert got_status == status
    if body is not None:
        assert text == body
    elif status == 200:
        assert json.loads(text)["context_sub"] == auth["sub"]


def test_test_kit_imports_no_framework() -> None:
    """The plugin is loaded in every pytest run, even where Flask or Django is not installed."""
    import subprocess
    import sys

    code = (
        "import sys, token_middleware.testing, token_middleware.testing.pytest_plugin\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'django', 'rest_framework', 'werkzeug', 'requests', 'httpx'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
