"""OpenTelemetry spans, read back from the SDK's in-memory exporter: names, nesting, attributes.

Key fetches go to a real loopback JWKS server (discovery, then the key set); exchanges use the
public counting API the exchange code calls (``observe.exchanging``) and its context binding.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from token_middleware.core import observe
from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.errors import InvalidToken
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LocalIssuer, LoopbackJWKS

pytest.importorskip("opentelemetry.sdk")


def by_name(exporter: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_validation_spans_say_accepted_or_why_refused(tracing: tuple[Any, Any], token_issuer: LocalIssuer) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    tracer, exporter = tracing
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()), observers=[tracer])
    validator.validate(token_issuer.mint())
    with pytest.raises(InvalidToken):
        validator.validate(token_issuer.mint(expired=True))
    accepted, refused = by_name(exporter)["token_middleware.validate"]
    assert accepted.kind is SpanKind.INTERNAL
    assert dict(accepted.attributes) == {"token_middleware.outcome": "accepted"}
    assert accepted.status.status_code is StatusCode.UNSET
    assert dict(refused.attributes) == {"token_middleware.outcome": "refused", "error.type": "expired"}
    assert refused.status.status_code is StatusCode.ERROR


def test_key_fetch_spans_nest_inside_the_validation_that_needed_them(tracing: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind

    tracer, exporter = tracing
    key = SigningKey.generate("ES256", kid="k1")
    with LoopbackJWKS([key]) as server:
        settings = Settings.from_mapping({"ISSUER": server.issuer, "AUDIENCE": "orders-service"})
        validator = TokenValidator(settings, observers=[tracer])
        validator.validate(TokenIssuer(server.issuer, key).mint(sub="alice", audience="orders-service"))
        port = server.port
        jwks_url = server.jwks_url
    spans = by_name(exporter)
    [validate] = spans["token_middleware.validate"]
    [attempt] = spans["token_middleware.fetch_keys"]
    discovery, jwks = spans["GET"]
    assert attempt.parent.span_id == validate.context.span_id
    assert discovery.parent.span_id == attempt.context.span_id == jwks.parent.span_id
    assert dict(attempt.attributes) == {"token_middleware.result": "ok", "url.full": jwks_url,
                                        "http.response.status_code": 200}
    assert jwks.kind is SpanKind.CLIENT
    assert dict(jwks.attributes) == {
        "http.request.method": "GET", "url.full": jwks_url, "server.address": "127.0.0.1", "server.port": port,
        "token_middleware.document": "jwks", "token_middleware.result": "ok", "http.response.status_code": 200,
    }
    assert discovery.attributes["url.full"].endswith("/.well-known/openid-configuration")
    assert discovery.attributes["token_middleware.document"] == "discovery"


def test_a_failed_key_fetch_has_an_error_type(tracing: tuple[Any, Any]) -> None:
    from opentelemetry.trace import StatusCode

    tracer, exporter = tracing
    server = LoopbackJWKS([]).start()
    issuer = server.issuer
    server.stop()
    validator = TokenValidator(Settings.from_mapping({"ISSUER": issuer, "AUDIENCE": "orders-service"}),
                               observers=[tracer])
    validator.prefetch(background=False)
    spans = by_name(exporter)
    [attempt] = spans["token_middleware.fetch_keys"]
    [get] = spans["GET"]
    for span in (attempt, get):
        assert span.attributes["error.type"] == "fetch_error"  # no HTTP status: the connection was refused
        assert span.status.status_code is StatusCode.ERROR
        assert "connection refused" in span.status.description
    assert "http.response.status_code" not in get.attributes


def test_exchanges_are_counted_and_traced_for_the_current_request(tracing: tuple[Any, Any]) -> None:
    tracer, exporter = tracing
    events: list[Any] = []
    watch = observe.Watch([tracer, events.append])
    observe.exchange("ok")  # outside a request: nothing to tell, no error
    handle = bind_token(None, None, watch)
    try:
        with observe.exchanging("customers-service"):
            pass
        with pytest.raises(InvalidToken), observe.exchanging("customers-service"):
            raise InvalidToken("the token endpoint refused")
        observe.exchange("error", audience="customers-service", error_type="invalid_target")
    finally:
        reset_token(handle)
    assert [(e.result, e.audience, e.error_type) for e in events] == [
        ("ok", "customers-service", None), ("error", "customers-service", "invalid_token"),
        ("error", "customers-service", "invalid_target")]
    ok, failed = by_name(exporter)["token_middleware.exchange"]
    assert dict(ok.attributes) == {"token_middleware.audience": "customers-service", "token_middleware.result": "ok"}
    assert failed.attributes["error.type"] == "invalid_token"
    with pytest.raises(ValueError):
        observe.exchange("maybe", watch=watch)


def test_exchanges_count_in_prometheus(registry: Any) -> None:
    from obs_support import sample
    from token_middleware.metrics import PrometheusMetrics

    watch = observe.Watch([PrometheusMetrics(registry)])
    observe.exchange("ok", watch=watch)
    with pytest.raises(RuntimeError), observe.exchanging(watch=watch):
        raise RuntimeError("token endpoint unreachable")
    assert sample(registry, "token_middleware_token_exchanges_total", result="ok") == 1
    assert sample(registry, "token_middleware_token_exchanges_total", result="error") == 1


def test_spans_hold_no_token_material(tracing: tuple[Any, Any], token_issuer: LocalIssuer) -> None:
    from obs_support import token_material

    tracer, exporter = tracing
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()), observers=[tracer])
    tokens = [token_issuer.mint(sub="alice"), token_issuer.mint(expired=True), token_issuer.mint(unknown_key=True)]
    for token in tokens:
        try:
            validator.validate(token)
        except InvalidToken:
            pass
    finished = exporter.get_finished_spans()
    assert len(finished) == 3
    dumped = "\n".join(span.to_json() for span in finished)
    for token in tokens:
        for needle in token_material(token):
            assert needle not in dumped
    assert "alice" not in dumped  # no subject either
    assert all(json.loads(span.to_json())["events"] == [] for span in finished)  # no exception events
