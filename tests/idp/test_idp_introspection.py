"""RFC 7662 introspection of opaque tokens, against the test kit's loopback endpoint.

Every call goes over real loopback HTTP to :class:`LoopbackIntrospection`, which counts the
requests it gets on the server side; time is a FakeClock shared by the service and the endpoint,
so cache expiry and back-off are driven by hand, never by sleeping.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _idp_support import NOW, FakeClock

from token_middleware.core.errors import (
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    KeysUnavailable,
    MalformedToken,
    MissingClaim,
    RevokedToken,
    TokenTooLarge,
    UnsupportedSerialization,
)
from token_middleware.core.introspection import (
    InactiveToken,
    IntrospectionUnavailable,
    Introspector,
    basic_credential,
)
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.observe import Event, Validation
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LoopbackIntrospection, LoopbackJWKS
from token_middleware.wsgi import TokenMiddleware

AUDIENCE = "orders-service"


@pytest.fixture
def endpoint(clock: FakeClock) -> Iterator[LoopbackIntrospection]:
    with LoopbackIntrospection(clock=clock) as server:
        yield server


@pytest.fixture
def make(endpoint: LoopbackIntrospection, jwks: LoopbackJWKS, clock: FakeClock) -> Callable[..., TokenValidator]:
    """``make(**names, observers=…, is_revoked=…)``: a validator introspecting at ``endpoint``."""

    def build(observers: Any = (), is_revoked: Any = None, cache_size: int | None = None,
              **names: Any) -> TokenValidator:
        values = {"ISSUER": endpoint.issuer, "AUDIENCE": AUDIENCE, "JWKS_URL": jwks.jwks_url,
                  "INTROSPECTION_CACHE_SECONDS": 5, **endpoint.settings(), **names}
        sized = {} if cache_size is None else {"cache_size": cache_size}
        return TokenValidator(Settings.from_mapping(values), clock=clock, observers=observers,
                              is_revoked=is_revoked, **sized)

    return build


def calls(endpoint: LoopbackIntrospection) -> int:
    return endpoint.requests.get("/introspect", 0)


# -- accepted, cached, refused ----------------------------------------------------------------

def test_an_active_token_is_accepted_with_its_scopes(endpoint: LoopbackIntrospection,
                                                     make: Callable[..., TokenValidator]) -> None:
    token = endpoint.issue(scope="orders:read orders:write", sub="alice", client_id="shop-frontend", jti="t-1")
    accepted = make().validate(token)
    assert (accepted.subject, accepted.client_id, accepted.jti) == ("alice", "shop-frontend", "t-1")
    assert accepted.scopes == {"orders:read", "orders:write"} and accepted.raw == token
    assert accepted.key_id is None and accepted.expires_at == NOW + 300
    # RFC 7662 §2.1: POST, form-encoded token and hint, our credential as HTTP Basic.
    assert endpoint.forms == [{"token": token, "token_type_hint": "access_token"}]
    assert endpoint.refused_credentials == 0


def test_a_cache_hit_makes_no_call_and_costs_no_parsing(endpoint: LoopbackIntrospection,
                                                        make: Callable[..., TokenValidator]) -> None:
    validator = make()
    token = endpoint.issue(scope="orders:read")
    first = validator.validate(token)
    assert validator.validate(token) is first
    assert validator.cached(f"Bearer {token}") is first
    assert validator.authenticate(f"Bearer {token}") is first
    assert calls(endpoint) == 1


def test_a_full_cache_still_keeps_an_answer_after_one_call(endpoint: LoopbackIntrospection,
                                                          make: Callable[..., TokenValidator]) -> None:
    # A full cache admits a JWT on its second verification (a miss costs a local verify), but
    # an introspection answer on the first: a miss costs a call to the authorization server.
    validator = make(cache_size=2)
    kept = [endpoint.issue(scope="orders:read", jti=f"kept-{i}") for i in range(2)]
    for token in kept:
        validator.validate(token)
    new = endpoint.issue(scope="orders:read", jti="new")
    first = validator.validate(new)
    assert validator.validate(new) is first
    assert calls(endpoint) == 3


def test_a_revoked_token_is_refused_once_the_cache_time_has_passed(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], clock: FakeClock) -> None:
    validator = make(INTROSPECTION_CACHE_SECONDS=5)
    token = endpoint.issue(scope="orders:read")
    validator.validate(token)
    endpoint.revoke(token)
    clock.advance(5)
    assert validator.validate(token).scopes == {"orders:read"}  # still within the cache time
    assert calls(endpoint) == 1
    clock.advance(0.001)
    with pytest.raises(InactiveToken) as caught:
        validator.validate(token)
    assert (caught.value.status_code, caught.value.error, caught.value.reason) == (401, "invalid_token", "inactive")
    assert calls(endpoint) == 2


def test_a_positive_answer_is_never_cached_beyond_its_exp(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], clock: FakeClock) -> None:
    validator = make(INTROSPECTION_CACHE_SECONDS=60)
    token = endpoint.issue(scope="orders:read", ttl=3)
    validator.validate(token)
    clock.advance(3.001)  # past exp, within the cache time and within LEEWAY
    with pytest.raises(InactiveToken):  # asked again: the endpoint says it has expired
        validator.validate(token)
    assert calls(endpoint) == 2


@pytest.mark.parametrize("seconds", [0])
def test_a_zero_cache_time_asks_every_time(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator],
                                           seconds: int) -> None:
    validator = make(INTROSPECTION_CACHE_SECONDS=seconds)
    token = endpoint.issue()
    for _ in range(3):
        validator.validate(token)
    assert calls(endpoint) == 3


def test_negative_answers_are_not_cached(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    validator = make()
    for _ in range(2):
        with pytest.raises(InactiveToken):
            validator.validate("unknown-opaque-token")
    endpoint.register("unknown-opaque-token", exp=NOW + 60)
    assert validator.validate("unknown-opaque-token").subject == ""
    assert calls(endpoint) == 3


# -- the answer gets a JWT's claim checks -----------------------------------------------------

@pytest.mark.parametrize(("members", "names", "error"), [
    pytest.param({"iss": "https://other.example"}, {}, InvalidIssuer, id="foreign-iss"),
    pytest.param({"iss": None}, {}, None, id="absent-iss-not-checked"),
    pytest.param({"aud": "billing-service"}, {}, InvalidAudience, id="foreign-aud"),
    pytest.param({"aud": ["billing-service", AUDIENCE]}, {}, None, id="aud-list-with-ours"),
    pytest.param({}, {"INTROSPECTION_REQUIRED_CLAIMS": "exp,aud"}, MissingClaim, id="required-aud-absent"),
    pytest.param({"exp": None}, {}, MissingClaim, id="exp-required-by-default"),
    pytest.param({"exp": None}, {"INTROSPECTION_REQUIRED_CLAIMS": ""}, None, id="exp-not-required"),
    pytest.param({"exp": "1700000300"}, {}, InvalidClaim, id="exp-a-string"),
    pytest.param({"exp": NOW - 31}, {}, ExpiredToken, id="expired-beyond-leeway"),
    pytest.param({"nbf": NOW + 31}, {}, InvalidClaim, id="not-yet-valid"),
    pytest.param({"sub": 42}, {}, InvalidClaim, id="sub-not-a-string"),
    pytest.param({"scp": ["orders:read", 7]}, {}, InvalidClaim, id="scp-badly-typed"),
    pytest.param({"client_id": "orders-service"}, {"AUDIENCE_CLAIMS": "client_id",
                                                    "INTROSPECTION_REQUIRED_CLAIMS": "exp,client_id",
                                                    "REQUIRED_CLAIMS": "exp,iat,iss,sub,client_id"},
                 None, id="audience-in-client-id"),
])
def test_the_answer_gets_the_claim_checks(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator],
                                          members: dict[str, Any], names: dict[str, str],
                                          error: type[Exception] | None) -> None:
    token = endpoint.issue(scope="orders:read", **members)
    endpoint.clock = lambda: 0.0  # a lax endpoint: it says active whatever exp says; we check
    validator = make(**names)
    if error is None:
        assert validator.validate(token)
    else:
        with pytest.raises(error):
            validator.validate(token)


def test_nested_scope_claims_and_deployer_checks_apply_to_the_answer(
        endpoint: LoopbackIntrospection, jwks: LoopbackJWKS, clock: FakeClock) -> None:
    def tenant(claims: Any) -> None:
        if claims.get("tenant") != "acme":
            raise InvalidClaim("another tenant", claim="tenant")

    settings = Settings.from_mapping({"ISSUER": endpoint.issuer, "AUDIENCE": AUDIENCE, "JWKS_URL": jwks.jwks_url,
                                      "SCOPE_CLAIMS": "scope,realm_access.roles", **endpoint.settings()})
    validator = TokenValidator(settings, clock=clock, claim_checks=[tenant])
    good = endpoint.issue(scope="a", realm_access={"roles": ["admin"]}, tenant="acme")
    assert validator.validate(good).scopes == {"a", "admin"}
    with pytest.raises(InvalidClaim, match="another tenant"):
        validator.validate(endpoint.issue(tenant="other"))


def test_is_revoked_is_asked_for_introspected_tokens_too(endpoint: LoopbackIntrospection,
                                                         make: Callable[..., TokenValidator]) -> None:
    validator = make(is_revoked=lambda token: token.jti == "bad")
    assert validator.validate(endpoint.issue(jti="good"))
    bad = endpoint.issue(jti="bad")
    for _ in range(2):  # the first time, and again from the cache
        with pytest.raises(RevokedToken):
            validator.validate(bad)


# -- which tokens are introspected ------------------------------------------------------------

def test_compact_jws_tokens_are_still_validated_with_keys(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], idp_key: SigningKey) -> None:
    validator = make()
    jwt = TokenIssuer(endpoint.issuer, idp_key, clock=lambda: NOW).mint(sub="bob", audience=AUDIENCE)
    assert validator.validate(jwt).subject == "bob"
    with pytest.raises(MalformedToken):
        validator.validate("not.a.jws")
    assert calls(endpoint) == 0


@pytest.mark.parametrize(("raw", "error"), [
    pytest.param("has space", MalformedToken, id="not-a-b64token"),
    pytest.param("x" * 9000, TokenTooLarge, id="too-large"),
])
def test_malformed_opaque_tokens_are_never_sent(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator],
                                                raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        make().validate(raw)
    assert calls(endpoint) == 0


def test_without_introspection_an_opaque_token_is_refused_as_before(jwks: LoopbackJWKS, clock: FakeClock) -> None:
    validator = TokenValidator(Settings.from_mapping({"ISSUER": "https://idp.example", "AUDIENCE": AUDIENCE,
                                                      "JWKS_URL": jwks.jwks_url}), clock=clock)
    assert validator.introspector is None
    with pytest.raises(MalformedToken):
        validator.validate("an-opaque-token")
    with pytest.raises(UnsupportedSerialization):
        validator.validate("a.b.c.d.e")


def test_a_jwe_shaped_token_is_introspected(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn"
    endpoint.register(jwe, exp=NOW + 60, scope="orders:read")
    assert make().validate(jwe).scopes == {"orders:read"}
    assert endpoint.forms[-1]["token"] == jwe


# -- outages: 503 with Retry-After, never a 401 ------------------------------------------------

@pytest.mark.parametrize(("mode", "words"), [
    pytest.param("500", "HTTP 500 from", id="server-error"),
    pytest.param("not_json", "is not JSON", id="html-page"),
    pytest.param("no_active", "boolean 'active'", id="no-active-member"),
    pytest.param("redirect", "redirect", id="redirect"),
])
def test_an_endpoint_that_cannot_answer_gives_503(endpoint: LoopbackIntrospection,
                                                  make: Callable[..., TokenValidator], mode: str, words: str) -> None:
    endpoint.mode = mode
    with pytest.raises(IntrospectionUnavailable) as caught:
        make().validate(endpoint.issue())
    error = caught.value
    assert isinstance(error, KeysUnavailable) and error.status_code == 503
    assert error.headers("orders-service") == [("Retry-After", "5")]
    assert words in (error.cause or "") and endpoint.introspection_url in (error.cause or "")
    assert error.reason == "introspection_unavailable"


def test_active_must_be_exactly_true(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    endpoint.register("stringly", active="true", exp=NOW + 60)  # members override: "active": "true"
    with pytest.raises(IntrospectionUnavailable):
        make().validate("stringly")


def test_a_redirect_is_never_followed(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator],
                                      clock: FakeClock) -> None:
    with LoopbackIntrospection(clock=clock) as elsewhere:
        endpoint.mode = "redirect"
        endpoint.redirect_to = elsewhere.introspection_url
        with pytest.raises(IntrospectionUnavailable, match="retry shortly") as caught:
            make().validate(endpoint.issue())
        assert elsewhere.requests == {}  # neither the token nor the secret went there
        assert elsewhere.introspection_url in (caught.value.cause or "")


def test_a_refused_credential_names_the_settings_to_fix(endpoint: LoopbackIntrospection,
                                                        make: Callable[..., TokenValidator]) -> None:
    with pytest.raises(IntrospectionUnavailable) as caught:
        make(CLIENT_SECRET="wrong").validate(endpoint.issue())
    assert "HTTP 401" in (caught.value.cause or "") and "CLIENT_SECRET" in (caught.value.cause or "")
    assert endpoint.refused_credentials == 1


def test_an_unreachable_endpoint_gives_503_and_cached_answers_still_serve(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], clock: FakeClock) -> None:
    validator = make(INTROSPECTION_CACHE_SECONDS=30)
    known = endpoint.issue(scope="orders:read")
    fresh = endpoint.issue(scope="orders:read")
    validator.validate(known)
    endpoint.stop()
    with pytest.raises(IntrospectionUnavailable) as caught:
        validator.validate(fresh)
    assert "connection refused" in (caught.value.cause or "")
    assert validator.validate(known).scopes == {"orders:read"}  # from the cache, during the outage


def test_after_a_failure_new_tokens_fail_at_once_for_retry_after_seconds(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], clock: FakeClock) -> None:
    validator = make(JWKS_MIN_REFRESH_SECONDS=3)
    endpoint.mode = "500"
    with pytest.raises(IntrospectionUnavailable) as first:
        validator.validate(endpoint.issue())
    assert first.value.retry_after == 3
    endpoint.mode = "ok"
    token = endpoint.issue()
    clock.advance(2.9)
    with pytest.raises(IntrospectionUnavailable) as second:
        validator.validate(token)
    assert "HTTP 500" in (second.value.cause or "")
    assert calls(endpoint) == 1  # failed at once, no call
    clock.advance(0.1)
    assert validator.validate(token)
    assert calls(endpoint) == 2


def test_concurrent_requests_for_one_token_share_one_call(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    validator = make(HTTP_TIMEOUT=30)
    token = endpoint.issue(scope="orders:read")
    endpoint.mode = "hang"
    results: list[Any] = []

    def request() -> None:
        try:
            results.append(validator.validate(token))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert endpoint.hanging.wait(10)
    introspector = validator.introspector
    assert introspector is not None
    deadline = time.monotonic() + 10  # waits for a condition; the test's outcome never depends on it
    while introspector._flights.get(token) is None or introspector._flights[token].waiters < 7:
        assert time.monotonic() < deadline, "the requests never joined the call"
        time.sleep(0.005)
    endpoint.release()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and all(getattr(r, "scopes", None) == {"orders:read"} for r in results), results
    assert calls(endpoint) == 1
    assert len({id(r.claims) for r in results}) == 8  # each request got its own copy of the answer


# -- never logged, never shown ----------------------------------------------------------------

def test_neither_the_token_nor_the_secret_is_ever_logged(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    validator = make()
    token = endpoint.issue()
    validator.validate(token)
    for mode in ("500", "redirect"):
        endpoint.mode = mode
        with pytest.raises(IntrospectionUnavailable):
            make().validate(endpoint.issue())
    with pytest.raises(IntrospectionUnavailable):
        make(CLIENT_SECRET="the-wrong-secret").validate(token)
    text = caplog.text + repr(validator.introspector) + repr(validator.settings)
    assert "HTTP 500" in caplog.text and "redirect" in caplog.text
    for secret in (token, endpoint.client_secret, "the-wrong-secret",
                   basic_credential(endpoint.client_id, endpoint.client_secret)[6:]):
        assert secret not in text


@pytest.mark.parametrize(("client_id", "secret"), [("orders-service", "a:b c+d%e"), ("svc:1", "é-ünïcode")])
def test_the_credential_is_form_encoded_before_basic(clock: FakeClock, jwks: LoopbackJWKS,
                                                     client_id: str, secret: str) -> None:
    with LoopbackIntrospection(client_id=client_id, client_secret=secret, clock=clock) as endpoint:
        settings = Settings.from_mapping({"ISSUER": endpoint.issuer, "AUDIENCE": AUDIENCE,
                                          "JWKS_URL": jwks.jwks_url, **endpoint.settings()})
        assert TokenValidator(settings, clock=clock).validate(endpoint.issue()).subject == "alice"
        assert endpoint.refused_credentials == 0


def test_the_introspector_needs_its_settings() -> None:
    settings = Settings.from_mapping({"ISSUER": "https://idp.example", "AUDIENCE": AUDIENCE})
    with pytest.raises(ValueError, match="INTROSPECTION_URL"):
        Introspector(settings, claim_checks=(), build=lambda raw, claims: None)  # type: ignore[arg-type,return-value]


# -- the same answers on the wire, the same events for metrics and audit -----------------------

def _call(app: Any, token: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    result = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_AUTHORIZATION": f"Bearer {token}",
                  "HTTP_ACCEPT": "application/json"}, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()  # as a WSGI server does: resets the token context
    return seen["status"], seen["headers"], json.loads(body)


def test_the_wsgi_answers(endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    def view(environ: Any, start_response: Any) -> list[bytes]:
        token = environ["token_middleware.access_token"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"sub": token.subject, "scopes": sorted(token.scopes)}).encode()]

    app = TokenMiddleware(view, validator=make(), prefetch=False)
    good = endpoint.issue(scope="orders:read", sub="alice")
    assert _call(app, good) == ("200 OK", {"Content-Type": "application/json"},
                                {"sub": "alice", "scopes": ["orders:read"]})
    status, headers, body = _call(app, "revoked-or-unknown")
    assert status.startswith("401") and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert body == {"error": "invalid_token", "error_description": "the access token is not active"}
    endpoint.stop()
    status, headers, body = _call(app, "another-unknown-token")
    assert status.startswith("503") and headers["Retry-After"] == "5" and "WWW-Authenticate" not in headers
    assert body["error"] == "temporarily_unavailable" and "another-unknown-token" not in json.dumps(body)


def test_observers_see_introspected_verdicts_like_jwt_ones(endpoint: LoopbackIntrospection,
                                                           make: Callable[..., TokenValidator]) -> None:
    events: list[Event] = []
    validator = make(observers=[events.append])
    token = endpoint.issue()
    validator.validate(token)
    validator.cached(f"Bearer {token}")
    with pytest.raises(InactiveToken):
        validator.validate("unknown")
    endpoint.mode = "500"
    with pytest.raises(IntrospectionUnavailable):
        validator.validate("another")
    validations = [e for e in events if isinstance(e, Validation)]
    assert [(v.outcome, v.reason, v.cached) for v in validations] == [
        ("accepted", None, False), ("accepted", None, True),
        ("refused", "inactive", False), ("refused", "introspection_unavailable", False)]


def test_explain_says_an_opaque_token_is_introspected_and_asks_nothing(
        endpoint: LoopbackIntrospection, make: Callable[..., TokenValidator]) -> None:
    checks = make().explain(endpoint.issue())
    assert [(c.name, c.passed) for c in checks] == [("size", True), ("form", None)]
    assert endpoint.introspection_url in checks[-1].detail and calls(endpoint) == 0
