"""The TOKEN_MIDDLEWARE extension points on the wire: USER_LOADER, IS_REVOKED, CLAIM_CHECKS, and
"any of all of" scope requirements in the decorators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client

import tm_django_project
from token_middleware.core.errors import RevokedToken
from token_middleware.django_ext.users import UnknownUser
from token_middleware.testing import bearer, override_django_settings

REALM = 'Bearer realm="customers-service"'


def invalid_token(description: str) -> str:
    return f'{REALM}, error="invalid_token", error_description="{description}"'


@pytest.fixture
def revoked() -> Iterator[set[str]]:
    tm_django_project.REVOKED_JTIS.clear()
    yield tm_django_project.REVOKED_JTIS
    tm_django_project.REVOKED_JTIS.clear()


USER_CASES = [
    # loader, path, sub, status, expected user json or WWW-Authenticate
    ("load_model_user", "/user", "alice", 200, {"user": "model-alice", "user_class": "User", "is_staff": False}),
    ("load_model_user", "/user", "root", 200, {"user": "model-root", "user_class": "User", "is_staff": True}),
    ("load_model_user", "/async-user", "alice", 200, {"user": "model-alice", "user_class": "User", "is_staff": False}),
    ("aload_model_user", "/user", "alice", 200, {"user": "async-alice", "user_class": "User", "is_staff": False}),
    ("aload_model_user", "/async-user", "alice", 200, {"user": "async-alice", "user_class": "User", "is_staff": False}),
    ("load_model_user", "/user", "stranger", 401, invalid_token(UnknownUser.default_description)),
    ("aload_model_user", "/async-user", "stranger", 401, invalid_token(UnknownUser.default_description)),
    ("load_model_user", "/public", "suspended", 401, invalid_token("this account is suspended")),
    (None, "/user", "alice", 200, {"user": "alice", "user_class": "TokenUser", "is_staff": False}),
    (None, "/async-user", "alice", 200, {"user": "alice", "user_class": "TokenUser", "is_staff": False}),
]


@pytest.mark.parametrize("client_kind", ["sync", "async"])
@pytest.mark.parametrize(("loader", "path", "sub", "status", "expected"), USER_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in USER_CASES])
async def test_user_loader(token_issuer: Any, make_token: Any, client_kind: str, loader: str | None,
                           path: str, sub: str, status: int, expected: Any) -> None:
    extra = {} if loader is None else {"USER_LOADER": f"tm_django_project.{loader}"}
    headers = bearer(make_token(sub=sub))
    with override_django_settings(token_issuer, **extra):
        if client_kind == "async":
            response = await AsyncClient().get(path, headers=headers)
        else:
            from asgiref.sync import sync_to_async

            response = await sync_to_async(Client().get)(path, headers=headers)
    assert response.status_code == status, response.content
    if status == 200:
        assert response.json() == expected
    else:
        assert response.headers["WWW-Authenticate"] == expected


def test_another_authentication_still_wins_over_the_loaded_user(token_issuer: Any, make_token: Any) -> None:
    with override_django_settings(token_issuer, USER_LOADER="tm_django_project.load_model_user"):
        response = Client().get("/token", headers={**bearer(make_token()), "X-Test-User": "1"})
    assert response.json()["user"] == "session-user"


@pytest.mark.parametrize("client_kind", ["sync", "async"])
async def test_is_revoked_applies_to_cached_tokens(token_issuer: Any, make_token: Any, revoked: set[str],
                                                   client_kind: str) -> None:
    from asgiref.sync import sync_to_async

    async def get(headers: dict[str, str]) -> Any:
        if client_kind == "async":
            return await AsyncClient().get("/token", headers=headers)
        return await sync_to_async(Client().get)("/token", headers=headers)

    token = make_token(jti="jti-to-revoke")
    with override_django_settings(token_issuer, IS_REVOKED="tm_django_project.is_revoked"):
        assert (await get(bearer(token))).status_code == 200  # verified and now cached
        assert (await get(bearer(token))).status_code == 200
        revoked.add("jti-to-revoke")
        refused = await get(bearer(token))
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == invalid_token(RevokedToken.default_description)
        assert (await get(bearer(make_token(jti="another")))).status_code == 200


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param({"tenant": "acme"}, 200, id="accepted"),
        pytest.param({"tenant": "other"}, 401, id="refused-by-the-check"),
        pytest.param({}, 401, id="claim-absent"),
    ],
)
def test_claim_checks(token_issuer: Any, make_token: Any, claims: dict[str, Any], status: int) -> None:
    with override_django_settings(token_issuer, CLAIM_CHECKS=["tm_django_project.check_tenant"]):
        response = Client().get("/public", headers=bearer(make_token(**claims)))
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == invalid_token("the token is for another tenant")


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        pytest.param(["customers:read", "customers:write"], 200, id="first-alternative"),
        pytest.param(["admin"], 200, id="second-alternative"),
        pytest.param(["customers:read"], 403, id="half-of-the-first"),
    ],
)
@pytest.mark.parametrize("path", ["/alternatives", "/cbv/alternatives"])
def test_any_of_all_of_in_decorators_and_mixin(make_token: Any, path: str, scopes: list[str], status: int) -> None:
    response = Client().get(path, headers=bearer(make_token(scopes=scopes)))
    assert response.status_code == status
    if status == 403:
        assert response.headers["WWW-Authenticate"].endswith(
            'error_description="required scopes: customers:read customers:write, or admin", '
            'scope="customers:read customers:write admin"'
        )


@pytest.mark.parametrize("earlier", ["none", "anonymous", "authenticated"])
async def test_auser_prefers_an_earlier_authenticated_user(token_issuer: Any, make_token: Any, earlier: str) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from token_middleware.django_ext.apps import runtime_cache
    from token_middleware.django_ext.middleware import _attach
    from token_middleware.django_ext.users import TokenUser

    with override_django_settings(token_issuer):
        runtime = runtime_cache().get()
        token = runtime.validator.validate(make_token(sub="alice"))
        request = RequestFactory().get("/token")
        found: Any = {"anonymous": AnonymousUser(), "authenticated": tm_django_project.SessionLikeUser()}.get(earlier)
        if found is not None:
            async def earlier_auser() -> Any:
                return found

            request.user = found
            request.auser = earlier_auser  # type: ignore[attr-defined]
        user = TokenUser(token)
        _attach(request, token, user, runtime)
        expected = found if earlier == "authenticated" else user
        assert await request.auser() is expected  # type: ignore[attr-defined]
        assert request.user.username == expected.username
        assert request.access_token is token  # type: ignore[attr-defined]
