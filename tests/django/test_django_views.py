"""The Django app on the wire: decorators, CBVs, async views, request.user and the ContextVar."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from django.test import override_settings

from token_middleware.core.context import get_current_token
from token_middleware.core.errors import ExpiredToken, InvalidAudience, InvalidIssuer
from token_middleware.testing import bearer

REALM = 'Bearer realm="customers-service"'
Auth = None | str | dict[str, Any]


def challenge(error: str, description: str, scope: str | None = None) -> str:
    value = f'{REALM}, error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


def headers(auth: Auth, make_token: Any) -> dict[str, str]:
    if auth is None:
        return {}
    if isinstance(auth, str):
        return {"Authorization": auth}
    return bearer(make_token(**auth))


# (path, scopes a token needs, whether one of them is enough)
ROUTES = [
    ("/all", ("customers:read", "customers:write"), False),
    ("/any", ("customers:read", "customers:write"), True),
    ("/token", (), False),
    ("/token-bare", (), False),
    ("/async", ("customers:read",), False),
    ("/async-any", ("customers:read", "customers:write"), True),
    ("/cbv/decorated", ("customers:read",), False),
    ("/cbv/mixin", ("customers:read",), False),
    ("/cbv/async-mixin", ("customers:read", "customers:write"), True),
]


def wire_cases() -> list[Any]:
    cases = []
    for path, scopes, any_of in ROUTES:
        enough = list(scopes[:1]) if any_of else list(scopes)
        rows: list[tuple[str, Auth, int, str | None]] = [
            ("no-token", None, 401, REALM),
            ("basic-scheme", "Basic YWxpY2U6cGFzcw==", 401, REALM),
            ("two-tokens", "Bearer abc def", 400,
             challenge("invalid_request", "exactly one bearer token is allowed")),
            ("expired", {"scopes": enough, "expired": True}, 401,
             challenge("invalid_token", ExpiredToken.default_description)),
            ("wrong-audience", {"scopes": enough, "audience": "other"}, 401,
             challenge("invalid_token", InvalidAudience.default_description)),
            ("wrong-issuer", {"scopes": enough, "issuer": "https://evil.test"}, 401,
             challenge("invalid_token", InvalidIssuer.default_description)),
            ("granted", {"scopes": enough}, 200, None),
        ]
        if scopes:
            word = "one of these scopes is required" if any_of and len(scopes) > 1 else "required scope"
            rows.append(("insufficient", {"scopes": ["unrelated:scope"]}, 403,
                         challenge("insufficient_scope", f"{word}: {' '.join(scopes)}", " ".join(scopes))))
        if len(scopes) > 1 and not any_of:
            rows.append(("only-some", {"scopes": scopes[:1]}, 403,
                         challenge("insufficient_scope", f"required scope: {' '.join(scopes)}", " ".join(scopes))))
        if any_of:
            rows.append(("any-second", {"scopes": scopes[1:]}, 200, None))
        for name, auth, status, www in rows:
            cases.append(pytest.param(path, auth, status, www, id=f"{path}-{name}"))
    return cases


def check_response(response: Any, status: int, www_authenticate: str | None) -> None:
    assert response.status_code == status, response.content
    assert response.headers.get("WWW-Authenticate") == www_authenticate
    if status == 200:
        assert response.json()["sub"] == "alice"
        return
    body = response.json()
    if www_authenticate == REALM:
        assert body == {"error": "unauthorized", "error_description": "an access token is required"}
    else:
        assert www_authenticate is not None
        assert body["error"] == www_authenticate.split('error="')[1].split('"')[0]


@pytest.mark.parametrize(("path", "auth", "status", "www_authenticate"), wire_cases())
def test_decorators_sync_client(
    client: Any, make_token: Any, path: str, auth: Auth, status: int, www_authenticate: str | None
) -> None:
    check_response(client.get(path, headers=headers(auth, make_token)), status, www_authenticate)


@pytest.mark.parametrize(("path", "auth", "status", "www_authenticate"), wire_cases())
async def test_decorators_async_client(
    async_client: Any, make_token: Any, path: str, auth: Auth, status: int, www_authenticate: str | None
) -> None:
    response = await async_client.get(path, headers=headers(auth, make_token))
    check_response(response, status, www_authenticate)


@pytest.mark.parametrize(
    ("method", "auth", "status"),
    [
        pytest.param("OPTIONS", None, 204, id="preflight-without-token-passes"),
        pytest.param("OPTIONS", {"scopes": ["unrelated"]}, 403, id="options-with-token-is-checked"),
        pytest.param("OPTIONS", "Bearer a b", 400, id="options-malformed-header"),
        pytest.param("HEAD", {"scopes": ["customers:read"]}, 200, id="head-granted"),
        pytest.param("HEAD", {"scopes": ["unrelated"]}, 403, id="head-insufficient"),
        pytest.param("HEAD", None, 401, id="head-no-token"),
    ],
)
def test_methods(client: Any, make_token: Any, method: str, auth: Auth, status: int) -> None:
    response = client.generic(method, "/cors", headers=headers(auth, make_token))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("auth", "status", "sub"),
    [
        pytest.param(None, 200, None, id="no-token"),
        pytest.param({"sub": "bob"}, 200, "bob", id="valid-token"),
        pytest.param({"expired": True}, 401, None, id="invalid-token-refused-everywhere"),
        pytest.param("Bearer", 400, None, id="malformed-header-refused-everywhere"),
    ],
)
def test_unprotected_view_still_validates_a_present_token(
    client: Any, make_token: Any, auth: Auth, status: int, sub: str | None
) -> None:
    response = client.get("/public", headers=headers(auth, make_token))
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"sub": sub}


@pytest.mark.parametrize(
    ("extra_headers", "user", "user_class"),
    [
        pytest.param({}, "alice", "TokenUser", id="token-user-when-no-other-auth"),
        pytest.param({"X-Test-User": "1"}, "session-user", "SessionLikeUser", id="other-auth-wins"),
    ],
)
def test_request_user(client: Any, make_token: Any, extra_headers: dict[str, str], user: str, user_class: str) -> None:
    response = client.get("/token", headers={**bearer(make_token()), **extra_headers})
    assert response.status_code == 200
    assert response.json()["user"] == user
    assert response.json()["user_class"] == user_class


def test_without_contrib_auth(client: Any, make_token: Any) -> None:
    with override_settings(
        MIDDLEWARE=["token_middleware.django_ext.middleware.TokenMiddleware"],
        INSTALLED_APPS=["token_middleware.django_ext"],
    ):
        from django.test import Client

        response = Client().get("/token", headers=bearer(make_token(sub="erin")))
    assert response.status_code == 200
    assert response.json()["user"] == "erin"
    assert response.json()["user_class"] == "TokenUser"


def test_context_var_is_set_in_views_and_reset_when_the_response_closes(client: Any, make_token: Any) -> None:
    def scenario() -> None:
        assert get_current_token() is None
        response = client.get("/stream", headers=bearer(make_token(sub="dave")))
        assert b"".join(response.streaming_content) == b"dave\ndave\ndave\n"
        response.close()
        assert get_current_token() is None
        sync_view = client.get("/token", headers=bearer(make_token(sub="frank")))
        assert sync_view.json()["context_sub"] == "frank"
        assert get_current_token() is None  # the test client closed the plain response

    contextvars.Context().run(scenario)


async def test_async_views_see_the_context_var(async_client: Any, make_token: Any) -> None:
    response = await async_client.get("/async", headers=bearer(make_token(sub="gina", scopes=["customers:read"])))
    assert response.json()["context_sub"] == "gina"
    assert get_current_token() is None


def test_override_settings_changes_the_audience(client: Any, token_issuer: Any, make_token: Any) -> None:
    from token_middleware.testing import override_django_settings

    token = make_token(scopes=["customers:read"], audience="billing-service")
    assert client.get("/cbv/mixin", headers=bearer(token)).status_code == 401
    with override_django_settings(token_issuer, AUDIENCE="billing-service"):
        response = client.get("/cbv/mixin", headers=bearer(token))
        assert response.status_code == 200
        assert client.get("/cbv/mixin").headers["WWW-Authenticate"] == 'Bearer realm="billing-service"'
    assert client.get("/cbv/mixin", headers=bearer(token)).status_code == 401


def test_decorator_without_middleware_is_a_configuration_error(client: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(MIDDLEWARE=[]), pytest.raises(ImproperlyConfigured, match="TokenMiddleware"):
        from django.test import Client

        Client().get("/token")
