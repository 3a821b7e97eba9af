"""flask-jwt-extended: ``@jwt_required()`` with an RS256 PEM public key, issuer and audience checked.

Its default answer to an invalid token is 422; like most apps, this one answers 401 instead
(``invalid_token_loader``), so it is refused the same way as the others.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from flask_jwt_extended import JWTManager, get_jwt, jwt_required

from . import ROUTE, PeerConfig, whoami


def create_app(**config: Any) -> Flask:
    cfg = PeerConfig.from_env(**config)
    app = Flask("peer_flask_jwt_extended")
    app.config["JWT_ALGORITHM"] = "RS256"
    app.config["JWT_DECODE_ALGORITHMS"] = ["RS256"]
    app.config["JWT_PUBLIC_KEY"] = cfg.public_key_pem()
    app.config["JWT_DECODE_AUDIENCE"] = cfg.audience
    app.config["JWT_DECODE_ISSUER"] = cfg.issuer
    app.config["JWT_TOKEN_LOCATION"] = ["headers"]
    jwt = JWTManager(app)

    @jwt.invalid_token_loader
    def invalid(reason: str) -> tuple[Response, int]:
        return jsonify(error="invalid_token"), 401

    @app.get(ROUTE)
    @jwt_required()
    def view() -> Response:
        claims = get_jwt()
        return jsonify(whoami(claims["sub"], claims.get("scope", "")))

    return app
