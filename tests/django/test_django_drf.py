"""DRF: BearerTokenAuthentication, HasScopes/HasAnyScope and require_scopes, with and without
TokenMiddleware; permissions that compose with ``&``, ``|`` and ``~``; the exception handler's
challenge; the user loader."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rest_framework")

from django.test import Client, override_settings  # noqa: E402

from token_middleware.core.errors import ExpiredToken  # noqa: E402
from token_middleware.django_ext.users import UnknownUser  # noqa: E402
from token_middleware.testing import bearer, override_django_settings  # noqa: E402

REALM = 'Bearer realm="customers-service"'
NO_MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                 "django.contrib.auth.middleware.AuthenticationMiddleware"]


def challenge(error: str, description: str, scope: str | None = None) -> str:
    value = f'{REALM}, error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


ALL = "customers:read customers:write"
CASES = [
    # path, auth, status, WWW-Authenticate, body error
    ("/drf/all", None, 401, REALM, None),
    ("/drf/all", "Basic YWxpY2U6cGFzcw==", 401, REALM, None),
    ("/drf/all", "Bearer a b", 400, challenge("invalid_request", "exactly one bearer token is allowed"), "invalid_request"),
    ("/drf/all", {"scopes": ALL.split(), "expired": True}, 401,
     challenge("invalid_token", ExpiredToken.default_description), "invalid_token"),
    ("/drf/all", {"scopes": ["customers:read"]}, 403,
     challenge("insufficient_scope", f"required scope: {ALL}", ALL), "insufficient_scope"),
    ("/drf/all", {"scopes": ALL.split()}, 200, None, None),
    ("/drf/any", None, 401, REALM, None),
    ("/drf/any", {"scopes": ["other"]}, 403,
     challenge("insufficient_scope", f"one of these scopes is required: {ALL}", ALL), "insufficient_scope"),
    ("/drf/any", {"scopes": ["customers:write"]}, 200, None, None),
    ("/drf/function", None, 401, REALM, None),
    ("/drf/function", {"scopes": ["other"]}, 403,
     challenge("insufficient_scope", "required scope: customers:read", "customers:read"), "insufficient_scope"),
    ("/drf/function", {"scopes": ["customers:read"]}, 200, None, None),
    ("/drf/alternatives", {"scopes": ["admin"]}, 200, None, None),
    ("/drf/alternatives", {"scopes": ALL.split()}, 200, None, None),
    ("/drf/alternatives", {"scopes": ["customers:read", "other"]}, 403,
     challenge("insufficient_scope", f"required scopes: {ALL}, or admin", f"{ALL} admin"), "insufficient_scope"),
    ("/drf/function-alternatives", {"scopes": ["admin"]}, 200, None, None),
    ("/drf/function-alternatives", {"scopes": ["customers:write"]}, 403,
     challenge("insufficient_scope", f"required scopes: {ALL}, or admin", f"{ALL} admin"), "insufficient_scope"),
]


def _params() -> list[Any]:
    out = []
    for mode in ("with-middleware", "drf-only"):
        for path, auth, status, www, error in CASES:
            label = "none" if auth is None else (auth.split()[0].lower() if isinstance(auth, str) else
                                                 "+".join(auth["scopes"]) + ("-expired" if auth.get("expired") else ""))
            out.append(pytest.param(mode, path, auth, status, www, error, id=f"{mode}{path}-{label}-{status}"))
    return out


@pytest.mark.parametrize(("mode", "path", "auth", "status", "www_authenticate", "error"), _params())
def test_drf_on_the_wire(
    make_token: Any, mode: str, path: str, auth: Any, status: int, www_authenticate: str | None, error: str | None
) -> None:
    hdrs = {} if auth is None else {"Authorization": auth} if isinstance(auth, str) else bearer(make_token(**auth))
    middleware = NO_MIDDLEWARE if mode == "drf-only" else None
    if middleware is None:
        response = Client().get(path, headers=hdrs)
    else:
        with override_settings(MIDDLEWARE=middleware):
            response = Client().get(path, headers=hdrs)
    assert response.status_code == status, response.content
    assert response.headers.get("WWW-Authenticate") == www_authenticate
    body = response.json()
    if status == 200:
        assert body == {"sub": "alice", "auth_sub": "alice", "scopes": sorted(auth["scopes"])}
    elif error is not None:
        assert body["error"] == error and body["error_description"]
    else:
        assert "detail" in body


def test_other_schemes_are_left_to_other_authentication_classes() -> None:
    from rest_framework.test import APIRequestFactory

    from token_middleware.drf import BearerTokenAuthentication

    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION="Basic YWxpY2U6cGFzcw==")
    from rest_framework.request import Request

    assert BearerTokenAuthentication().authenticate(Request(request)) is None


def test_has_scopes_without_required_scopes_is_a_configuration_error(make_token: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from rest_framework.views import APIView

    from token_middleware.drf import BearerTokenAuthentication, HasScopes

    class Forgot(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = [HasScopes]

    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {make_token()}")
    with pytest.raises(ImproperlyConfigured, match="required_scopes"):
        Forgot.as_view()(request)


GENERIC_403 = {"detail": "You do not have permission to perform this action."}


@pytest.mark.parametrize(
    ("path", "auth", "status", "body"),
    [
        pytest.param("/drf/and", {"scopes": ["customers:read"]}, 200, None, id="and-granted"),
        pytest.param("/drf/and", {"scopes": ["other"]}, 403, GENERIC_403, id="and-refused-generic-403"),
        pytest.param("/drf/and", None, 401, None, id="and-no-token-401"),
        pytest.param("/drf/or", {"scopes": ["customers:admin"]}, 200, None, id="or-by-scope"),
        pytest.param("/drf/or", {"sub": "root", "scopes": ["other"]}, 200, None, id="or-by-staff-user"),
        pytest.param("/drf/or", {"scopes": ["other"]}, 403, GENERIC_403, id="or-neither"),
        pytest.param("/drf/or", None, 401, None, id="or-no-token-401"),
        pytest.param("/drf/not", {"scopes": ["other"]}, 200, None, id="not-granted-without-the-scope"),
        pytest.param("/drf/not", {"scopes": ["customers:read"]}, 403, GENERIC_403, id="not-refused-with-the-scope"),
        pytest.param("/drf/not?deny=1", {"scopes": ["other"]}, 403, GENERIC_403, id="view-own-403-gets-no-scope-challenge"),
    ],
)
def test_permissions_compose(make_token: Any, token_issuer: Any, path: str, auth: Any, status: int, body: Any) -> None:
    hdrs = {} if auth is None else bearer(make_token(**auth))
    with override_django_settings(token_issuer, USER_LOADER="tm_django_project.load_model_user"):
        response = Client().get(path, headers=hdrs)
    assert response.status_code == status, response.content
    if status == 401:
        assert response.headers["WWW-Authenticate"] == REALM
    else:
        assert "WWW-Authenticate" not in response.headers  # DRF's composed permissions carry no message
    if body is not None:
        assert response.json() == body


def test_permissions_return_false_with_message_and_code(make_token: Any) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from token_middleware.drf import BearerTokenAuthentication, HasAnyScope, HasScopes
    from tm_django_drf import DrfAll

    request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['customers:read'])}"),
                      authenticators=[BearerTokenAuthentication()])
    refusing = HasScopes()
    assert refusing.has_permission(request, DrfAll()) is False
    assert refusing.code == "insufficient_scope"
    assert refusing.message == {"error": "insufficient_scope", "error_description": f"required scope: {ALL}"}
    assert HasAnyScope().has_permission(request, DrfAll()) is True
    anonymous = Request(APIRequestFactory().get("/"), authenticators=[BearerTokenAuthentication()])
    assert HasScopes().has_permission(anonymous, DrfAll()) is False


def test_without_the_exception_handler_the_403_has_the_body_but_no_challenge(make_token: Any) -> None:
    from django.conf import settings

    plain = {k: v for k, v in settings.REST_FRAMEWORK.items() if k != "EXCEPTION_HANDLER"}
    with override_settings(REST_FRAMEWORK=plain):
        response = Client().get("/drf/all", headers=bearer(make_token(scopes=["customers:read"])))
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.json() == {"error": "insufficient_scope", "error_description": f"required scope: {ALL}"}


@pytest.mark.parametrize("mode", ["with-middleware", "drf-only"])
@pytest.mark.parametrize(
    ("sub", "status", "user"),
    [
        pytest.param("alice", 200, "model-alice", id="loaded-model-user"),
        pytest.param("stranger", 401, None, id="loader-returns-none"),
        pytest.param("suspended", 401, None, id="loader-raises-invalid-token"),
    ],
)
def test_user_loader(make_token: Any, token_issuer: Any, mode: str, sub: str, status: int, user: str | None) -> None:
    overrides = {"MIDDLEWARE": NO_MIDDLEWARE} if mode == "drf-only" else {}
    with override_settings(**overrides), override_django_settings(
        token_issuer, USER_LOADER="tm_django_project.load_model_user"
    ):
        response = Client().get("/drf/all", headers=bearer(make_token(sub=sub, scopes=ALL.split())))
    assert response.status_code == status, response.content
    if user is not None:
        assert response.json()["sub"] == user
    else:
        description = UnknownUser.default_description if sub == "stranger" else "this account is suspended"
        assert response.headers["WWW-Authenticate"] == challenge("invalid_token", description)


def test_invalid_required_scopes_name_the_view(make_token: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from rest_framework.test import APIRequestFactory

    from tm_django_drf import DrfAll

    class Spaced(DrfAll):
        required_scopes = ["customers read"]

    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {make_token()}")
    with pytest.raises(ImproperlyConfigured, match="Spaced.required_scopes"):
        Spaced.as_view()(request)
