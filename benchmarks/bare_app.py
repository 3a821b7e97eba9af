"""The baseline: a bare Flask app answering ``GET /orders/whoami`` with the orders service's JSON shape.

No token handling at all (the ``Authorization`` header that wrk sends is ignored); it is the
"without the middleware" side of figure (c) and the upstream of figure (d). Serve it with
``gunicorn benchmarks.bare_app:app``.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask("bare_orders")

_WHOAMI = {
    "service": "orders",
    "sub": "alice",
    "client_id": "gateway",
    "scopes": ["customers:read", "orders:read", "orders:write"],
    "aud": ["orders-service"],
    "act": [],
}


@app.get("/orders/whoami")
def whoami() -> Response:
    return jsonify(dict(_WHOAMI))
