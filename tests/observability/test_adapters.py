"""The demo services and DRF, observed: exact metric deltas, one audit line and one signal per refusal.

The orders service is the real ``demo_flask.create_app``; the customers service is the real
``demo_django`` URLconf, middleware and ``OBSERVERS`` setting. Both count into prometheus_client's
default registry, as the demo does, so figures are deltas around a known mix of requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from obs_support import sample
from token_middleware.testing import LocalIssuer, bearer

pytest.importorskip("prometheus_client")
pytest.importorskip("flask")
pytest.importorskip("django")

REASONS = ("expired", "unknown_key", "audience", "insufficient_scope", "missing_token", "invalid_request",
           "signature", "malformed")


def snapshot() -> dict[str, float]:
    from prometheus_client import REGISTRY

    values = {f"validations:{o}": sample(REGISTRY, "token_middleware_validations_total", outcome=o)
              for o in ("accepted", "refused")}
    values.update({f"refusals:{r}": sample(REGISTRY, "token_middleware_refusals_total", reason=r) for r in REASONS})
    values["timed"] = sample(REGISTRY, "token_middleware_validation_duration_seconds_count")
    return values


def delta(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# -- Flask: the orders service -----------------------------------------------------------------


@pytest.fixture
def orders(token_issuer: LocalIssuer) -> Any:
    from demo_flask.app import create_app

    app = create_app({**token_issuer.flask_config(), "CUSTOMERS_URL": "http://127.0.0.1:9"})
    app.testing = True
    return app


def test_flask_known_mix_counts_logs_and_signals(orders: Any, token_issuer: LocalIssuer, logs: Any) -> None:
    from token_middleware.flask_ext import token_authenticated, token_refused

    seen: list[str] = []
    refused: list[Any] = []
    token_authenticated.connect(lambda app, token, **kw: seen.append(token.subject), orders, weak=False)
    token_refused.connect(lambda app, refusal, **kw: refused.append(refusal), orders, weak=False)
    client = orders.test_client()
    good = token_issuer.mint(sub="alice", scopes=["orders:read"])
    writer = token_issuer.mint(sub="bob", scopes=["orders:write"])
    expired = token_issuer.mint(expired=True)
    before = snapshot()
    mix = [
        ("GET", "/orders/whoami", bearer(good), None, 200),
        ("GET", "/orders/whoami", bearer(good), None, 200),
        ("GET", "/orders/whoami", bearer(good), None, 200),
        ("GET", "/orders/whoami", {**bearer(expired), "X-Request-ID": "req-expired-1"}, None, 401),
        ("GET", "/orders/whoami", bearer(token_issuer.mint(unknown_key=True)), None, 401),
        ("POST", "/orders", {**bearer(good), "X-Request-ID": "req-scope-2"}, {"item": "tea", "quantity": 1}, 403),
        ("POST", "/orders", bearer(writer), {"item": "tea", "quantity": 1}, 201),
        ("GET", "/orders/whoami", {"X-Request-ID": "bad id with spaces"}, None, 401),
        ("GET", "/orders/whoami", {"Authorization": "Bearer a b"}, None, 400),
    ]
    for method, path, headers, body, status in mix:
        response = client.open(path, method=method, headers=headers, json=body)
        assert response.status_code == status, (path, response.data)
    assert delta(before) == {
        "validations:accepted": 5, "validations:refused": 2, "timed": 4,
        "refusals:expired": 1, "refusals:unknown_key": 1, "refusals:insufficient_scope": 1,
        "refusals:missing_token": 1, "refusals:invalid_request": 1,
    }
    assert seen == ["alice"] * 4 + ["bob"]
    assert [r.reason for r in refused] == ["expired", "unknown_key", "insufficient_scope", "missing_token",
                                           "invalid_request"]
    lines = logs.audit()
    assert [r.reason for r in lines] == [r.reason for r in refused]  # type: ignore[attr-defined]
    by_reason = {r.reason: r for r in lines}  # type: ignore[attr-defined]
    assert by_reason["expired"].request_id == "req-expired-1"  # type: ignore[attr-defined]
    assert by_reason["expired"].kid == token_issuer.key.kid  # type: ignore[attr-defined]
    assert by_reason["expired"].iss == token_issuer.url  # type: ignore[attr-defined]
    assert by_reason["expired"].sub is None  # type: ignore[attr-defined]  # not verified: no subject
    assert by_reason["unknown_key"].kid == token_issuer.other_key.kid  # type: ignore[attr-defined]
    assert by_reason["insufficient_scope"].sub == "alice"  # type: ignore[attr-defined]
    assert by_reason["insufficient_scope"].status == 403  # type: ignore[attr-defined]
    assert by_reason["insufficient_scope"].request_id == "req-scope-2"  # type: ignore[attr-defined]
    assert by_reason["missing_token"].request_id is None  # type: ignore[attr-defined]  # malformed id dropped
    assert {r.adapter for r in lines} == {"flask"}  # type: ignore[attr-defined]
    assert all(r.levelname == "INFO" for r in lines)


def test_flask_metrics_endpoint_serves_what_was_counted(orders: Any, token_issuer: LocalIssuer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = orders.test_client()
    client.get("/orders/whoami", headers=bearer(token_issuer.mint(expired=True)))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    parsed = {s.name: s for f in text_string_to_metric_families(response.get_data(as_text=True))
              for s in f.samples if s.labels.get("reason", "expired") == "expired"}
    assert parsed["token_middleware_refusals_total"].value >= 1


def test_a_bearer_error_raised_by_the_app_is_reported_once(token_issuer: LocalIssuer, logs: Any) -> None:
    from flask import Flask

    from token_middleware.core.errors import InvalidToken
    from token_middleware.flask_ext import TokenAuth, require_token
    from token_middleware.testing import configure_flask

    app = Flask(__name__)
    configure_flask(app, token_issuer)
    TokenAuth(app)

    @app.get("/disabled")
    @require_token
    def disabled() -> str:
        raise InvalidToken("the account is disabled")

    assert app.test_client().get("/disabled", headers=bearer(token_issuer.mint())).status_code == 401
    assert [r.reason for r in logs.audit()] == ["invalid_token"]  # type: ignore[attr-defined]


# -- Django: the customers service --------------------------------------------------------------


@pytest.fixture
def customers(token_issuer: LocalIssuer) -> Iterator[Any]:
    from django.test import Client, override_settings

    import demo_django.settings as demo

    config = {**token_issuer.settings(AUDIENCE="customers-service"), "OBSERVERS": demo.TOKEN_MIDDLEWARE["OBSERVERS"]}
    with override_settings(ROOT_URLCONF="demo_django.urls", MIDDLEWARE=demo.MIDDLEWARE, TOKEN_MIDDLEWARE=config):
        yield Client()


def test_django_known_mix_counts_logs_and_signals(customers: Any, token_issuer: LocalIssuer, logs: Any) -> None:
    from token_middleware.django_ext.signals import token_authenticated, token_refused

    seen: list[str] = []
    refused: list[Any] = []

    def on_token(sender: Any, request: Any, token: Any, **kwargs: Any) -> None:
        seen.append(token.subject)

    def on_refusal(sender: Any, request: Any, refusal: Any, **kwargs: Any) -> None:
        refused.append(refusal)

    token_authenticated.connect(on_token)
    token_refused.connect(on_refusal)
    try:
        reader = token_issuer.mint(sub="carol", scopes=["customers:read"], audience="customers-service")
        plain = token_issuer.mint(sub="dave", audience="customers-service")
        before = snapshot()
        mix = [
            ("/customers/whoami", bearer(reader), 200),
            ("/customers/whoami", bearer(reader), 200),
            ("/customers/alice", bearer(reader), 200),
            ("/customers/alice", {**bearer(plain), "X-Request-ID": "dj-1"}, 403),
            ("/customers/whoami", bearer(token_issuer.mint(expired=True, audience="customers-service")), 401),
            ("/customers/whoami", bearer(token_issuer.mint()), 401),  # meant for orders-service
            ("/customers/whoami", {}, 401),
        ]
        for path, headers, status in mix:
            assert customers.get(path, headers=headers).status_code == status, path
        assert delta(before) == {
            "validations:accepted": 4, "validations:refused": 2, "timed": 4,
            "refusals:insufficient_scope": 1, "refusals:expired": 1, "refusals:audience": 1,
            "refusals:missing_token": 1,
        }
        metrics = customers.get("/metrics")
        assert metrics.status_code == 200 and b"token_middleware_refusals_total" in metrics.content
    finally:
        token_authenticated.disconnect(on_token)
        token_refused.disconnect(on_refusal)
    assert seen == ["carol", "carol", "carol", "dave"]
    assert [r.reason for r in refused] == ["insufficient_scope", "expired", "audience", "missing_token"]
    lines = logs.audit()
    assert [(r.reason, r.adapter) for r in lines] == [(r.reason, "django") for r in refused]  # type: ignore[attr-defined]
    assert lines[0].request_id == "dj-1" and lines[0].sub == "dave"  # type: ignore[attr-defined]


def test_drf_reports_each_refusal_it_decides_once(token_issuer: LocalIssuer, logs: Any) -> None:
    pytest.importorskip("rest_framework")
    from django.test import Client, override_settings

    from token_middleware.django_ext.signals import token_authenticated, token_refused

    seen: list[str] = []
    refused: list[Any] = []

    def on_token(sender: Any, request: Any, token: Any, **kwargs: Any) -> None:
        seen.append(token.subject)

    def on_refusal(sender: Any, request: Any, refusal: Any, **kwargs: Any) -> None:
        refused.append(refusal)

    config = {**token_issuer.settings(AUDIENCE="customers-service"), "OBSERVERS": ["token_middleware.metrics.PrometheusMetrics"]}
    token_authenticated.connect(on_token)
    token_refused.connect(on_refusal)
    try:
        with override_settings(ROOT_URLCONF="obs_drf_urls", MIDDLEWARE=[], TOKEN_MIDDLEWARE=config):
            client = Client()
            before = snapshot()
            mint = token_issuer.mint
            assert client.get("/drf/customers", headers=bearer(
                mint(sub="erin", scopes=["customers:read"], audience="customers-service"))).status_code == 200
            assert client.get("/drf/customers", headers=bearer(mint(sub="frank", audience="customers-service"))
                              ).status_code == 403
            assert client.get("/drf/customers", headers=bearer(mint(expired=True, audience="customers-service"))
                              ).status_code == 401
            assert client.get("/drf/customers").status_code == 401  # DRF's own answer: not reported
            assert delta(before) == {"validations:accepted": 2, "validations:refused": 1, "timed": 3,
                                     "refusals:insufficient_scope": 1, "refusals:expired": 1}
    finally:
        token_authenticated.disconnect(on_token)
        token_refused.disconnect(on_refusal)
    assert seen == ["erin", "frank"]
    assert [(r.reason, r.adapter) for r in refused] == [("insufficient_scope", "drf"), ("expired", "drf")]
    assert [r.reason for r in logs.audit()] == ["insufficient_scope", "expired"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("observers", "message"),
    [
        ("token_middleware.metrics.PrometheusMetrics", "must be a list"),
        (["no.such.module.Observer"], "cannot import"),
        (["token_middleware.core.settings.NAMES"], "is not callable"),
    ],
    ids=["not-a-list", "missing", "not-callable"],
)
def test_django_observers_setting_errors_name_the_fix(token_issuer: LocalIssuer, observers: Any, message: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from token_middleware.django_ext.apps import get_runtime

    with override_settings(TOKEN_MIDDLEWARE={**token_issuer.settings(), "OBSERVERS": observers}):
        with pytest.raises(ImproperlyConfigured, match=message) as raised:
            get_runtime()
    assert 'TOKEN_MIDDLEWARE["OBSERVERS"]' in str(raised.value)


def test_django_observers_setting_takes_a_function_or_a_class(token_issuer: LocalIssuer) -> None:
    from django.test import override_settings

    from token_middleware.django_ext.apps import get_runtime
    from token_middleware.metrics import PrometheusMetrics

    with override_settings(TOKEN_MIDDLEWARE={**token_issuer.settings(),
                                             "OBSERVERS": ["token_middleware.metrics.PrometheusMetrics", print]}):
        watch = get_runtime().validator.watch
    assert watch is not None
    assert isinstance(watch.observers[0], PrometheusMetrics) and watch.observers[1] is print
