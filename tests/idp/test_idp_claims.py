"""What issue 15 adds to the JWT policy: dotted SCOPE_CLAIMS, ``absent`` in ACCEPTED_TYPES,
AUDIENCE_CLAIMS, and the start-up checks of the new settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from _idp_support import NOW

from token_middleware.core.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidClaim,
    InvalidToken,
    InvalidType,
    MissingClaim,
)
from token_middleware.core.scopes import MAX_PATH_DEPTH, claim_value, parse_scopes
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator

Sign = Callable[[Mapping[str, Any], Mapping[str, Any]], str]
RS256 = {"alg": "RS256", "kid": "idp-key-1", "typ": "at+jwt"}


def _claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": "https://idp.example", "sub": "alice", "aud": "orders-service",
                            "iat": NOW, "exp": NOW + 300}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def _deep(parts: int) -> dict[str, Any]:
    """Claims in which the path of ``parts`` parts ``n.n.….roles`` designates ``["deep"]``."""
    node: dict[str, Any] = {"roles": ["deep"]}
    for _ in range(parts - 1):
        node = {"n": node}
    return node


def _path(parts: int) -> str:
    return "n." * (parts - 1) + "roles"


# -- claim_value: the one path resolver -----------------------------------------------------

@pytest.mark.parametrize(("claims", "name", "expected"), [
    pytest.param({"scope": "a b"}, "scope", "a b", id="top-level"),
    pytest.param({"realm_access": {"roles": ["admin"]}}, "realm_access.roles", ["admin"], id="keycloak-realm-roles"),
    pytest.param({"resource_access": {"orders-service": {"roles": ["reader"]}}},
                 "resource_access.orders-service.roles", ["reader"], id="keycloak-client-roles"),
    pytest.param({"https://example.com/roles": ["admin"]}, "https://example.com/roles", ["admin"],
                 id="namespaced-url-with-dots-read-whole"),
    pytest.param({"resource_access": {"orders.example.com": {"roles": ["reader"]}}},
                 "resource_access.orders.example.com.roles", ["reader"], id="member-with-dots-inside-a-path"),
    pytest.param({"https://example.com/app": {"roles": ["x"]}}, "https://example.com/app.roles", ["x"],
                 id="namespaced-object-then-path"),
    pytest.param({"a.b": ["top"], "a": {"b": ["nested"]}}, "a.b", ["top"], id="exact-top-level-wins"),
    pytest.param({"r": {"a.b": {"c": "long"}, "a": {"b": {"c": "short"}}}}, "r.a.b.c", "long",
                 id="longest-member-wins"),
    pytest.param({"r": {"a.b": {}, "a": {"b": {"c": "short"}}}}, "r.a.b.c", None, id="no-backtracking"),
    pytest.param({"realm_access": "admin"}, "realm_access.roles", None, id="through-a-string"),
    pytest.param({"realm_access": [{"roles": ["x"]}]}, "realm_access.roles", None, id="through-a-list"),
    pytest.param({"realm_access": None}, "realm_access.roles", None, id="through-null"),
    pytest.param({"a": {"": {"b": 1}}}, "a..b", None, id="empty-part"),
    pytest.param({"a..b": 1}, "a..b", 1, id="empty-part-but-exact-top-level"),
    pytest.param({"a": {"b": 1}}, "a.", None, id="trailing-dot"),
    pytest.param(_deep(MAX_PATH_DEPTH), _path(MAX_PATH_DEPTH), ["deep"], id="at-the-depth-limit"),
    pytest.param(_deep(MAX_PATH_DEPTH + 1), _path(MAX_PATH_DEPTH + 1), None, id="beyond-the-depth-limit"),
    pytest.param({}, "realm_access.roles", None, id="missing"),
])
def test_claim_value(claims: dict[str, Any], name: str, expected: Any) -> None:
    assert claim_value(claims, name) == expected


@pytest.mark.parametrize(("claims", "names", "expected"), [
    pytest.param({"scope": "a b"}, ("scope",), {"a", "b"}, id="string-split"),
    pytest.param({"roles": ["orders admin", "reader"]}, ("roles",), {"reader"},
                 id="list-item-with-space-ignored-not-split"),
    pytest.param({"roles": ["a\tb", "a\nb", "ok"]}, ("roles",), {"ok"}, id="list-item-with-other-whitespace"),
    pytest.param({"roles": ["", "x"]}, ("roles",), {"x"}, id="empty-list-item"),
    pytest.param({"scope": "a", "realm_access": {"roles": ["b"]}, "resource_access": {"svc": {"roles": ["c"]}}},
                 ("scope", "realm_access.roles", "resource_access.svc.roles"), {"a", "b", "c"}, id="union"),
    pytest.param({"cognito:groups": ["admins"]}, ("cognito:groups",), {"admins"}, id="colon-in-name"),
    pytest.param({"realm_access": {"roles": "a b"}}, ("realm_access.roles",), {"a", "b"}, id="nested-string"),
])
def test_parse_scopes(claims: dict[str, Any], names: tuple[str, ...], expected: set[str]) -> None:
    assert parse_scopes(claims, names) == expected


# -- the validator: nested scopes are typed and read -----------------------------------------

KEYCLOAK_SCOPES = "scope,realm_access.roles,resource_access.orders-service.roles"


@pytest.mark.parametrize(("extra", "error"), [
    pytest.param({"realm_access": {"roles": ["admin", 3]}}, InvalidClaim, id="nested-list-with-int"),
    pytest.param({"realm_access": {"roles": {"admin": True}}}, InvalidClaim, id="nested-object"),
    pytest.param({"resource_access": {"orders-service": {"roles": True}}}, InvalidClaim, id="nested-bool"),
    pytest.param({"realm_access": "admin"}, None, id="intermediate-string-reads-as-absent"),
    pytest.param({"realm_access": {"roles": ["admin"]}}, None, id="well-typed"),
])
def test_nested_scope_claims_are_type_checked(make_validator: Callable[..., TokenValidator], sign: Sign,
                                              extra: dict[str, Any], error: type[Exception] | None) -> None:
    validator = make_validator(SCOPE_CLAIMS=KEYCLOAK_SCOPES)
    token = sign(RS256, _claims(**extra))
    if error is None:
        accepted = validator.validate(token)
        assert accepted.scopes == ({"admin"} if isinstance(extra["realm_access"], dict) else set())
    else:
        with pytest.raises(error) as caught:
            validator.validate(token)
        assert isinstance(caught.value, InvalidClaim)
        assert caught.value.claim in KEYCLOAK_SCOPES.split(",")


# -- ACCEPTED_TYPES: the word "absent" ------------------------------------------------------

@pytest.mark.parametrize(("accepted", "header", "ok"), [
    pytest.param("at+jwt,application/at+jwt", {}, False, id="default-refuses-no-typ"),
    pytest.param("absent", {}, True, id="absent-accepts-no-typ"),
    pytest.param("absent", {"typ": "at+jwt"}, False, id="absent-alone-refuses-a-typ"),
    pytest.param("at+jwt,absent", {"typ": "at+jwt"}, True, id="both-typ"),
    pytest.param("at+jwt,absent", {}, True, id="both-no-typ"),
    pytest.param("at+jwt,absent", {"typ": None}, False, id="typ-null-is-not-absent"),
    pytest.param("at+jwt,absent", {"typ": "absent"}, False, id="the-word-is-not-a-typ-value"),
    pytest.param("at+jwt,absent", {"typ": "JWT"}, False, id="jwt-still-refused"),
    pytest.param("ABSENT", {}, True, id="case-insensitive-word"),
])
def test_absent_type(make_validator: Callable[..., TokenValidator], sign: Sign,
                     accepted: str, header: dict[str, Any], ok: bool) -> None:
    validator = make_validator(ACCEPTED_TYPES=accepted)
    token = sign({"alg": "RS256", "kid": "idp-key-1", **header}, _claims())
    if ok:
        assert validator.validate(token).subject == "alice"
    else:
        with pytest.raises(InvalidType):
            validator.validate(token)


# -- AUDIENCE_CLAIMS ------------------------------------------------------------------------

COGNITO_LIKE = {"AUDIENCE_CLAIMS": "client_id", "REQUIRED_CLAIMS": "exp,iat,iss,sub,client_id"}


@pytest.mark.parametrize(("names", "extra", "error"), [
    pytest.param(COGNITO_LIKE, {"aud": None, "client_id": "orders-service"}, None, id="client-id-matches"),
    pytest.param(COGNITO_LIKE, {"aud": None, "client_id": "other-app"}, InvalidAudience, id="client-id-differs"),
    pytest.param(COGNITO_LIKE, {"aud": "orders-service"}, MissingClaim, id="aud-alone-is-not-enough"),
    pytest.param(COGNITO_LIKE, {"aud": None, "client_id": ["orders-service"]}, InvalidClaim,
                 id="client-id-must-be-a-string"),
    pytest.param({"AUDIENCE_CLAIMS": "aud,client_id"}, {"aud": "other", "client_id": "orders-service"}, None,
                 id="either-claim-may-carry-it"),
    pytest.param({"AUDIENCE_CLAIMS": "aud,client_id"}, {"aud": "other", "client_id": "other"}, InvalidAudience,
                 id="neither-carries-it"),
    pytest.param({}, {"aud": ["other", "orders-service"]}, None, id="default-aud-list"),
    pytest.param({}, {"aud": []}, InvalidAudience, id="default-aud-empty-list"),
    pytest.param({}, {"client_id": "orders-service", "aud": "other"}, InvalidAudience,
                 id="default-ignores-client-id"),
])
def test_audience_claims(make_validator: Callable[..., TokenValidator], sign: Sign, names: dict[str, str],
                         extra: dict[str, Any], error: type[Exception] | None) -> None:
    validator = make_validator(**names)
    token = sign(RS256, _claims(**extra))
    if error is None:
        assert validator.validate(token).subject == "alice"
    else:
        with pytest.raises(error):
            validator.validate(token)


def test_an_audience_claim_present_and_null_is_refused_when_required(
        make_validator: Callable[..., TokenValidator], sign: Sign) -> None:
    with pytest.raises(InvalidToken):
        make_validator(**COGNITO_LIKE).validate(sign(RS256, _claims(aud=None, client_id=None) | {"client_id": None}))


# -- the new settings, at start-up ----------------------------------------------------------

BASE = {"ISSUER": "https://idp.example", "AUDIENCE": "orders-service"}
INTRO = {"INTROSPECTION_URL": "https://idp.example/introspect", "CLIENT_ID": "orders-service", "CLIENT_SECRET": "s3cret"}


@pytest.mark.parametrize(("values", "setting", "words"), [
    pytest.param({"AUDIENCE_CLAIMS": "client_id"}, "AUDIENCE_CLAIMS", "Add client_id to REQUIRED_CLAIMS",
                 id="audience-claim-not-required"),
    pytest.param({"AUDIENCE_CLAIMS": ""}, "AUDIENCE_CLAIMS", "at least one", id="no-audience-claim"),
    pytest.param({**INTRO, "INTROSPECTION_URL": "http://idp.example/introspect"}, "INTROSPECTION_URL",
                 "https", id="introspection-over-plain-http"),
    pytest.param({**INTRO, "INTROSPECTION_URL": "ftp://idp.example/x"}, "INTROSPECTION_URL", "absolute http",
                 id="introspection-not-http"),
    pytest.param({**INTRO, "INTROSPECTION_URL": "https://u:p@idp.example/x"}, "INTROSPECTION_URL",
                 "credentials", id="introspection-url-with-credentials"),
    pytest.param({**INTRO, "CLIENT_SECRET": None}, "CLIENT_SECRET", "needs CLIENT_SECRET", id="no-secret"),
    pytest.param({**INTRO, "CLIENT_ID": ""}, "CLIENT_ID", "needs CLIENT_ID", id="no-client-id"),
    pytest.param({**INTRO, "CLIENT_SECRET": 42}, "CLIENT_SECRET", "string", id="secret-not-a-string"),
    pytest.param({**INTRO, "INTROSPECTION_CACHE_SECONDS": -1}, "INTROSPECTION_CACHE_SECONDS", ">= 0",
                 id="negative-cache"),
])
def test_bad_settings_stop_the_app(values: dict[str, Any], setting: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        Settings.from_mapping({**BASE, **values})
    assert caught.value.setting == setting


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/introspect", "http://localhost/x", "http://[::1]:8/x",
                                 "https://idp.example/introspect"])
def test_introspection_urls_allowed(url: str) -> None:
    settings = Settings.from_mapping({**BASE, **INTRO, "INTROSPECTION_URL": url})
    assert settings.introspection_url == url
    assert settings.introspection_required_claims == ("exp",)
    assert settings.introspection_cache_seconds == 60


def test_the_secret_is_never_in_repr_and_the_settings_round_trip() -> None:
    settings = Settings.from_mapping({**BASE, **INTRO})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert Settings.from_mapping(settings.as_mapping()) == settings


def test_the_new_names_are_read_from_the_environment() -> None:
    env = {f"TOKEN_MIDDLEWARE_{k}": v for k, v in {**BASE, **INTRO}.items()}
    env.update({"TOKEN_MIDDLEWARE_INTROSPECTION_REQUIRED_CLAIMS": "exp,sub",
                "TOKEN_MIDDLEWARE_INTROSPECTION_CACHE_SECONDS": "5",
                "TOKEN_MIDDLEWARE_AUDIENCE_CLAIMS": "aud,client_id",
                "TOKEN_MIDDLEWARE_REQUIRED_CLAIMS": "exp,iss,client_id"})
    settings = Settings.from_env(env)
    assert settings.introspection_required_claims == ("exp", "sub")
    assert settings.introspection_cache_seconds == 5
    assert settings.audience_claims == ("aud", "client_id")
    assert (settings.client_id, settings.client_secret) == ("orders-service", "s3cret")
