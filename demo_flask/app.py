"""The orders service of the demo: a Flask app protected by :class:`TokenAuth`.

Routes (shared/DESIGN.md "Demo services"):

- ``GET /orders/whoami`` (any valid token): the identity as this service saw it;
- ``GET /orders/chain`` (any valid token): its own whoami and the customers service's, fetched
  with the propagating session, so the same token visibly travels downstream;
- ``GET /orders`` (``orders:read``): every order, each with its customer record from the
  customers service;
- ``POST /orders`` (``orders:write``): ``{"item": "<text>", "quantity": <positive int>}`` creates
  an order for the caller (``customer_id`` is the token's ``sub``) and answers 201.

What is trusted: only the validated access token (``current_token``). The JSON body is checked
field by field. The token reaches the customers service only because its host is in this
app's ``FORWARD_TO`` (``app.config["TOKEN_MIDDLEWARE_FORWARD_TO"]``, filled from the
environment below), which the propagating session reads from the settings that validated the
token; this code never sets an ``Authorization`` header or builds an allowlist itself. In
exchange mode (``TOKEN_MIDDLEWARE_FORWARD_TO=127.0.0.1:8002=customers-service`` with
``TOKEN_MIDDLEWARE_CLIENT_ID``/``_CLIENT_SECRET``) the session sends a token exchanged for
``customers-service`` instead; a failed exchange answers 502 and sends nothing downstream.

``GET /metrics`` serves the Prometheus text format (no token needed; the gateway never forwards
that path), when prometheus_client is installed.

Configuration comes from the environment only: ``TOKEN_MIDDLEWARE_*`` (the audience defaults to
``orders-service``) and ``CUSTOMERS_URL`` (default ``http://127.0.0.1:8002``). The app starts
without the customers service; only the calls that need it fail, with 502.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from flask import Flask, Response, current_app, jsonify, request

from token_middleware import metrics as token_metrics
from token_middleware.flask_ext import TokenAuth, current_token, require_scopes, require_token
from token_middleware.core.exchange import ExchangeFailed
from token_middleware.requests_auth import propagating_session

AUDIENCE = "orders-service"
DEFAULT_CUSTOMERS_URL = "http://127.0.0.1:8002"
DOWNSTREAM_TIMEOUT = 5.0
EXTENSION_KEY = "demo_orders"

SEED_ORDERS: tuple[Mapping[str, Any], ...] = (
    {"item": "espresso beans", "quantity": 2, "customer_id": "alice"},
    {"item": "milk frother", "quantity": 1, "customer_id": "bob"},
)


class DownstreamError(Exception):
    """The customers service could not be reached or did not answer 200."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass
class OrderStore:
    """Orders in memory, per process; safe to share between the threads of one worker."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: str, quantity: int, customer_id: str) -> dict[str, Any]:
        with self.lock:
            order = {
                "id": len(self.orders) + 1,
                "item": item,
                "quantity": quantity,
                "customer_id": customer_id,
            }
            self.orders.append(order)
            return dict(order)

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(order) for order in self.orders]


@dataclass
class OrdersState:
    """What the views share: kept in ``app.extensions["demo_orders"]``, never in a module global."""

    store: OrderStore
    customers_url: str
    session: requests.Session


def _state() -> OrdersState:
    state: OrdersState = current_app.extensions[EXTENSION_KEY]
    return state


def whoami_payload() -> dict[str, Any]:
    return {
        "service": "orders",
        "sub": current_token.subject,
        "client_id": current_token.client_id,
        "scopes": sorted(current_token.scopes),
        "aud": list(current_token.audience),
        "act": list(current_token.actors),  # nearest actor first: who exchanged the token
        "exp": current_token.expires_at,  # for the /app page's "time left"
    }


def fetch_customers_json(path: str) -> Any:
    """GET ``CUSTOMERS_URL + path`` with the propagating session (no explicit header)."""
    state = _state()
    url = state.customers_url + path
    try:
        response = state.session.get(url, timeout=DOWNSTREAM_TIMEOUT)
    except ExchangeFailed as exc:  # never a fallback to our own token: nothing was sent
        raise DownstreamError(f"{exc.description} ({exc.error or exc.reason})") from exc
    except requests.RequestException as exc:
        raise DownstreamError(
            f"customers service unreachable at {state.customers_url} ({type(exc).__name__})"
        ) from exc
    if response.status_code != 200:
        raise DownstreamError(f"customers service answered {response.status_code} for {path}")
    try:
        return response.json()
    except ValueError as exc:
        raise DownstreamError(f"customers service sent invalid JSON for {path}") from exc


def bad_request(description: str) -> tuple[Response, int]:
    return jsonify(error="invalid_request", error_description=description), 400


def parse_new_order(body: Any) -> tuple[str, int] | str:
    """``(item, quantity)`` from a POST body, or a description of what is wrong with it."""
    if not isinstance(body, dict):
        return 'the body must be a JSON object: {"item": "<text>", "quantity": <positive int>}'
    unknown = sorted(set(body) - {"item", "quantity"})
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    item = body.get("item")
    if not isinstance(item, str) or not item.strip():
        return '"item" must be a non-empty string'
    if len(item) > 200:
        return '"item" must be at most 200 characters'
    quantity = body.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        return '"quantity" must be a positive integer'
    return item.strip(), quantity


def create_app(environ: Mapping[str, str] | None = None, *, metrics: bool = True) -> Flask:
    """Build the orders app from ``environ`` (default: ``os.environ``).

    ``metrics``: count into prometheus_client's default registry and serve ``GET /metrics``
    (only when prometheus_client is installed; without it the app runs with metrics off).
    """
    env = os.environ if environ is None else environ
    app = Flask("demo_flask")
    # Only the environment configures this app; the audience has a demo default.
    for name, value in env.items():
        if name.startswith("TOKEN_MIDDLEWARE_"):
            app.config[name] = value
    app.config.setdefault("TOKEN_MIDDLEWARE_AUDIENCE", AUDIENCE)
    observers = [token_metrics.PrometheusMetrics()] if metrics and token_metrics.available() else []
    TokenAuth(app, observers=observers)

    store = OrderStore()
    for seed in SEED_ORDERS:
        store.add(seed["item"], seed["quantity"], seed["customer_id"])
    app.extensions[EXTENSION_KEY] = OrdersState(
        store=store,
        customers_url=env.get("CUSTOMERS_URL", DEFAULT_CUSTOMERS_URL).rstrip("/"),
        session=propagating_session(),  # FORWARD_TO: the app's settings, per request
    )

    if observers:

        @app.get("/metrics")
        def prometheus_metrics() -> Response:
            body, content_type = token_metrics.exposition(accept=request.headers.get("Accept"))
            return Response(body, content_type=content_type)

    @app.errorhandler(DownstreamError)
    def downstream_failed(exc: DownstreamError) -> tuple[Response, int]:
        return jsonify(error="bad_gateway", error_description=exc.description), 502

    @app.get("/orders/whoami")
    @require_token
    def whoami() -> Response:
        return jsonify(whoami_payload())

    @app.get("/orders/chain")
    @require_token
    def chain() -> Response:
        return jsonify(orders=whoami_payload(), customers=fetch_customers_json("/customers/whoami"))

    @app.get("/orders")
    @require_scopes("orders:read")
    def list_orders() -> Response:
        customers: dict[str, Any] = {}
        orders = _state().store.all()
        for order in orders:
            customer_id = order["customer_id"]
            if customer_id not in customers:
                quoted = quote(customer_id, safe="")
                customers[customer_id] = fetch_customers_json(f"/customers/{quoted}")
            order["customer"] = customers[customer_id]
        return jsonify(orders=orders)

    @app.post("/orders")
    @require_scopes("orders:write")
    def create_order() -> tuple[Response, int]:
        if not request.is_json:
            return bad_request("send JSON with Content-Type: application/json")
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # "[[[[…": json.loads gives up on the depth, not a ValueError
            return bad_request("the body is nested too deeply")
        if body is None:
            return bad_request("the body is not valid JSON")
        parsed = parse_new_order(body)
        if isinstance(parsed, str):
            return bad_request(parsed)
        item, quantity = parsed
        order = _state().store.add(item, quantity, current_token.subject)
        return jsonify(order), 201

    return app
