"""DRF: BearerTokenAuthentication, HasScopes/HasAnyScope and require_scopes, with and without TokenMiddleware."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rest_framework")

from django.test import Client, override_settings  # noqa: E402

from token_middleware.testing import bearer  # noqa: E402

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
     challenge("invalid_token", "the access token has expired"), "invalid_token"),
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
