"""PyJWT hand-rolled: ``PyJWKClient`` and ``jwt.decode`` in a ``before_request`` hook."""

from __future__ import annotations

from typing import Any

import jwt
from flask import Flask, Response, g, jsonify, request

from . import ROUTE, PeerConfig, whoami


def create_app(**config: Any) -> Flask:
    cfg = PeerConfig.from_env(**config)
    app = Flask("peer_pyjwt")
    jwks_client = jwt.PyJWKClient(cfg.jwks_url)

    @app.before_request
    def authenticate() -> tuple[Response, int] | None:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return jsonify(error="invalid_request"), 401
        token = authorization[7:]
        try:
            signing_key = jwks_client.get_signing_key_from_jwt(token)
            g.claims = jwt.decode(token, signing_key.key, algorithms=["RS256"],
                                  audience=cfg.audience, issuer=cfg.issuer)
        except jwt.PyJWTError:
            return jsonify(error="invalid_token"), 401
        return None

    @app.get(ROUTE)
    def view() -> Response:
        return jsonify(whoami(g.claims["sub"], g.claims.get("scope", "")))

    return app
