"""token-middleware: ``TokenAuth`` configured the documented way (``TOKEN_MIDDLEWARE_*`` in
``app.config``), keys from the JWKS URL, the route guarded by ``@require_token``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify

from token_middleware.flask_ext import TokenAuth, current_token, require_token

from . import ROUTE, PeerConfig, whoami


def create_app(**config: Any) -> Flask:
    cfg = PeerConfig.from_env(**config)
    app = Flask("peer_project")
    app.config["TOKEN_MIDDLEWARE_ISSUER"] = cfg.issuer
    app.config["TOKEN_MIDDLEWARE_AUDIENCE"] = cfg.audience
    app.config["TOKEN_MIDDLEWARE_JWKS_URL"] = cfg.jwks_url
    app.config["TOKEN_MIDDLEWARE_ALGORITHMS"] = ["RS256"]
    TokenAuth(app)

    @app.get(ROUTE)
    @require_token
    def view() -> Response:
        assert current_token
        return jsonify(whoami(current_token.subject, current_token.scopes))

    return app
