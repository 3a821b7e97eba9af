"""The Flask extension on the wire: RFC 6750 statuses, exact challenges, bodies and context."""

from __future__ import annotations

import contextvars
import importlib.util
from typing import Any

import pytest

from token_middleware.core.context import get_current_token
from token_middleware.testing import bearer

REALM = 'Bearer realm="orders-service"'
# Flask runs async views through asgiref (the flask[async] extra).
NEEDS_ASGIREF = pytest.mark.skipif(importlib.util.find_spec("asgiref") is None, reason="needs flask[async]")


def challenge(error: str, description: str, scope: str | None = None) -> str:
    value = f'{REALM}, error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


# The authorization presented: None (no header), a raw header value, or make_token() kwargs.
NO_TOKEN: None = None
Auth = None | str | dict[str, Any]

# (path, scopes a token needs, whether one of them is enough)
ROUTES = [
    ("/all", ("orders:read", "orders:write"), False),
    ("/any", ("orders:read", "orders:write"), True),
    ("/token", (), False),
    ("/token-bare", (), False),
    ("/async", ("orders:read",), False),
    ("/bp/items", ("items:read",), False),
    ("/mv", ("orders:read",), False),
]


def _cases() -> list[Any]:
    cases = []
    for path, scopes, any_of in ROUTES:
        enough = list(scopes[:1]) if any_of else list(scopes)
        rows: list[tuple[str, Auth, int, str | None]] = [
            ("no-token", NO_TOKEN, 401, REALM),
            ("basic-scheme", "Basic YWxpY2U6cGFzcw==", 401, REALM),
            ("two-tokens", "Bearer abc def", 400,
             challenge("invalid_request", "exactly one bearer token is allowed")),
            ("empty-bearer", "Bearer", 400, challenge("invalid_request", "the bearer token is missing")),
            ("expired", {"scopes": enough, "expired": True}, 401,
             challenge("invalid_token", "the access token has expired")),
            ("wrong-audience", {"scopes": enough, "audience": "other"}, 401,
             challenge("invalid_token", "the token is not meant for this service")),
            ("unknown-key", {"scopes": enough, "unknown_key": True}, 401,
             challenge("invalid_token", "the token was signed with an unknown key")),
            ("typ-jwt", {"scopes": enough, "typ": "JWT"}, 401,
             challenge("invalid_token", "the token is not an access token (typ)")),
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
        marks = [NEEDS_ASGIREF] if path == "/async" else []
        for name, auth, status, www in rows:
            cases.append(pytest.param(path, auth, status, www, id=f"{path}-{name}", marks=marks))
    return cases


def _headers(auth: Auth, make_token: Any) -> dict[str, str]:
    if auth is None:
        return {}
    if isinstance(auth, str):
        return {"Authorization": auth}
    return bearer(make_token(**auth))


@pytest.mark.parametrize(("path", "auth", "status", "www_authenticate"), _cases())
def test_decorators_on_the_wire(
    client: Any, make_token: Any, path: str, auth: Auth, status: int, www_authenticate: str | None
) -> None:
    response = client.get(path, headers=_headers(auth, make_token))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers.get("WWW-Authenticate") == www_authenticate
    if status == 200:
        assert response.get_json()["sub"] == "alice"
    elif status != 401 or www_authenticate != REALM:
        body = response.get_json()
        assert body["error"] == www_authenticate.split('error="')[1].split('"')[0]  # type: ignore[union-attr]
        assert body["error_description"]
    else:
        assert response.get_json() == {"error": "unauthorized", "error_description": "an access token is required"}


@pytest.mark.parametrize(
    ("method", "path", "scopes", "status"),
    [
        pytest.param("GET", "/mv", ["orders:read"], 200, id="methodview-get-read"),
        pytest.param("POST", "/mv", ["orders:read"], 403, id="methodview-post-needs-write"),
        pytest.param("POST", "/mv", ["orders:write"], 201, id="methodview-post-write"),
        pytest.param("HEAD", "/all", ["orders:read", "orders:write"], 200, id="head-like-get-granted"),
        pytest.param("HEAD", "/all", ["orders:read"], 403, id="head-like-get-insufficient"),
    ],
)
def test_methods(client: Any, make_token: Any, method: str, path: str, scopes: list[str], status: int) -> None:
    response = client.open(path, method=method, headers=bearer(make_token(scopes=scopes)))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        pytest.param(NO_TOKEN, 204, id="preflight-without-token-passes"),
        pytest.param({"scopes": ["unrelated"]}, 403, id="options-with-token-is-checked"),
        pytest.param("Bearer a b", 400, id="options-malformed-header"),
    ],
)
def test_options_preflight(client: Any, make_token: Any, auth: Auth, status: int) -> None:
    response = client.options("/cors", headers=_headers(auth, make_token))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("auth", "status", "sub"),
    [
        pytest.param(NO_TOKEN, 200, None, id="no-token"),
        pytest.param({"sub": "bob"}, 200, "bob", id="valid-token"),
        pytest.param({"expired": True}, 401, None, id="invalid-token-refused-everywhere"),
        pytest.param("Bearer", 400, None, id="malformed-header-refused-everywhere"),
    ],
)
def test_unprotected_view_still_validates_a_present_token(
    client: Any, make_token: Any, auth: Auth, status: int, sub: str | None
) -> None:
    response = client.get("/public", headers=_headers(auth, make_token))
    assert response.status_code == status
    if status == 200:
        assert response.get_json() == {"sub": sub}


@NEEDS_ASGIREF
def test_async_view_sees_current_token_and_context(client: Any, make_token: Any) -> None:
    response = client.get("/async", headers=bearer(make_token(sub="carol", scopes=["orders:read"])))
    assert response.status_code == 200
    assert response.get_json() == {"sub": "carol", "scopes": ["orders:read"], "context_sub": "carol"}


def test_context_var_lives_until_the_response_closes(client: Any, make_token: Any) -> None:
    # Run in an empty context: earlier tests' responses may still be open in this thread.
    def scenario() -> None:
        assert get_current_token() is None
        response = client.get("/stream", headers=bearer(make_token(sub="dave")))
        assert response.get_data(as_text=True) == "dave\ndave\ndave\n"
        held = get_current_token()
        assert held is not None and held.subject == "dave"  # the body is streamed until close
        response.close()
        assert get_current_token() is None

    contextvars.Context().run(scenario)


def test_html_clients_get_html(client: Any) -> None:
    response = client.get("/all", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert response.headers["WWW-Authenticate"] == REALM


def test_app_can_override_the_error_handler(make_app: Any, make_token: Any) -> None:
    from token_middleware.core.errors import InsufficientScope

    app = make_app()

    @app.errorhandler(InsufficientScope)
    def custom(err: InsufficientScope) -> tuple[dict[str, Any], int]:
        return {"missing": list(err.required)}, 403

    response = app.test_client().get("/all", headers=bearer(make_token(scopes=["x"])))
    assert response.status_code == 403
    assert response.get_json() == {"missing": ["orders:read", "orders:write"]}
    assert "WWW-Authenticate" not in response.headers
    # Other errors keep the default RFC 6750 handler.
    assert app.test_client().get("/all").headers["WWW-Authenticate"] == REALM
