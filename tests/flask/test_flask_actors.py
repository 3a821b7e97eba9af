"""``require_actor`` for Flask views: the nearest actor of the token's ``act`` chain must be one
of the services named, as easily as a scope is required."""

from __future__ import annotations

from typing import Any

import pytest

from token_middleware.testing import bearer

NEEDS = "this resource must be called through orders-service"


@pytest.fixture
def token_audience() -> str:
    return "customers-service"


@pytest.fixture
def client(token_issuer: Any) -> Any:
    from flask import Flask

    from token_middleware.flask_ext import TokenAuth, current_token, require_actor, require_scopes
    from token_middleware.testing import configure_flask

    app = Flask(__name__)
    configure_flask(app, token_issuer)
    TokenAuth(app)

    @app.get("/through-orders")
    @require_scopes("customers:read")
    @require_actor("orders-service")
    def through_orders() -> dict[str, Any]:
        return {"sub": current_token.subject, "act": list(current_token.actors)}

    @app.route("/async-either", methods=["GET", "OPTIONS"])
    @require_actor("orders-service", "billing-service")
    async def either() -> dict[str, Any]:
        return {"act": list(current_token.actors) if current_token else None}  # None: preflight

    return app.test_client()


@pytest.mark.parametrize(
    ("act", "status"),
    [
        (["orders-service"], 200),
        (["orders-service", "gateway"], 200),
        (None, 403),
        (["billing-service"], 403),
        (["billing-service", "orders-service"], 403),
    ],
    ids=["orders", "orders-via-gateway", "nobody", "billing", "billing-after-orders"],
)
def test_the_nearest_actor_must_be_the_one_required(client: Any, make_token: Any, act: Any, status: int) -> None:
    response = client.get("/through-orders", headers=bearer(make_token(scopes=["customers:read"], act=act)))
    assert response.status_code == status
    if status == 200:
        assert response.get_json() == {"sub": "alice", "act": act}
    else:
        assert response.get_json() == {"error": "insufficient_scope", "error_description": NEEDS}
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="customers-service", error="insufficient_scope", error_description="{NEEDS}"'
        )


@pytest.mark.parametrize(("act", "status"), [(["billing-service"], 200), (["orders-service"], 200), (["x"], 403)])
def test_one_of_several_actors_async(client: Any, make_token: Any, act: Any, status: int) -> None:
    assert client.get("/async-either", headers=bearer(make_token(act=act))).status_code == status


def test_no_token_is_401_and_preflight_passes(client: Any) -> None:
    response = client.get("/through-orders")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="customers-service"'
    assert client.options("/async-either").status_code == 200
