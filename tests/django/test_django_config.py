"""Misconfiguration: system checks by id and tag, ``ready()`` that never raises, the middleware
refusing to start, the runtime rebuilt on ``setting_changed``, and the extension keys."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Tags, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

MW = "token_middleware.django_ext.middleware.TokenMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
VALID = {"ISSUER": "https://i.test", "AUDIENCE": "x", "JWKS_URL": "https://i.test/jwks"}


def our_messages(**kwargs: Any) -> list[Any]:
    return [m for m in run_checks(**kwargs) if m.id and m.id.startswith("token_middleware.")]


@pytest.mark.parametrize(
    ("overrides", "expected_ids", "hint_fragment"),
    [
        pytest.param({}, [], None, id="valid-no-messages"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "IS_REVOKED": "tm_django_project.is_revoked",
                                           "CLAIM_CHECKS": ["tm_django_project.check_tenant"],
                                           "USER_LOADER": "tm_django_project.load_model_user"}},
                     [], None, id="extension-keys-are-not-unknown-settings"),
        pytest.param({"TOKEN_MIDDLEWARE": ["ISSUER"]}, ["token_middleware.E001"], "TOKEN_MIDDLEWARE = {", id="E001-not-a-dict"),
        pytest.param({"TOKEN_MIDDLEWARE": {"AUDIENCE": "x"}}, ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ISSUER"]', id="E002-missing-issuer"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "ALGORITHMS": "none"}},
                     ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ALGORITHMS"]', id="E002-alg-none"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "ISUER": "typo"}},
                     ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ISUER"]', id="E002-unknown-name"),
        pytest.param({"MIDDLEWARE": [SESSION, MW, AUTH]}, ["token_middleware.E003"], "after", id="E003-before-auth"),
        pytest.param({"MIDDLEWARE": [SESSION, AUTH, MW, MW]}, ["token_middleware.E004"], "exactly one", id="E004-twice"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "USER_LOADER": "myapp.nowhere.load_user"}},
                     ["token_middleware.E005"], 'TOKEN_MIDDLEWARE["USER_LOADER"] to the dotted path', id="E005-unimportable"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "IS_REVOKED": "tm_django_project.NOT_CALLABLE"}},
                     ["token_middleware.E005"], 'TOKEN_MIDDLEWARE["IS_REVOKED"]', id="E005-not-callable"),
        pytest.param({"TOKEN_MIDDLEWARE": {**VALID, "CLAIM_CHECKS": "tm_django_project.check_tenant"}},
                     ["token_middleware.E005"], '["myapp.auth.check_tenant"]', id="E005-claim-checks-not-a-list"),
        pytest.param({"TOKEN_MIDDLEWARE": {"AUDIENCE": "x", "USER_LOADER": "nowhere.load"}},
                     ["token_middleware.E002", "token_middleware.E005"], "ISSUER", id="E002-and-E005-together"),
        pytest.param({"MIDDLEWARE": [SESSION, AUTH]}, ["token_middleware.W001"], f"Add {MW!r}", id="W001-missing"),
    ],
)
def test_system_checks(overrides: dict[str, Any], expected_ids: list[str], hint_fragment: str | None) -> None:
    with override_settings(**overrides):
        messages = our_messages()
        assert [m.id for m in our_messages(tags=[Tags.security])] == expected_ids
        assert our_messages(tags=[Tags.staticfiles]) == []  # e.g. collectstatic does not run them
    assert [m.id for m in messages] == expected_ids
    if hint_fragment is not None:
        assert hint_fragment in messages[0].hint


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        pytest.param({"AUDIENCE": "x"}, r'fix settings.TOKEN_MIDDLEWARE\["ISSUER"\]', id="missing-issuer"),
        pytest.param("not-a-dict", "must be a dict", id="not-a-dict"),
        pytest.param({"ISSUER": "https://i.test", "AUDIENCE": "x", "PUBLIC_KEYS": "/nonexistent/jwks.json"},
                     "PUBLIC_KEYS file not found", id="missing-key-file"),
        pytest.param({**VALID, "USER_LOADER": "myapp.nowhere.load_user"},
                     r"USER_LOADER: cannot import 'myapp.nowhere.load_user'.* -- fix settings.TOKEN_MIDDLEWARE\[\"USER_LOADER\"\]$",
                     id="unimportable-user-loader"),
    ],
)
def test_middleware_refuses_to_start_with_bad_settings(setting: Any, match: str) -> None:
    from token_middleware.django_ext.middleware import TokenMiddleware

    with override_settings(TOKEN_MIDDLEWARE=setting), pytest.raises(ImproperlyConfigured, match=match):
        TokenMiddleware(lambda request: None)


@pytest.mark.parametrize("setting", [{"AUDIENCE": "x"}, "not-a-dict", {**VALID, "USER_LOADER": "nowhere.x"}])
def test_app_ready_never_raises(setting: Any) -> None:
    from django.apps import apps

    config = apps.get_app_config("token_middleware")
    with override_settings(TOKEN_MIDDLEWARE=setting):
        config.ready()  # only registers checks and the setting_changed receiver


def test_runtime_is_built_once_and_rebuilt_on_setting_changed(token_issuer: Any) -> None:
    from django.conf import settings

    from token_middleware.django_ext.apps import get_runtime
    from token_middleware.testing import override_django_settings

    first = get_runtime()
    assert get_runtime() is first
    with override_settings(MIDDLEWARE=list(settings.MIDDLEWARE)):  # another setting: kept
        assert get_runtime() is first
    settings.TOKEN_MIDDLEWARE["LEEWAY"] = 5  # in place, without setting_changed: not re-read
    assert get_runtime() is first and first.settings.leeway == 30
    del settings.TOKEN_MIDDLEWARE["LEEWAY"]
    with override_django_settings(token_issuer, LEEWAY=5):
        changed = get_runtime()
        assert changed is not first and changed.settings.leeway == 5
        assert get_runtime() is changed
    assert get_runtime().settings.leeway == 30


def test_environment_is_the_fallback_for_missing_names(monkeypatch: pytest.MonkeyPatch, token_issuer: Any) -> None:
    from token_middleware.django_ext.apps import get_runtime

    monkeypatch.setenv("TOKEN_MIDDLEWARE_ISSUER", token_issuer.url)
    monkeypatch.setenv("TOKEN_MIDDLEWARE_LEEWAY", "7")
    monkeypatch.setenv("TOKEN_MIDDLEWARE_USER_LOADER", "nowhere.not_an_environment_name")
    with override_settings(TOKEN_MIDDLEWARE={"AUDIENCE": "from-settings", "PUBLIC_KEYS": str(token_issuer.jwks_path)}):
        runtime = get_runtime()
    assert runtime.settings.issuers == (token_issuer.url,)
    assert runtime.settings.audience == "from-settings"
    assert runtime.settings.leeway == 7
    assert runtime.user_loader is None
