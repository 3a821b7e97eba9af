"""Bare Flask: the route and its JSON, no token work at all (the limit of figure ``peers``)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify

from . import ROUTE, whoami

_ANSWER = whoami("alice", "orders:read orders:write customers:read")


def create_app(**_config: Any) -> Flask:
    app = Flask("peer_bare")

    @app.get(ROUTE)
    def view() -> Response:
        return jsonify(dict(_ANSWER))

    return app
