"""RFC 6750 in both directions: Authorization parsing, challenges, error bodies; AccessToken and scopes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from token_middleware.core.bearer import extract_token, parse_authorization, token_from_query
from token_middleware.core.errors import (
    BearerError,
    ExpiredToken,
    InsufficientScope,
    InvalidAudience,
    InvalidIssuer,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    RevocationUnavailable,
    RevokedToken,
)
from token_middleware.core.responses import error_response, prefers_html
from token_middleware.core.scopes import check_scopes, parse_scopes
from token_middleware.core.token import AccessToken

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"

PARSE = [
    pytest.param(None, TOKEN, id="no-header"),
    pytest.param(f"Bearer {TOKEN}", TOKEN, id="Bearer"),
    pytest.param(f"bearer {TOKEN}", TOKEN, id="bearer-lowercase"),
    pytest.param(f"BEARER {TOKEN}", TOKEN, id="BEARER-uppercase"),
    pytest.param(f"BeArEr {TOKEN}", TOKEN, id="BeArEr-mixed"),
    pytest.param(f"Bearer   {TOKEN}", TOKEN, id="extra-spaces-between"),
    pytest.param(f"  Bearer {TOKEN}  ", TOKEN, id="surrounding-spaces"),
    pytest.param("Bearer abc~+/==", "abc~+/==", id="b64token-charset-with-padding"),
    pytest.param("Basic YWxpY2U6cHc=", None, id="Basic-is-not-ours"),
    pytest.param("Digest username=x", None, id="Digest-is-not-ours"),
    pytest.param(f"Bearer{TOKEN}", None, id="no-space-is-another-scheme"),
    pytest.param(f"DPoP {TOKEN}", None, id="DPoP-is-not-ours"),
    pytest.param("", InvalidRequest, id="empty"),
    pytest.param("   ", InvalidRequest, id="blank"),
    pytest.param("Bearer", InvalidRequest, id="scheme-only"),
    pytest.param("Bearer ", InvalidRequest, id="scheme-and-space"),
    pytest.param(f"Bearer {TOKEN} {TOKEN}", InvalidRequest, id="two-tokens"),
    pytest.param(f"Bearer {TOKEN},{TOKEN}", InvalidRequest, id="comma-separated"),
    pytest.param(f"Bearer {TOKEN}, Basic x", InvalidRequest, id="comma-then-other-scheme"),
    pytest.param(f"Bearer {TOKEN}\t{TOKEN}", InvalidRequest, id="tab-between-tokens"),
    pytest.param(f"Bearer\t{TOKEN}", InvalidRequest, id="tab-after-scheme"),
    pytest.param("Bearer a=b", InvalidRequest, id="equals-inside"),
    pytest.param('Bearer "quoted"', InvalidRequest, id="quoted"),
    pytest.param("Bearer tök", InvalidRequest, id="non-ascii"),
    pytest.param("Bearer a\r\nX-Injected: 1", InvalidRequest, id="crlf"),
    pytest.param("Bearer " + "a" * (64 * 1024 + 1), InvalidRequest, id="huge-header"),
]


@pytest.mark.parametrize(("header", "expected"), PARSE)
def test_parse_authorization(header: str | None, expected: Any) -> None:
    if header is None:
        assert parse_authorization(None) is None
        return
    if isinstance(expected, type):
        with pytest.raises(expected) as excinfo:
            parse_authorization(header)
        assert excinfo.value.status_code == 400 and excinfo.value.error == "invalid_request"
        assert TOKEN not in excinfo.value.description
    else:
        assert parse_authorization(header) == expected


QUERY = [
    pytest.param(None, "", False, None, id="nothing"),
    pytest.param(f"Bearer {TOKEN}", "", False, TOKEN, id="header-only"),
    pytest.param(None, f"access_token={TOKEN}", False, None, id="query-ignored-by-default"),
    pytest.param(None, f"access_token={TOKEN}", True, TOKEN, id="query-when-allowed"),
    pytest.param(None, f"x=1&access_token={TOKEN}&y=2", True, TOKEN, id="query-among-others"),
    pytest.param(f"Bearer {TOKEN}", f"access_token={TOKEN}", True, InvalidRequest, id="header-and-query"),
    pytest.param(f"Bearer {TOKEN}", f"access_token={TOKEN}", False, TOKEN, id="header-and-query-not-allowed"),
    pytest.param(None, f"access_token={TOKEN}&access_token={TOKEN}", True, InvalidRequest, id="query-twice"),
    pytest.param(None, "access_token=", True, InvalidRequest, id="query-empty"),
    pytest.param(None, "access_token=a%20b", True, InvalidRequest, id="query-with-space"),
    pytest.param("Basic YWxpY2U6cHc=", f"access_token={TOKEN}", True, TOKEN, id="basic-header-plus-query"),
    pytest.param(None, "my_access_token=abc", True, None, id="similar-name"),
]


@pytest.mark.parametrize(("header", "query", "allow", "expected"), QUERY)
def test_extract_token(header: str | None, query: str, allow: bool, expected: Any) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            extract_token(header, query, allow_query=allow)
    else:
        assert extract_token(header, query, allow_query=allow) == expected


def test_token_from_query_without_query() -> None:
    assert token_from_query(None) is None and token_from_query("") is None


# -- errors ----------------------------------------------------------------------------------

CHALLENGES = [
    pytest.param(MissingToken(), 401, 'Bearer realm="orders-service"', id="missing-token-plain-challenge"),
    pytest.param(InvalidRequest("exactly one bearer token is allowed"), 400,
                 'Bearer realm="orders-service", error="invalid_request", '
                 'error_description="exactly one bearer token is allowed"', id="invalid-request"),
    pytest.param(InvalidToken(), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="the access token is invalid"',
                 id="invalid-token"),
    pytest.param(ExpiredToken(claim="exp"), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="the access token has expired"',
                 id="expired-token-subclass"),
    pytest.param(InsufficientScope(["orders:read", "orders:write"]), 403,
                 'Bearer realm="orders-service", error="insufficient_scope", '
                 'error_description="required scope: orders:read orders:write", scope="orders:read orders:write"',
                 id="insufficient-scope-all"),
    pytest.param(InsufficientScope(["a", "b"], any_of=True), 403,
                 'Bearer realm="orders-service", error="insufficient_scope", '
                 'error_description="one of these scopes is required: a b", scope="a b"', id="insufficient-scope-any"),
    pytest.param(RevokedToken(), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="the token has been revoked"',
                 id="revoked-token"),
    pytest.param(InvalidSignature(), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="the signature is not valid"',
                 id="invalid-signature"),
    pytest.param(InvalidIssuer(claim="iss"), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="the issuer is not trusted"',
                 id="invalid-issuer"),
    pytest.param(InvalidToken('say "hi"\\ \r\nX: y'), 401,
                 'Bearer realm="orders-service", error="invalid_token", error_description="say \\"hi\\"\\\\ X: y"',
                 id="quoting-and-control-characters"),
]


@pytest.mark.parametrize(("err", "status", "challenge"), CHALLENGES)
def test_www_authenticate(err: BearerError, status: int, challenge: str) -> None:
    assert err.status_code == status
    assert err.www_authenticate("orders-service") == challenge
    assert err.headers("orders-service") == [("WWW-Authenticate", challenge)]


def test_keys_unavailable_is_503_with_retry_after_and_no_challenge() -> None:
    err = KeysUnavailable(retry_after=7)
    assert err.status_code == 503
    assert err.www_authenticate("r") is None
    assert err.headers("r") == [("Retry-After", "7")]
    assert KeysUnavailable(retry_after=0).headers("r") == [("Retry-After", "1")]
    assert not isinstance(err, InvalidToken)


@pytest.mark.parametrize(
    ("err", "body"),
    [
        pytest.param(MissingToken(), {"error": "unauthorized", "error_description": "an access token is required"}, id="missing"),
        pytest.param(InvalidAudience(claim="aud"), {"error": "invalid_token", "error_description": "the token is not meant for this service"}, id="aud"),
        pytest.param(InsufficientScope(["x"]), {"error": "insufficient_scope", "error_description": "required scope: x"}, id="scope"),
        pytest.param(InvalidToken(""), {"error": "invalid_token"}, id="no-description"),
    ],
)
def test_to_dict(err: BearerError, body: dict[str, str]) -> None:
    assert err.to_dict() == body


def test_claim_attribute_and_repr() -> None:
    err = ExpiredToken(claim="exp")
    assert err.claim == "exp"
    assert repr(err) == "ExpiredToken('the access token has expired')"


# -- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        pytest.param(None, False, id="none"),
        pytest.param("application/json", False, id="json"),
        pytest.param("*/*", False, id="anything"),
        pytest.param("text/html,application/xhtml+xml,*/*;q=0.8", True, id="browser"),
        pytest.param("application/json, text/html", False, id="json-first"),
        pytest.param("text/html, application/json", True, id="html-first"),
        pytest.param("TEXT/HTML", True, id="case-insensitive"),
    ],
)
def test_prefers_html(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


def test_error_response_json() -> None:
    status, headers, body = error_response(InvalidToken(), "orders-service")
    assert status == "401 Unauthorized"
    h = dict(headers)
    assert h["WWW-Authenticate"].startswith('Bearer realm="orders-service", error="invalid_token"')
    assert h["Content-Type"] == "application/json"
    assert h["Content-Length"] == str(len(body))
    assert h["Cache-Control"] == "no-store"
    assert h["Vary"] == "Authorization"
    assert json.loads(body) == {"error": "invalid_token", "error_description": "the access token is invalid"}


def test_error_response_html_escapes() -> None:
    status, headers, body = error_response(InvalidRequest("<script>x</script>"), "r", accept="text/html")
    assert status == "400 Bad Request"
    assert dict(headers)["Content-Type"].startswith("text/html")
    assert b"<script>" not in body and b"&lt;script&gt;" in body


def test_error_response_503() -> None:
    status, headers, body = error_response(KeysUnavailable(retry_after=3), "r")
    h = dict(headers)
    assert status == "503 Service Unavailable"
    assert h["Retry-After"] == "3" and "WWW-Authenticate" not in h
    assert json.loads(body)["error"] == "temporarily_unavailable"


def test_a_failing_revocation_hook_is_answered_like_unavailable_keys() -> None:
    status, headers, body = error_response(RevocationUnavailable(), "r")
    h = dict(headers)
    assert status == "503 Service Unavailable"
    assert h["Retry-After"] == "5" and "WWW-Authenticate" not in h
    assert json.loads(body) == {"error": "temporarily_unavailable",
                                "error_description": "the token cannot be checked right now, retry shortly"}
    assert isinstance(RevocationUnavailable(), KeysUnavailable) and not isinstance(RevocationUnavailable(), InvalidToken)


def test_error_response_403_scope() -> None:
    status, headers, _ = error_response(InsufficientScope(["orders:write"]), "r")
    assert status == "403 Forbidden"
    assert dict(headers)["WWW-Authenticate"].endswith('scope="orders:write"')


# -- AccessToken and scopes ------------------------------------------------------------------


def _token(**claims: Any) -> AccessToken:
    return AccessToken(claims=claims, subject="alice", scopes=parse_scopes(claims, ("scope", "scp")), client_id="gw",
                       issuer="https://i", audience=("a",), expires_at=1.0, jti="j1", key_id="k", raw=TOKEN)


def test_access_token_repr_and_str_hide_the_raw_token() -> None:
    token = _token(scope="a b")
    for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
        assert TOKEN not in text and "c2ln" not in text
        assert "alice" in text
    assert token.raw == TOKEN


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        pytest.param({"scope": "a b  c"}, {"a", "b", "c"}, id="scope-string"),
        pytest.param({"scp": ["a", "b"]}, {"a", "b"}, id="scp-list"),
        pytest.param({"scope": "a", "scp": ["b"]}, {"a", "b"}, id="both-claims-union"),
        pytest.param({"scp": "a b"}, {"a", "b"}, id="scp-as-string"),
        pytest.param({"scope": ["a b", "c"]}, {"c"}, id="list-items-whole-never-split"),
        pytest.param({"scope": ""}, set(), id="empty-string"),
        pytest.param({"scope": 3}, set(), id="int-ignored"),
        pytest.param({"scp": ["a", 3, None]}, {"a"}, id="non-strings-ignored"),
        pytest.param({"roles": "admin"}, set(), id="other-claims-ignored"),
        pytest.param({}, set(), id="none"),
    ],
)
def test_scopes_from_claims(claims: dict[str, Any], scopes: set[str]) -> None:
    assert _token(**claims).scopes == frozenset(scopes)


def test_has_scopes() -> None:
    token = _token(scope="a b")
    assert token.has_scopes("a", "b") and not token.has_scopes("a", "c")
    assert token.has_any_scope("c", "b") and not token.has_any_scope("c")
    assert token.expires is not None and token.expires.timestamp() == 1.0


@pytest.mark.parametrize(
    ("token", "required", "any_of", "expected"),
    [
        pytest.param(None, ["a"], False, MissingToken, id="no-token"),
        pytest.param("ab", [], False, None, id="nothing-required"),
        pytest.param("ab", ["a", "b"], False, None, id="all-present"),
        pytest.param("ab", ["a", "c"], False, InsufficientScope, id="one-missing"),
        pytest.param("ab", ["c", "b"], True, None, id="any-of-present"),
        pytest.param("ab", ["c", "d"], True, InsufficientScope, id="any-of-missing"),
    ],
)
def test_check_scopes(token: str | None, required: list[str], any_of: bool, expected: type[BearerError] | None) -> None:
    tok = _token(scope="a b") if token else None
    if expected is None:
        assert check_scopes(tok, required, any_of=any_of) is tok
    else:
        with pytest.raises(expected) as excinfo:
            check_scopes(tok, required, any_of=any_of)
        if isinstance(excinfo.value, InsufficientScope):
            assert excinfo.value.required == tuple(required)


# -- any of all of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "required", "ok"),
    [
        pytest.param("a b", [["a", "b"], ["admin"]], True, id="first-alternative"),
        pytest.param("admin", [["a", "b"], ["admin"]], True, id="second-alternative"),
        pytest.param("a", [["a", "b"], ["admin"]], False, id="half-of-one"),
        pytest.param("b x", [["a", "b"], ["admin", "x"]], False, id="half-of-each"),
        pytest.param("a", ["a", ["admin"]], True, id="plain-scope-is-its-own-alternative"),
    ],
)
def test_any_of_all_of(scopes: str, required: list[Any], ok: bool) -> None:
    tok = _token(scope=scopes)
    if ok:
        assert check_scopes(tok, required) is tok
        return
    with pytest.raises(InsufficientScope) as excinfo:
        check_scopes(tok, required)
    named = [s for group in required for s in ([group] if isinstance(group, str) else group)]
    assert excinfo.value.required == tuple(dict.fromkeys(named))


def test_any_of_all_of_refusal_names_every_combination() -> None:
    err = InsufficientScope.for_requirement([("orders:read", "orders:write"), ("admin",)])
    assert err.description == "required scopes: orders:read orders:write, or admin"
    assert 'scope="orders:read orders:write admin"' in (err.www_authenticate("r") or "")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([[]], id="empty-alternative-would-allow-all"),
        pytest.param([["a b"]], id="space-in-scope"),
        pytest.param([[""]], id="empty-scope"),
    ],
)
def test_bad_requirements_are_refused_at_import_time(bad: list[Any]) -> None:
    from token_middleware.core.errors import ConfigurationError
    from token_middleware.core.scopes import requirement

    with pytest.raises(ConfigurationError):
        requirement(bad)
    with pytest.raises(ConfigurationError):
        requirement([["a"]], any_of=True)
