"""Flask's extension points on the wire: ``is_revoked``, ``claim_checks``, the user loader behind
``token_user``, "any of all of" scope requirements, and the README's Extension points example.

Real keys and real signed tokens from the test kit (``token_issuer``, ``make_token``); every
refusal is shown next to the acceptance of a token that differs only in what is checked.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask

from token_middleware.core.errors import ConfigurationError, InvalidClaim, InvalidToken
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator
from token_middleware.flask_ext import (
    TokenAuth,
    current_token,
    get_token_user,
    require_scopes,
    require_token,
    token_user,
)
from token_middleware.testing import bearer, configure_flask

REALM = 'Bearer realm="orders-service"'
README = Path(__file__).resolve().parents[2] / "README.md"


def challenge(error: str, description: str, scope: str | None = None) -> str:
    value = f'{REALM}, error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


def hooked_app(token_issuer: Any, **auth_options: Any) -> tuple[Flask, TokenAuth]:
    app = Flask(__name__)
    configure_flask(app, token_issuer)
    auth = TokenAuth(app, **auth_options)

    @app.get("/whoami")
    @require_token()
    def whoami() -> dict[str, Any]:
        assert current_token
        return {"sub": current_token.subject}

    @app.get("/either")
    @require_scopes(["orders:read", "orders:write"], ["admin"])
    def either() -> dict[str, Any]:
        assert current_token
        return {"sub": current_token.subject}

    return app, auth


# -- is_revoked and claim_checks through TokenAuth ----------------------------------------------


def test_a_revoked_token_is_refused_even_after_it_was_cached(token_issuer: Any, make_token: Any) -> None:
    revoked: set[tuple[str, str | None]] = set()
    app, _ = hooked_app(token_issuer, is_revoked=lambda token: (token.issuer, token.jti) in revoked)
    client = app.test_client()
    raw = make_token(jti="j-1")
    assert client.get("/whoami", headers=bearer(raw)).status_code == 200
    revoked.add((token_issuer.url, "j-1"))
    response = client.get("/whoami", headers=bearer(raw))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge("invalid_token", "the token has been revoked")
    assert client.get("/whoami", headers=bearer(make_token(jti="j-2"))).status_code == 200


def test_a_failing_revocation_hook_is_a_503(token_issuer: Any, make_token: Any) -> None:
    def is_revoked(token: AccessToken) -> bool:
        raise TimeoutError("denylist timed out")

    app, _ = hooked_app(token_issuer, is_revoked=is_revoked)
    response = app.test_client().get("/whoami", headers=bearer(make_token()))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5" and "WWW-Authenticate" not in response.headers
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_claim_checks_refuse_with_their_own_words(token_issuer: Any, make_token: Any) -> None:
    def same_tenant(claims: Any) -> None:
        if claims.get("tenant") != "acme":
            raise InvalidClaim("the token is for another tenant", claim="tenant")

    app, _ = hooked_app(token_issuer, claim_checks=[same_tenant])
    client = app.test_client()
    assert client.get("/whoami", headers=bearer(make_token(tenant="acme"))).status_code == 200
    response = client.get("/whoami", headers=bearer(make_token(tenant="umbrella")))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge("invalid_token", "the token is for another tenant")


def test_hooks_beside_your_own_validator_stop_start_up(token_issuer: Any) -> None:
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()))
    with pytest.raises(ConfigurationError, match="give them to the validator"):
        TokenAuth(Flask(__name__), validator=validator, is_revoked=lambda token: False)
    # The same hooks on the validator itself are fine.
    hooked = TokenValidator(Settings.from_mapping(token_issuer.settings()), is_revoked=lambda token: False)
    TokenAuth(Flask(__name__), validator=hooked)


def test_a_bad_claim_checks_value_stops_start_up(token_issuer: Any) -> None:
    with pytest.raises(ConfigurationError, match="claim_checks takes a list"):
        hooked_app(token_issuer, claim_checks=lambda claims: None)


# -- user loader and token_user -----------------------------------------------------------------


class User:
    def __init__(self, name: str) -> None:
        self.name = name


def user_app(token_issuer: Any, register: Callable[[TokenAuth, Callable[[AccessToken], Any]], None]
             ) -> tuple[Flask, list[str]]:
    calls: list[str] = []

    def load_user(token: AccessToken) -> User | None:
        calls.append(token.subject)
        if token.subject == "disabled":
            raise InvalidToken("the account is disabled")
        return {"alice": User("Alice"), "bob": User("Bob")}.get(token.subject)

    app, auth = hooked_app(token_issuer)
    register(auth, load_user)

    @app.get("/me")
    def me() -> dict[str, Any]:
        user = get_token_user()
        assert get_token_user() is user  # read three times here, loaded once
        return {"name": token_user.name if token_user else None}

    @app.get("/no-user-needed")
    @require_token()
    def no_user_needed() -> dict[str, Any]:
        return {"ok": True}

    return app, calls


def _register_after_init_app(auth: TokenAuth, loader: Callable[[AccessToken], Any]) -> None:
    auth.user_loader(loader)  # what @auth.user_loader does, after TokenAuth(app)


def test_the_user_is_loaded_lazily_once_per_request(token_issuer: Any, make_token: Any) -> None:
    app, calls = user_app(token_issuer, _register_after_init_app)
    client = app.test_client()
    assert client.get("/me", headers=bearer(make_token(sub="alice"))).get_json() == {"name": "Alice"}
    assert calls == ["alice"]
    assert client.get("/me", headers=bearer(make_token(sub="alice"))).status_code == 200
    assert calls == ["alice", "alice"], "once per request, not once per process"
    assert client.get("/no-user-needed", headers=bearer(make_token(sub="bob"))).status_code == 200
    assert calls == ["alice", "alice"], "a view that never reads token_user never loads it"
    assert client.get("/me").get_json() == {"name": None}
    assert calls == ["alice", "alice"], "no token, no loader call"
    unknown = client.get("/me", headers=bearer(make_token(sub="carol")))
    assert calls == ["alice", "alice", "carol"]
    # A valid token whose subject is no user here is refused, as Django's USER_LOADER does.
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == challenge(
        "invalid_token", "the token's subject is not a user of this service")


def test_a_loader_can_refuse_the_request(token_issuer: Any, make_token: Any) -> None:
    app, _ = user_app(token_issuer, _register_after_init_app)
    response = app.test_client().get("/me", headers=bearer(make_token(sub="disabled")))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge("invalid_token", "the account is disabled")


def test_the_loader_given_to_the_constructor_of_a_factory_extension(token_issuer: Any, make_token: Any) -> None:
    auth = TokenAuth(user_loader=lambda token: User(token.subject.upper()))
    app = Flask(__name__)
    configure_flask(app, token_issuer)
    auth.init_app(app)

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"name": token_user.name}

    assert app.test_client().get("/me", headers=bearer(make_token(sub="dora"))).get_json() == {"name": "DORA"}


def test_token_user_without_a_loader_names_the_fix(token_issuer: Any, make_token: Any) -> None:
    app, _ = hooked_app(token_issuer)
    with app.test_request_context("/", headers=bearer(make_token())):
        app.preprocess_request()
        with pytest.raises(RuntimeError, match="@auth.user_loader"):
            get_token_user()
    assert get_token_user() is None  # outside a request


def test_a_loader_that_is_not_callable_stops_start_up() -> None:
    with pytest.raises(ConfigurationError, match="user_loader takes a function"):
        TokenAuth(user_loader="myapp.load_user")  # type: ignore[arg-type]


# -- "any of all of" -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        pytest.param(["orders:read", "orders:write"], 200, id="first-alternative"),
        pytest.param(["admin"], 200, id="second-alternative"),
        pytest.param(["orders:read", "orders:write", "admin"], 200, id="both"),
        pytest.param(["orders:read"], 403, id="half-of-the-first"),
        pytest.param(["orders:write", "reports:read"], 403, id="unrelated"),
        pytest.param([], 403, id="no-scopes"),
    ],
)
def test_require_scopes_with_alternatives(token_issuer: Any, make_token: Any, scopes: list[str], status: int) -> None:
    app, _ = hooked_app(token_issuer)
    response = app.test_client().get("/either", headers=bearer(make_token(scopes=scopes)))
    assert response.status_code == status
    if status == 403:
        assert response.headers["WWW-Authenticate"] == challenge(
            "insufficient_scope", "required scopes: orders:read orders:write, or admin",
            "orders:read orders:write admin")
    else:
        assert response.get_json() == {"sub": "alice"}


def test_require_scopes_with_alternatives_without_a_token(token_issuer: Any) -> None:
    app, _ = hooked_app(token_issuer)
    response = app.test_client().get("/either")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == REALM


# -- the README's Extension points example, as written -------------------------------------------


def readme_module(tmp_path: Path) -> ModuleType:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- section:extension-points -->"):text.index("<!-- /section:extension-points -->")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert code.startswith("# hooks_app.py\n")
    path = tmp_path / "hooks_app.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("readme_hooks_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("readme_hooks_app", None)
    spec.loader.exec_module(module)
    return module


def test_the_readme_extension_points_example(tmp_path: Path, token_issuer: Any, make_token: Any) -> None:
    readme = readme_module(tmp_path)
    app = readme.create_app(token_issuer.flask_config())
    client = app.test_client()
    ok = client.get("/me", headers=bearer(make_token(sub="alice", tenant="acme", jti="j-ok")))
    assert ok.status_code == 200 and ok.get_json() == {"name": "Alice Liddell", "sub": "alice"}
    unknown = client.get("/me", headers=bearer(make_token(sub="zed", tenant="acme")))
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == challenge(
        "invalid_token", "the token's subject is not a user of this service")
    other = client.get("/me", headers=bearer(make_token(sub="alice", tenant="umbrella")))
    assert other.status_code == 401
    assert other.headers["WWW-Authenticate"] == challenge("invalid_token", "the token is for another tenant")
    readme.REVOKED.add((token_issuer.url, "j-ok"))
    revoked = client.get("/me", headers=bearer(make_token(sub="alice", tenant="acme", jti="j-ok")))
    assert revoked.status_code == 401
    assert revoked.headers["WWW-Authenticate"] == challenge("invalid_token", "the token has been revoked")
