"""Prometheus metrics: exact counter deltas for known mixes, bounded labels, one family set per registry.

Each test counts into its own ``CollectorRegistry``, so the figures are exact; key fetches run
against a real loopback JWKS server with a fake clock for the cache, never a sleep.
"""

from __future__ import annotations

from typing import Any

import pytest

from obs_support import call, hello, sample
from token_middleware.core.errors import InvalidToken
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.keys import RemoteKeySource
from token_middleware.core.observe import Validation
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.metrics import PrometheusMetrics, exposition
from token_middleware.testing import LocalIssuer, LoopbackJWKS, bearer
from token_middleware.wsgi import TokenMiddleware

pytest.importorskip("prometheus_client")


def families(registry: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for metric in registry.collect():
        for s in metric.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_a_known_mix_through_the_wsgi_middleware(token_issuer: LocalIssuer, registry: Any) -> None:
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()), observers=[PrometheusMetrics(registry)])
    app = TokenMiddleware(hello, validator=validator, require_token=True, prefetch=False)
    good = token_issuer.mint(scopes=["orders:read"])
    mix = [
        (bearer(good), 200), (bearer(good), 200), (bearer(good), 200),      # one validation, two cache hits
        (bearer(token_issuer.mint()), 200),
        (bearer(token_issuer.mint(expired=True)), 401),
        (bearer(token_issuer.mint(unknown_key=True)), 401),
        (bearer(token_issuer.mint(audience="someone-else")), 401),
        (bearer(token_issuer.mint(typ="JWT")), 401),
        (bearer("not-a-jwt"), 401),
        ({"Authorization": "Bearer a b"}, 400),
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401),                     # another scheme: no token
    ]
    for headers, status in mix:
        assert call(app, headers) == status
    assert sample(registry, "token_middleware_validations_total", outcome="accepted") == 4
    assert sample(registry, "token_middleware_validations_total", outcome="refused") == 5
    refusals = {labels[0][1]: value for labels, value in families(registry)["token_middleware_refusals_total"].items()
                if value}
    assert refusals == {"expired": 1, "unknown_key": 1, "audience": 1, "type": 1, "malformed": 1,
                        "invalid_request": 1, "missing_token": 2}
    # Timed: every validation that ran the checks (2 accepted + 5 refused), not the 2 cache hits.
    assert sample(registry, "token_middleware_validation_duration_seconds_count") == 7
    assert sample(registry, "token_middleware_jwks_fetches_total", result="ok") == 0  # a static key file


def test_every_core_reason_exists_at_zero_and_labels_stay_bounded(registry: Any) -> None:
    PrometheusMetrics(registry)
    reasons = {dict(labels)["reason"] for labels in families(registry)["token_middleware_refusals_total"]}
    assert {"expired", "signature", "audience", "issuer", "type", "algorithm", "malformed", "too_large",
            "unknown_key", "missing_claim", "insufficient_scope", "keys_unavailable", "invalid_request"} <= reasons
    assert all(value == 0 for value in families(registry)["token_middleware_refusals_total"].values())
    assert {dict(labels)["outcome"] for labels in families(registry)["token_middleware_validations_total"]} == {
        "accepted", "refused"}


def test_a_foreign_reason_gets_its_own_label_and_a_malformed_one_becomes_other(registry: Any) -> None:
    from token_middleware.core.observe import Refusal

    class Introspected(InvalidToken):
        reason = "inactive"

    class Sloppy(InvalidToken):
        reason = "Not A Code!"

    metrics = PrometheusMetrics(registry)
    for error in (Introspected(), Introspected(), Sloppy()):
        from token_middleware.core.observe import reason_of

        metrics(Refusal(error=error, reason=reason_of(error), status=401, adapter="wsgi"))
    assert sample(registry, "token_middleware_refusals_total", reason="inactive") == 2
    assert sample(registry, "token_middleware_refusals_total", reason="other") == 1


def test_one_family_set_per_registry_however_many_validators(token_issuer: LocalIssuer, registry: Any) -> None:
    settings = Settings.from_mapping(token_issuer.settings())
    first = TokenValidator(settings, observers=[PrometheusMetrics(registry)])
    second = TokenValidator(settings, observers=[PrometheusMetrics(registry)])  # no "Duplicated timeseries"
    first.validate(token_issuer.mint())
    second.validate(token_issuer.mint())
    assert sample(registry, "token_middleware_validations_total", outcome="accepted") == 2


def test_the_default_registry_is_used_unless_one_is_given() -> None:
    from prometheus_client import REGISTRY

    assert PrometheusMetrics().registry is REGISTRY


def test_key_fetches_ok_and_error_and_the_last_good_set_stays(registry: Any) -> None:
    key = SigningKey.generate("ES256", kid="k1")
    now = [0.0]
    with LoopbackJWKS([key]) as server:
        settings = Settings.from_mapping({"ISSUER": server.issuer, "AUDIENCE": "orders-service"})
        source = RemoteKeySource(algorithms=settings.algorithms, issuer=server.issuer, cache_seconds=60,
                                 min_refresh_seconds=30, timeout=2, clock=lambda: now[0])
        validator = TokenValidator(settings, keys=source, observers=[PrometheusMetrics(registry)])
        token = TokenIssuer(server.issuer, key).mint(sub="alice", audience="orders-service")
        validator.validate(token)
        assert sample(registry, "token_middleware_jwks_fetches_total", result="ok") == 1
    # The key server goes away; once the set is stale, one refetch fails and is counted.
    now[0] = 61.0
    validator.clear_cache()
    assert validator.validate(token).subject == "alice"  # the last good key set is kept
    assert sample(registry, "token_middleware_jwks_fetches_total", result="error") == 1
    assert sample(registry, "token_middleware_jwks_fetches_total", result="ok") == 1


def test_keys_unavailable_counts_a_fetch_error_and_a_refusal(registry: Any) -> None:
    server = LoopbackJWKS([SigningKey.generate("ES256")]).start()
    issuer = server.issuer
    server.stop()  # nothing listens there any more: connection refused
    settings = Settings.from_mapping({"ISSUER": issuer, "AUDIENCE": "orders-service"})
    validator = TokenValidator(settings, observers=[PrometheusMetrics(registry)])
    app = TokenMiddleware(hello, validator=validator, prefetch=False)
    token = TokenIssuer(issuer, SigningKey.generate("ES256")).mint(sub="alice", audience="orders-service")
    assert call(app, bearer(token)) == 503
    assert sample(registry, "token_middleware_jwks_fetches_total", result="error") == 1
    assert sample(registry, "token_middleware_refusals_total", reason="keys_unavailable") == 1
    assert sample(registry, "token_middleware_validations_total", outcome="refused") == 1


def test_exposition_serves_the_four_families_and_the_histogram(registry: Any) -> None:
    PrometheusMetrics(registry)
    body, content_type = exposition(registry)
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in ("token_middleware_validations_total", "token_middleware_refusals_total",
                 "token_middleware_jwks_fetches_total", "token_middleware_token_exchanges_total",
                 "token_middleware_validation_duration_seconds_bucket"):
        assert f"\n{name}{{" in text or text.startswith(f"{name}{{"), name
    assert "# TYPE token_middleware_validations_total counter" in text
    assert "# TYPE token_middleware_validation_duration_seconds histogram" in text
    openmetrics, kind = exposition(registry, accept="application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and openmetrics.endswith(b"# EOF\n")


def test_an_observer_that_raises_changes_no_verdict_and_is_logged_once(
    token_issuer: LocalIssuer, registry: Any, logs: Any
) -> None:
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("observer bug")

    def recorder(event: object) -> None:
        if isinstance(event, Validation):
            seen.append(event.outcome)

    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()),
                               observers=[broken, PrometheusMetrics(registry), recorder])
    for _ in range(3):
        validator.validate(token_issuer.mint())
    with pytest.raises(InvalidToken):
        validator.validate(token_issuer.mint(expired=True))
    assert seen == ["accepted", "accepted", "accepted", "refused"]  # the others still ran
    assert sample(registry, "token_middleware_validations_total", outcome="accepted") == 3
    warnings = [r for r in logs.records if r.name == "token_middleware.observe"]
    assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()  # throttled: once a minute


def test_observers_must_be_a_list_of_callables(token_issuer: LocalIssuer) -> None:
    from token_middleware.core.errors import ConfigurationError

    settings = Settings.from_mapping(token_issuer.settings())
    with pytest.raises(ConfigurationError, match="takes a list"):
        TokenValidator(settings, observers=PrometheusMetrics)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="function of the event"):
        TokenValidator(settings, observers=["token_middleware.metrics.PrometheusMetrics"])  # type: ignore[list-item]
    assert TokenValidator(settings).watch is None  # nothing configured: nothing on the hot path
