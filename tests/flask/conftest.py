"""Flask test app: every decorator, a blueprint, a MethodView, async and streaming views.

The app is configured only through the test kit (``token_issuer`` from the token_middleware
pytest plugin, ``configure_flask``): real keys, real signed tokens, no network.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

if importlib.util.find_spec("flask") is None:  # the tox factor without Flask
    collect_ignore_glob = ["test_*.py"]

AUDIENCE = "orders-service"


@pytest.fixture
def token_audience() -> str:
    return AUDIENCE


def build_app(issuer: Any, **overrides: Any) -> Any:
    from flask import Blueprint, Flask, Response, request, stream_with_context
    from flask.views import MethodView

    from token_middleware.core.context import get_current_token
    from token_middleware.flask_ext import (
        TokenAuth,
        current_token,
        require_any_scope,
        require_scopes,
        require_token,
    )
    from token_middleware.testing import configure_flask

    app = Flask(__name__)
    configure_flask(app, issuer, **overrides)
    TokenAuth(app)

    def whoami() -> dict[str, Any]:
        return {"sub": current_token.subject, "scopes": sorted(current_token.scopes)}

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"sub": current_token.subject if current_token else None}

    @app.get("/all")
    @require_scopes("orders:read", "orders:write")
    def all_scopes() -> dict[str, Any]:
        return whoami()

    @app.get("/any")
    @require_any_scope("orders:read", "orders:write")
    def any_scope() -> dict[str, Any]:
        return whoami()

    @app.get("/token")
    @require_token()
    def token_only() -> dict[str, Any]:
        return whoami()

    @app.get("/token-bare")
    @require_token
    def token_bare() -> dict[str, Any]:
        return whoami()

    @app.get("/async")
    @require_scopes("orders:read")
    async def async_view() -> dict[str, Any]:
        core = get_current_token()
        return {**whoami(), "context_sub": core.subject if core else None}

    @app.route("/cors", methods=["GET", "OPTIONS"])
    @require_scopes("orders:read")
    def cors() -> Any:
        if request.method == "OPTIONS":
            return "", 204, {"Access-Control-Allow-Origin": "*"}
        return whoami()

    @app.get("/stream")
    @require_token()
    def stream() -> Response:
        def body() -> Iterator[str]:
            for _ in range(3):
                tok = get_current_token()
                yield (tok.subject if tok else "-") + "\n"

        return Response(stream_with_context(body()), mimetype="text/plain")

    bp = Blueprint("items", __name__, url_prefix="/bp")

    @bp.get("/items")
    @require_scopes("items:read")
    def items() -> dict[str, Any]:
        return whoami()

    app.register_blueprint(bp)

    class OrdersView(MethodView):
        decorators = [require_token()]

        @require_scopes("orders:read")
        def get(self) -> dict[str, Any]:
            return whoami()

        @require_scopes("orders:write")
        def post(self) -> tuple[dict[str, Any], int]:
            return whoami(), 201

    app.add_url_rule("/mv", view_func=OrdersView.as_view("orders"))
    return app


@pytest.fixture
def make_app(token_issuer: Any) -> Any:
    """``make_app(**setting_overrides)``: a fresh test app."""
    return lambda **overrides: build_app(token_issuer, **overrides)


@pytest.fixture
def app(token_issuer: Any) -> Any:
    return build_app(token_issuer)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()
