"""The validator's extension points (``is_revoked``, ``claim_checks``) and the untrusted-issuer
refusal, with real keys, real signed tokens and (for the no-refetch rule) a real JWKS server.

A hook can only refuse: every test that refuses also shows the same token accepted without
the hook (or with the hook saying yes), so none of them can pass by refusing everything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from _support import AUDIENCE, ISSUER, FakeClock, JWKSServer, Kit

from token_middleware.core.errors import (
    ConfigurationError,
    ExpiredToken,
    InsufficientScope,
    InvalidClaim,
    InvalidIssuer,
    InvalidSignature,
    KeysUnavailable,
    RevocationUnavailable,
    RevokedToken,
    UnknownKey,
)
from token_middleware.core.keys import KeySource, StaticKeySource, VerificationKey
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator
from token_middleware.wsgi import TokenMiddleware

HOOKS_LOG = "token_middleware.hooks"


class CountingSource:
    """A key source that counts lookups: a verified-cache hit makes none."""

    def __init__(self, inner: KeySource) -> None:
        self.inner = inner
        self.finds = 0

    def find(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        self.finds += 1
        return self.inner.find(kid, alg)

    def contains(self, key: VerificationKey) -> bool:
        return self.inner.contains(key)

    def prefetch(self) -> None:
        return None


@pytest.fixture
def counting(make_validator: Callable[..., TokenValidator]) -> CountingSource:
    (source,) = make_validator().key_sources
    assert isinstance(source, StaticKeySource)
    return CountingSource(source)


@pytest.fixture
def hooked(make_settings: Callable[..., Settings], clock: FakeClock,
           counting: CountingSource) -> Callable[..., TokenValidator]:
    def make(**hooks: Any) -> TokenValidator:
        return TokenValidator(make_settings(), keys=counting, cache_size=64, clock=clock, **hooks)

    return make


def hook_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == HOOKS_LOG and r.levelno == logging.WARNING]


# -- is_revoked -------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_and_the_hook_sees_jti_and_issuer(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    seen: list[tuple[str, str | None]] = []
    revoked = {(ISSUER, "j-bad")}

    def is_revoked(token: AccessToken) -> bool:
        seen.append((token.issuer, token.jti))
        return (token.issuer, token.jti) in revoked

    v = hooked(is_revoked=is_revoked)
    assert v.validate(kit.token(payload=kit.claims(jti="j-good"))).jti == "j-good"
    bad = kit.token(payload=kit.claims(jti="j-bad"))
    with pytest.raises(RevokedToken) as excinfo:
        v.validate(bad)
    err = excinfo.value
    assert (err.status_code, err.error, err.description) == (401, "invalid_token", "the token has been revoked")
    assert seen == [(ISSUER, "j-good"), (ISSUER, "j-bad")]


def test_revocation_applies_to_verified_cache_hits(kit: Kit, hooked: Callable[..., TokenValidator],
                                                   counting: CountingSource) -> None:
    revoked: set[str] = set()
    v = hooked(is_revoked=lambda token: token.jti in revoked)
    raw = kit.token(payload=kit.claims(jti="j1"))
    assert v.validate(raw).jti == "j1"
    assert counting.finds == 1
    revoked.add("j1")  # revoked after it was verified and cached
    with pytest.raises(RevokedToken):
        v.validate(raw)
    with pytest.raises(RevokedToken):
        v.authenticate(f"Bearer {raw}")
    # cached() never answers for a hooked validator (the hook may do I/O): "ask authenticate".
    assert v.cached(f"Bearer {raw}") is None
    assert counting.finds == 1, "the refusals above were cache hits, not new verifications"
    revoked.clear()  # asked every time: un-revoking works too
    assert v.authenticate(f"Bearer {raw}") is not None and counting.finds == 1


def test_cached_still_answers_without_a_hook(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    v = hooked()
    raw = kit.token()
    v.validate(raw)
    token = v.cached(f"Bearer {raw}")
    assert token is not None and token.raw == raw


def test_the_hook_only_sees_tokens_that_passed_every_check(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    calls: list[AccessToken] = []
    v = hooked(is_revoked=lambda token: bool(calls.append(token)))
    with pytest.raises(InvalidSignature):
        v.validate(kit.token(key=kit.other))
    with pytest.raises(ExpiredToken):
        v.validate(kit.token(payload=kit.claims(iat=kit.now - 600, exp=kit.now - 100)))
    assert calls == []
    v.validate(kit.token())
    assert len(calls) == 1


def _denylist_down(token: AccessToken) -> bool:
    raise ConnectionError("denylist at 10.0.0.7:6379 refused the connection")


def _forgot_to_return(token: AccessToken) -> Any:
    (token.issuer, token.jti) in {("x", "y")}  # noqa: B015 - no return statement: the bug tested here


@pytest.mark.parametrize(
    ("hook", "cause"),
    [
        pytest.param(_denylist_down, "ConnectionError (denylist at 10.0.0.7:6379 refused the connection)", id="raises"),
        pytest.param(_forgot_to_return, "returned None", id="returns-None"),
    ],
)
def test_a_failing_hook_answers_503_never_401_or_500(kit: Kit, hooked: Callable[..., TokenValidator],
                                                     hook: Callable[[AccessToken], bool], cause: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=HOOKS_LOG)
    raw = kit.token(payload=kit.claims(jti="j-503"))
    v = hooked(is_revoked=hook)
    for _ in range(3):
        with pytest.raises(RevocationUnavailable) as excinfo:
            v.validate(raw)
    err = excinfo.value
    assert isinstance(err, KeysUnavailable) and err.status_code == 503
    assert err.description == "the token cannot be checked right now, retry shortly"
    assert err.headers("r") == [("Retry-After", "5")]
    logged = hook_warnings(caplog)
    assert len(logged) == 1, "throttled: one WARNING for three failures"
    assert f"is_revoked hook {hook.__name__}" in logged[0] and cause in logged[0]
    assert raw not in caplog.text
    assert hooked(is_revoked=lambda token: False).validate(raw).jti == "j-503"


def test_a_failing_hook_through_the_middleware_is_a_503_response(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    def broken(token: AccessToken) -> bool:
        raise RuntimeError("bug in the hook")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise AssertionError("never reached")

    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured.update(status=status, headers=dict(headers))

    raw = kit.token()
    environ = {"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"Bearer {raw}"}
    mw = TokenMiddleware(app, validator=hooked(is_revoked=broken), prefetch=False)
    body = b"".join(mw(environ, start_response))
    assert captured["status"].startswith("503") and captured["headers"]["Retry-After"] == "5"
    assert json.loads(body) == {"error": "temporarily_unavailable",
                                "error_description": "the token cannot be checked right now, retry shortly"}
    assert raw.encode() not in body


def test_a_hook_may_choose_its_own_refusal(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    def is_revoked(token: AccessToken) -> bool:
        raise RevokedToken("the session was closed")

    with pytest.raises(RevokedToken, match="the session was closed"):
        hooked(is_revoked=is_revoked).validate(kit.token())


# -- claim_checks -----------------------------------------------------------------------------


def tenant_is_acme(claims: Any) -> None:
    if claims.get("tenant") != "acme":
        raise InvalidClaim("the token is for another tenant", claim="tenant")


def test_a_claim_check_refuses_with_its_own_description(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    v = hooked(claim_checks=[tenant_is_acme])
    assert v.validate(kit.token(payload=kit.claims(tenant="acme"))).claims["tenant"] == "acme"
    with pytest.raises(InvalidClaim) as excinfo:
        v.validate(kit.token(payload=kit.claims(tenant="umbrella")))
    assert excinfo.value.description == "the token is for another tenant" and excinfo.value.claim == "tenant"


def test_claim_checks_run_after_the_built_in_checks_and_once_per_token(kit: Kit,
                                                                       hooked: Callable[..., TokenValidator]) -> None:
    calls: list[str] = []
    v = hooked(claim_checks=[lambda claims: calls.append("first"), lambda claims: calls.append("second")])
    with pytest.raises(ExpiredToken):
        v.validate(kit.token(payload=kit.claims(iat=kit.now - 600, exp=kit.now - 100)))
    assert calls == []
    raw = kit.token()
    v.validate(raw)
    v.validate(raw)  # a cache hit: the verdict was cached with the token
    assert calls == ["first", "second"]


def _needs_admin(claims: Any) -> None:
    raise InsufficientScope(["admin"])


@pytest.mark.parametrize(
    ("check", "expected", "passing_claims"),
    [
        pytest.param(lambda claims: claims.get("tenant") == "acme", InvalidClaim, {"tenant": "acme"},
                     id="predicate-returning-False"),
        pytest.param(lambda claims: claims["no-such-claim"], InvalidClaim, {"no-such-claim": 1}, id="KeyError"),
        pytest.param(lambda claims: claims.update(sub="mallory"), InvalidClaim, None, id="claims-are-read-only"),
        pytest.param(_needs_admin, InsufficientScope, None, id="BearerError-passes-through"),
    ],
)
def test_a_claim_check_that_fails_refuses_never_500(kit: Kit, hooked: Callable[..., TokenValidator],
                                                    check: Callable[[Any], object], expected: type[Exception],
                                                    passing_claims: dict[str, Any] | None) -> None:
    v = hooked(claim_checks=[check])
    refused = kit.token(payload=kit.claims(tenant="umbrella"))
    with pytest.raises(expected):
        v.validate(refused)
    if passing_claims is not None:  # the same check lets the right claims through
        assert v.validate(kit.token(payload=kit.claims(**passing_claims))).subject == "alice"
    else:  # the refusal came from the check, not from the token
        assert hooked().validate(refused).subject == "alice"


def test_a_broken_claim_check_is_logged_without_token_material(kit: Kit, hooked: Callable[..., TokenValidator],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    def check_email(claims: Any) -> None:
        raise ValueError(f"cannot parse {claims['email']}")

    caplog.set_level(logging.WARNING, logger=HOOKS_LOG)
    raw = kit.token(payload=kit.claims(email="secret-address@example.org", jti="j-log"))
    with pytest.raises(InvalidClaim) as excinfo:
        hooked(claim_checks=[check_email]).validate(raw)
    assert excinfo.value.description == InvalidClaim.default_description
    (line,) = hook_warnings(caplog)
    assert "check_email" in line and "ValueError" in line and "j-log" in line
    assert "secret-address" not in caplog.text and raw not in caplog.text
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


# -- explain ----------------------------------------------------------------------------------


def test_explain_lists_claim_checks_by_name_and_the_revocation(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    v = hooked(claim_checks=[tenant_is_acme], is_revoked=lambda token: token.jti == "j-bad")
    names = [step.name for step in v.claim_steps]
    assert names[-1] == "claim check: tenant_is_acme"
    good = v.explain(kit.token(payload=kit.claims(tenant="acme", jti="j-ok")))
    assert [c.name for c in good][-2:] == ["claim check: tenant_is_acme", "revocation"]
    assert all(c.passed for c in good), good
    bad = {c.name: c for c in v.explain(kit.token(payload=kit.claims(tenant="x", jti="j-bad")))}
    assert bad["claim check: tenant_is_acme"].passed is False
    assert "another tenant" in bad["claim check: tenant_is_acme"].detail
    assert bad["revocation"].passed is False and "revoked" in bad["revocation"].detail
    unsigned = {c.name: c for c in v.explain(kit.token(key=kit.other))}
    assert unsigned["revocation"].passed is None


# -- start-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hooks", "words"),
    [
        pytest.param({"is_revoked": {"jti"}}, "is_revoked must be a function", id="is_revoked-a-set"),
        pytest.param({"claim_checks": tenant_is_acme}, "claim_checks=[check_tenant]", id="one-function-not-a-list"),
        pytest.param({"claim_checks": ["tenant_is_acme"]}, "claim_checks must hold functions", id="a-name"),
        pytest.param({"claim_checks": "tenant_is_acme"}, "claim_checks takes a list", id="a-string"),
    ],
)
def test_bad_hooks_stop_start_up_naming_the_fix(make_settings: Callable[..., Settings], hooks: dict[str, Any],
                                                words: str) -> None:
    with pytest.raises(ConfigurationError, match=words.replace("[", r"\[").replace("]", r"\]")):
        TokenValidator(make_settings(), **hooks)


# -- a foreign issuer: "the issuer is not trusted", and no key lookup ---------------------------


def test_a_foreign_issuer_is_told_the_issuer_is_not_trusted(kit: Kit, hooked: Callable[..., TokenValidator],
                                                            counting: CountingSource) -> None:
    v = hooked()
    foreign = kit.token(header=kit.header(kid="their-key"), payload=kit.claims(iss="https://evil.test"), key=kit.other)
    with pytest.raises(InvalidIssuer) as excinfo:
        v.validate(foreign)
    assert excinfo.value.description == "the issuer is not trusted"
    assert counting.finds == 0, "no key lookup for a foreign issuer"
    # The same token with our iss is an unknown key: the iss only chose between two refusals.
    with pytest.raises(UnknownKey):
        v.validate(kit.token(header=kit.header(kid="their-key"), key=kit.other))
    assert counting.finds == 1


def test_a_foreign_issuer_never_costs_a_jwks_fetch(kit: Kit, jwks_server: JWKSServer, clock: FakeClock) -> None:
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": jwks_server.jwks_url,
                                      "JWKS_MIN_REFRESH_SECONDS": 0})
    v = TokenValidator(settings, clock=clock)
    foreign_iss = kit.claims(iss="https://evil.test")
    for _ in range(3):  # no keys yet, then an unknown kid: neither fetches for a foreign issuer
        with pytest.raises(InvalidIssuer):
            v.validate(kit.token(header=kit.header(kid="unknown"), payload=foreign_iss, key=kit.other))
    assert jwks_server.count(None) == 0
    assert v.validate(kit.token()).subject == "alice"
    fetched = jwks_server.count(None)
    assert fetched == 1
    with pytest.raises(UnknownKey):  # our own issuer's unknown kid does refetch (rotation)
        v.validate(kit.token(header=kit.header(kid="unknown"), key=kit.other))
    assert jwks_server.count(None) == fetched + 1


def test_a_tampered_last_signature_character_is_a_bad_signature(kit: Kit, hooked: Callable[..., TokenValidator]) -> None:
    raw = kit.token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for tampered in {raw[:-1] + alphabet[(alphabet.index(raw[-1]) + n) % 64] for n in (1, 2, 3)}:
        with pytest.raises(InvalidSignature) as excinfo:
            hooked().validate(tampered)
        assert excinfo.value.description == "the signature is not valid"
