"""The recipes of docs/identity-providers.md, each against a token shaped as its provider documents.

The settings come from the doc itself: every ``<!-- recipe: NAME -->`` marker is followed by an
environment block, a Flask block and a Django block, and the first test proves that the three
mean exactly the same settings. The provider tests then use the environment block as it is,
with only ``JWKS_URL`` pointed at a loopback JWKS that serves the test key. Each test's
docstring names the documentation page its token's shape comes from.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from _idp_support import NOW, FakeClock

from token_middleware.core.errors import (
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    InvalidType,
    MissingClaim,
)
from token_middleware.core.issuer import SigningKey
from token_middleware.core.settings import PREFIX, Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LoopbackJWKS, sign_exact

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity-providers.md"
_MARKER = re.compile(r"<!-- recipe: ([a-z0-9-]+) -->")
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
RECIPES = ("keycloak", "entra-v2", "entra-v1", "auth0", "okta", "cognito", "google", "django-oauth-toolkit")

Sign = Callable[[Mapping[str, Any], Mapping[str, Any]], str]


def _blocks(name: str) -> tuple[str, str, str]:
    text = DOC.read_text(encoding="utf-8")
    marker = f"<!-- recipe: {name} -->"
    start = text.index(marker) + len(marker)
    nxt = _MARKER.search(text, start)
    fences = _FENCE.findall(text[start: nxt.start() if nxt else len(text)])[:3]
    assert [lang for lang, _ in fences] == ["sh", "python", "python"], f"recipe {name}: sh, Flask, Django"
    return fences[0][1], fences[1][1], fences[2][1]


def recipe_env(name: str) -> dict[str, str]:
    """The environment block of a recipe, as variables."""
    env: dict[str, str] = {}
    for line in _blocks(name)[0].splitlines():
        key, sep, value = line.partition("=")
        assert sep and key.startswith(PREFIX), f"recipe {name}: not a TOKEN_MIDDLEWARE_ variable: {line!r}"
        env[key] = value
    return env


def recipe_flask(name: str) -> dict[str, Any]:
    code = _blocks(name)[1]
    assert code.startswith("# Flask\n")
    (statement,) = ast.parse(code).body
    call = statement.value  # type: ignore[attr-defined]
    assert ast.unparse(call.func) == "app.config.update" and not call.args
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def recipe_django(name: str) -> dict[str, Any]:
    code = _blocks(name)[2]
    assert code.startswith("# Django settings.py\n")
    (statement,) = ast.parse(code).body
    assert isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "TOKEN_MIDDLEWARE"
    value: dict[str, Any] = ast.literal_eval(statement.value)
    return value


def test_every_recipe_of_the_doc_is_tested_here() -> None:
    assert tuple(_MARKER.findall(DOC.read_text(encoding="utf-8"))) == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_the_three_blocks_of_a_recipe_mean_the_same_settings(name: str) -> None:
    from_env = Settings.from_env(recipe_env(name))
    assert Settings.from_prefixed(recipe_flask(name), environ={}) == from_env
    assert Settings.from_mapping(recipe_django(name)) == from_env
    assert set(recipe_django(name)) == {k.removeprefix(PREFIX) for k in recipe_env(name)}


# -- one validator per recipe, keys from loopback -------------------------------------------

def validator_for(name: str, jwks: LoopbackJWKS, clock: FakeClock) -> TokenValidator:
    env = {**recipe_env(name), PREFIX + "JWKS_URL": jwks.jwks_url}
    return TokenValidator(Settings.from_env(env), clock=clock)


@pytest.fixture
def recipe(jwks: LoopbackJWKS, clock: FakeClock) -> Callable[[str], TokenValidator]:
    return lambda name: validator_for(name, jwks, clock)


def _without(claims: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


# -- Keycloak -------------------------------------------------------------------------------

KEYCLOAK_HEADER = {"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"}
KEYCLOAK_ACCESS = {
    "exp": NOW + 300, "iat": NOW, "auth_time": NOW - 5, "jti": "3b5c1e8e-6a9f-4b7e-9d57-0c2c1b0f1a11",
    "iss": "https://keycloak.example.com/realms/shop", "aud": ["orders-service", "account"],
    "sub": "f2b1c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "typ": "Bearer", "azp": "shop-frontend",
    "sid": "0a1b2c3d", "acr": "1", "allowed-origins": ["https://shop.example"],
    "realm_access": {"roles": ["default-roles-shop", "offline_access", "uma_authorization"]},
    "resource_access": {"orders-service": {"roles": ["orders:read"]},
                        "account": {"roles": ["manage-account", "view-profile"]}},
    "scope": "openid profile email", "email_verified": True, "preferred_username": "alice",
}


def test_keycloak(recipe: Callable[[str], TokenValidator], sign: Sign) -> None:
    """Shape: Keycloak Server Administration Guide (https://www.keycloak.org/docs/latest/server_admin/),
    "Client scopes → Evaluate → Generated access token" and "Audience support": header
    ``typ: JWT``; realm roles in ``realm_access.roles``, client roles in
    ``resource_access.<client>.roles``; ``aud`` holds the API only with an audience mapper."""
    validator = recipe("keycloak")
    token = validator.validate(sign(KEYCLOAK_HEADER, KEYCLOAK_ACCESS))
    assert token.subject == KEYCLOAK_ACCESS["sub"]
    assert token.scopes == {"openid", "profile", "email", "default-roles-shop", "offline_access",
                            "uma_authorization", "orders:read"}
    assert "manage-account" not in token.scopes  # another client's roles are not ours
    assert token.client_id is None and token.claims["azp"] == "shop-frontend"
    # Pitfall: without an audience mapper, aud is only "account".
    with pytest.raises(InvalidAudience):
        validator.validate(sign(KEYCLOAK_HEADER, {**KEYCLOAK_ACCESS, "aud": "account"}))
    # Pitfall: the frontend's ID token has the same header; its aud is the client id.
    id_token = {**_without(KEYCLOAK_ACCESS, "realm_access", "resource_access", "scope"),
                "typ": "ID", "aud": "shop-frontend", "nonce": "n-0S6_WzA2Mj"}
    with pytest.raises(InvalidAudience):
        validator.validate(sign(KEYCLOAK_HEADER, id_token))


# -- Microsoft Entra ID ---------------------------------------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API_CLIENT_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
ENTRA_V2_HEADER = {"typ": "JWT", "alg": "RS256", "kid": "idp-key-1"}
ENTRA_V2_ACCESS = {
    "aud": API_CLIENT_ID, "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
    "iat": NOW, "nbf": NOW, "exp": NOW + 3600, "aio": "AXQAi/8UAAAA…", "azp": "b9e5e3e6-1d8c-4f7e-9a2b-3c4d5e6f7a8b",
    "azpacr": "0", "name": "Alice", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "preferred_username": "alice@shop.example", "rh": "I", "scp": "orders.read orders.write",
    "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": TENANT, "uti": "fqiBqXLPj0eQa82S-IYFAA",
    "ver": "2.0",
}
ENTRA_V1_HEADER = {"typ": "JWT", "alg": "RS256", "x5t": "idp-key-1", "kid": "idp-key-1"}
ENTRA_V1_ACCESS = {
    "aud": "api://orders-service", "iss": f"https://sts.windows.net/{TENANT}/",
    "iat": NOW, "nbf": NOW, "exp": NOW + 3600, "acr": "1", "aio": "AVQAq/8…", "amr": ["pwd"],
    "appid": "b9e5e3e6-1d8c-4f7e-9a2b-3c4d5e6f7a8b", "appidacr": "0", "family_name": "Liddell",
    "given_name": "Alice", "ipaddr": "192.0.2.10", "name": "Alice Liddell", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "rh": "I", "scp": "orders.read", "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA", "tid": TENANT,
    "unique_name": "alice@shop.example", "upn": "alice@shop.example", "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "1.0",
}


def test_entra_v2(recipe: Callable[[str], TokenValidator], sign: Sign) -> None:
    """Shape: Microsoft identity platform, "Access token claims reference"
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference):
    header ``typ: JWT``; v2.0 ``iss`` ``https://login.microsoftonline.com/<tenant>/v2.0``, ``aud``
    the API's client id, delegated permissions in ``scp`` (a string), app roles in ``roles``."""
    validator = recipe("entra-v2")
    token = validator.validate(sign(ENTRA_V2_HEADER, ENTRA_V2_ACCESS))
    assert token.scopes == {"orders.read", "orders.write"}
    # A daemon app's token (client credentials): roles, no scp.
    daemon = {**_without(ENTRA_V2_ACCESS, "scp", "name", "preferred_username"), "roles": ["Orders.Read.All"],
              "sub": "690222be-ff1a-4d56-abd1-7e4f7d38e474"}
    assert validator.validate(sign(ENTRA_V2_HEADER, daemon)).scopes == {"Orders.Read.All"}
    # Pitfall: a v1.0 token is refused by the v2 recipe (another issuer, another audience).
    with pytest.raises(InvalidIssuer):
        validator.validate(sign(ENTRA_V1_HEADER, ENTRA_V1_ACCESS))
    # Pitfall: a token for Microsoft Graph is Graph's, not ours.
    graph = {**ENTRA_V2_ACCESS, "aud": "00000003-0000-0000-c000-000000000000"}
    with pytest.raises(InvalidAudience):
        validator.validate(sign({**ENTRA_V2_HEADER, "nonce": "c2Fsc2E"}, graph))


def test_entra_v1(recipe: Callable[[str], TokenValidator], sign: Sign) -> None:
    """Shape: Microsoft identity platform, "Access token claims reference"
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference), v1.0:
    ``iss`` ``https://sts.windows.net/<tenant>/``, ``aud`` the App ID URI, ``x5t`` beside ``kid``."""
    validator = recipe("entra-v1")
    token = validator.validate(sign(ENTRA_V1_HEADER, ENTRA_V1_ACCESS))
    assert token.scopes == {"orders.read"} and token.claims["ver"] == "1.0"
    with pytest.raises(InvalidIssuer):
        validator.validate(sign(ENTRA_V2_HEADER, ENTRA_V2_ACCESS))


# -- Auth0 ----------------------------------------------------------------------------------

AUTH0_ACCESS = {
    "iss": "https://shop.eu.auth0.com/", "sub": "auth0|123456",
    "aud": ["https://orders.shop.example", "https://shop.eu.auth0.com/userinfo"], "azp": "my_client_id",
    "exp": NOW + 86400, "iat": NOW, "scope": "openid profile orders:read",
    "permissions": ["orders:read", "orders:write"], "https://shop.example/roles": ["support"],
}


def test_auth0(recipe: Callable[[str], TokenValidator], sign: Sign, jwks: LoopbackJWKS, clock: FakeClock) -> None:
    """Shape: Auth0 docs, "Access Token Profiles"
    (https://auth0.com/docs/secure/tokens/access-tokens/access-token-profiles): the Auth0 profile
    has ``typ: JWT`` and ``azp``; the RFC 9068 profile ``typ: at+jwt``, ``client_id`` and ``jti``;
    ``iss`` ends with a slash; ``aud`` lists the API and ``/userinfo``; RBAC adds ``permissions``."""
    validator = recipe("auth0")
    token = validator.validate(sign({"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"}, AUTH0_ACCESS))
    assert token.scopes == {"openid", "profile", "orders:read", "orders:write"}
    rfc9068 = {**_without(AUTH0_ACCESS, "azp"), "client_id": "my_client_id", "jti": "73WakrfVbNJBaAmhQtEeDv"}
    token = validator.validate(sign({"alg": "RS256", "typ": "at+jwt", "kid": "idp-key-1"}, rfc9068))
    assert token.client_id == "my_client_id"
    # A namespaced custom claim, dots and all, read by its exact name.
    env = {**recipe_env("auth0"), PREFIX + "JWKS_URL": jwks.jwks_url,
           PREFIX + "SCOPE_CLAIMS": "scope,permissions,https://shop.example/roles"}
    roles = TokenValidator(Settings.from_env(env), clock=clock)
    assert "support" in roles.validate(sign({"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"}, AUTH0_ACCESS)).scopes
    # Pitfalls: the issuer without its slash, a token for another API.
    with pytest.raises(InvalidIssuer):
        validator.validate(sign({"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"},
                                {**AUTH0_ACCESS, "iss": "https://shop.eu.auth0.com"}))
    with pytest.raises(InvalidAudience):
        validator.validate(sign({"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"},
                                {**AUTH0_ACCESS, "aud": "https://billing.shop.example"}))


# -- Okta -----------------------------------------------------------------------------------

OKTA_HEADER = {"kid": "idp-key-1", "alg": "RS256"}
OKTA_ACCESS = {
    "ver": 1, "jti": "AT.MNAoEQ_jbKqoinrQo1D0XKjMX28U5d7ZszBceot7-Ts", "iss": "https://shop.okta.com/oauth2/default",
    "aud": "api://default", "sub": "alice@shop.example", "iat": NOW, "exp": NOW + 3600,
    "cid": "0oa1a2b3c4d5e6f7g8h9", "uid": "00u1a2b3c4d5e6f7g8h9", "scp": ["openid", "orders:read"],
    "auth_time": NOW - 10,
}


def test_okta(recipe: Callable[[str], TokenValidator], sign: Sign, jwks: LoopbackJWKS, clock: FakeClock) -> None:
    """Shape: Okta developer docs, "OpenID Connect & OAuth 2.0 API → Access token"
    (https://developer.okta.com/docs/reference/api/oidc/#access-token): a header with only
    ``kid`` and ``alg`` (no ``typ``), ``cid`` for the client, ``scp`` a list, ``jti`` ``AT.…``."""
    validator = recipe("okta")
    token = validator.validate(sign(OKTA_HEADER, OKTA_ACCESS))
    assert token.scopes == {"openid", "orders:read"} and token.claims["cid"] == "0oa1a2b3c4d5e6f7g8h9"
    # Pitfall: without "absent", every Okta token is refused by its missing typ.
    env = {**recipe_env("okta"), PREFIX + "JWKS_URL": jwks.jwks_url, PREFIX + "ACCEPTED_TYPES": "at+jwt"}
    with pytest.raises(InvalidType):
        TokenValidator(Settings.from_env(env), clock=clock).validate(sign(OKTA_HEADER, OKTA_ACCESS))
    # Pitfall: Okta's ID tokens have no typ either; their aud (the client id) refuses them.
    id_token = {**_without(OKTA_ACCESS, "cid", "uid", "scp"), "aud": "0oa1a2b3c4d5e6f7g8h9",
                "jti": "ID.radCQMOQUmyvcTBmmIL0J6BaS60apUEiC7-vI7pOmkw", "amr": ["pwd"], "idp": "00o1",
                "at_hash": "fPlsvVszI29LU2UhDyJ9vg"}
    with pytest.raises(InvalidAudience):
        validator.validate(sign(OKTA_HEADER, id_token))
    # Pitfall: the org authorization server's tokens are for Okta's own APIs.
    org = {**OKTA_ACCESS, "iss": "https://shop.okta.com", "aud": "https://shop.okta.com"}
    with pytest.raises(InvalidIssuer):
        validator.validate(sign(OKTA_HEADER, org))


# -- Amazon Cognito -------------------------------------------------------------------------

COGNITO_HEADER = {"kid": "idp-key-1", "alg": "RS256"}
POOL = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
APP_CLIENT = "1example23456789abcdefghij"
COGNITO_ACCESS = {
    "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "device_key": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "cognito:groups": ["admin"], "token_use": "access", "scope": "aws.cognito.signin.user.admin",
    "auth_time": NOW, "iss": POOL, "exp": NOW + 3600, "iat": NOW,
    "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "client_id": APP_CLIENT, "username": "janedoe",
}
COGNITO_ID = {
    "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "cognito:groups": ["admin"], "email_verified": True,
    "iss": POOL, "cognito:username": "janedoe", "origin_jti": "aaaaaaaa", "aud": APP_CLIENT,
    "event_id": "aaaaaaaa", "token_use": "id", "auth_time": NOW, "exp": NOW + 3600, "iat": NOW,
    "jti": "aaaaaaaa", "email": "janedoe@example.com",
}


def test_cognito(recipe: Callable[[str], TokenValidator], sign: Sign, jwks: LoopbackJWKS, clock: FakeClock) -> None:
    """Shape: Amazon Cognito Developer Guide, "Understanding the access token"
    (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html)
    and "Understanding the identity (ID) token"; "Verifying a JSON web token" says to match
    ``client_id`` (access) or ``aud`` (ID) against the app client id. Header ``kid`` and ``alg``
    only; the access token has no ``aud``."""
    validator = recipe("cognito")
    token = validator.validate(sign(COGNITO_HEADER, COGNITO_ACCESS))
    assert token.scopes == {"aws.cognito.signin.user.admin", "admin"} and token.client_id == APP_CLIENT
    assert token.audience == ()  # there is no aud; client_id carried the audience
    # Machine-to-machine: sub is the client id, custom scopes with a slash.
    m2m = {**_without(COGNITO_ACCESS, "cognito:groups", "username", "device_key", "origin_jti", "event_id"),
           "sub": APP_CLIENT, "scope": "orders-api/orders.read"}
    assert validator.validate(sign(COGNITO_HEADER, m2m)).scopes == {"orders-api/orders.read"}
    # Pitfall: an ID token (aud = the app client, no client_id) is refused.
    with pytest.raises(MissingClaim):
        validator.validate(sign(COGNITO_HEADER, COGNITO_ID))
    # Pitfall: another app client of the same pool.
    with pytest.raises(InvalidAudience):
        validator.validate(sign(COGNITO_HEADER, {**COGNITO_ACCESS, "client_id": "7otherappclient000000000"}))
    # Pitfall: the default settings refuse every Cognito access token (no aud).
    default = TokenValidator(Settings.from_mapping({"ISSUER": POOL, "AUDIENCE": APP_CLIENT,
                                                    "ACCEPTED_TYPES": "absent", "JWKS_URL": jwks.jwks_url}), clock=clock)
    with pytest.raises(MissingClaim):
        default.validate(sign(COGNITO_HEADER, COGNITO_ACCESS))


# -- Google ---------------------------------------------------------------------------------

GOOGLE_HEADER = {"alg": "RS256", "kid": "idp-key-1", "typ": "JWT"}
CALLER = "billing@shop-project.iam.gserviceaccount.com"
GOOGLE_ID = {
    "aud": "https://orders-abc123-ew.a.run.app", "azp": "112233445566778899000", "email": CALLER,
    "email_verified": True, "exp": NOW + 3600, "iat": NOW, "iss": "https://accounts.google.com",
    "sub": "112233445566778899000",
}


def _doc_claim_check() -> Callable[[Mapping[str, Any]], None]:
    """The ``allowed_caller`` check of the Google section, executed from the doc."""
    text = DOC.read_text(encoding="utf-8")
    code = next(block for lang, block in _FENCE.findall(text) if block.startswith("# orders/auth.py\n"))
    namespace: dict[str, Any] = {}
    exec(compile(code, "orders/auth.py", "exec"), namespace)  # noqa: S102 - our own doc's snippet
    check: Callable[[Mapping[str, Any]], None] = namespace["allowed_caller"]
    return check


def test_google(sign: Sign, jwks: LoopbackJWKS, clock: FakeClock) -> None:
    """Shape: Google Cloud, "Authenticating service-to-service"
    (https://cloud.google.com/run/docs/authenticating/service-to-service) and Google Identity,
    "OpenID Connect → An ID token's payload"
    (https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload):
    header ``typ: JWT``; ``iss`` ``https://accounts.google.com`` or ``accounts.google.com``;
    ``aud`` the receiving service's URL; the caller in ``email``."""
    env = {**recipe_env("google"), PREFIX + "JWKS_URL": jwks.jwks_url}
    validator = TokenValidator(Settings.from_env(env), clock=clock, claim_checks=[_doc_claim_check()])
    assert validator.validate(sign(GOOGLE_HEADER, GOOGLE_ID)).claims["email"] == CALLER
    assert validator.validate(sign(GOOGLE_HEADER, {**GOOGLE_ID, "iss": "accounts.google.com"})).subject
    with pytest.raises(InvalidClaim, match="may not call"):
        validator.validate(sign(GOOGLE_HEADER, {**GOOGLE_ID, "email": "intruder@other.iam.gserviceaccount.com"}))
    with pytest.raises(InvalidClaim, match="may not call"):
        validator.validate(sign(GOOGLE_HEADER, {**GOOGLE_ID, "email_verified": False}))
    # Pitfall: the web app's sign-in ID token (aud = the OAuth client id) is not an API credential.
    with pytest.raises(InvalidAudience):
        validator.validate(sign(GOOGLE_HEADER, {**GOOGLE_ID, "aud": "1234567890-abc.apps.googleusercontent.com"}))


# -- what no recipe changes -----------------------------------------------------------------

@pytest.mark.parametrize("name", [r for r in RECIPES if r != "django-oauth-toolkit"])
def test_no_recipe_accepts_a_token_signed_by_another_key(
        name: str, jwks: LoopbackJWKS, clock: FakeClock, other_key: SigningKey) -> None:
    claims = {"keycloak": KEYCLOAK_ACCESS, "entra-v2": ENTRA_V2_ACCESS, "entra-v1": ENTRA_V1_ACCESS,
              "auth0": AUTH0_ACCESS, "okta": OKTA_ACCESS, "cognito": COGNITO_ACCESS, "google": GOOGLE_ID}[name]
    header = {"keycloak": KEYCLOAK_HEADER, "entra-v2": ENTRA_V2_HEADER, "entra-v1": ENTRA_V1_HEADER,
              "auth0": {"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"}, "okta": OKTA_HEADER,
              "cognito": COGNITO_HEADER, "google": GOOGLE_HEADER}[name]
    with pytest.raises(InvalidSignature):
        validator_for(name, jwks, clock).validate(sign_exact(other_key, header, claims))


@pytest.mark.parametrize("name", [r for r in RECIPES if r != "django-oauth-toolkit"])
def test_no_recipe_accepts_alg_none_or_an_expired_token(name: str, sign: Sign, jwks: LoopbackJWKS,
                                                        clock: FakeClock) -> None:
    validator = validator_for(name, jwks, clock)
    claims = {"keycloak": KEYCLOAK_ACCESS, "entra-v2": ENTRA_V2_ACCESS, "entra-v1": ENTRA_V1_ACCESS,
              "auth0": AUTH0_ACCESS, "okta": OKTA_ACCESS, "cognito": COGNITO_ACCESS, "google": GOOGLE_ID}[name]
    header = {"keycloak": KEYCLOAK_HEADER, "entra-v2": ENTRA_V2_HEADER, "entra-v1": ENTRA_V1_HEADER,
              "auth0": {"alg": "RS256", "typ": "JWT", "kid": "idp-key-1"}, "okta": OKTA_HEADER,
              "cognito": COGNITO_HEADER, "google": GOOGLE_HEADER}[name]
    good = sign(header, claims)
    assert validator.validate(good).issuer == claims["iss"]
    unsigned = good.rsplit(".", 1)[0].replace(good.split(".")[0], _none_header(header)) + "."
    with pytest.raises(InvalidToken):
        validator.validate(unsigned)
    clock.advance(86400 + 3600)  # past every exp: the verified cache must not serve it either
    with pytest.raises(InvalidToken):
        validator.validate(good)


def _none_header(header: Mapping[str, Any]) -> str:
    import json

    from token_middleware.core import b64url

    return b64url.encode(json.dumps({**header, "alg": "none"}, separators=(",", ":")).encode())
