"""Misconfiguration: system checks by id, ImproperlyConfigured at start-up, the runtime cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

MW = "token_middleware.django_ext.middleware.TokenMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"


def our_messages() -> list[Any]:
    return [m for m in run_checks() if m.id and m.id.startswith("token_middleware.")]


@pytest.mark.parametrize(
    ("overrides", "expected_ids", "hint_fragment"),
    [
        pytest.param({}, [], None, id="valid-no-messages"),
        pytest.param({"TOKEN_MIDDLEWARE": ["ISSUER"]}, ["token_middleware.E001"], "TOKEN_MIDDLEWARE = {", id="E001-not-a-dict"),
        pytest.param({"TOKEN_MIDDLEWARE": {"AUDIENCE": "x"}}, ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ISSUER"]', id="E002-missing-issuer"),
        pytest.param({"TOKEN_MIDDLEWARE": {"ISSUER": "https://i.test", "AUDIENCE": "x", "ALGORITHMS": "none"}},
                     ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ALGORITHMS"]', id="E002-alg-none"),
        pytest.param({"TOKEN_MIDDLEWARE": {"ISSUER": "https://i.test", "AUDIENCE": "x", "ISUER": "typo"}},
                     ["token_middleware.E002"], 'TOKEN_MIDDLEWARE["ISUER"]', id="E002-unknown-name"),
        pytest.param({"MIDDLEWARE": [SESSION, MW, AUTH]}, ["token_middleware.E003"], "after", id="E003-before-auth"),
        pytest.param({"MIDDLEWARE": [SESSION, AUTH, MW, MW]}, ["token_middleware.E004"], "exactly one", id="E004-twice"),
        pytest.param({"MIDDLEWARE": [SESSION, AUTH]}, ["token_middleware.W001"], f"Add {MW!r}", id="W001-missing"),
    ],
)
def test_system_checks(overrides: dict[str, Any], expected_ids: list[str], hint_fragment: str | None) -> None:
    with override_settings(**overrides):
        messages = our_messages()
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
    ],
)
def test_middleware_refuses_to_start_with_bad_settings(setting: Any, match: str) -> None:
    from token_middleware.django_ext.middleware import TokenMiddleware

    with override_settings(TOKEN_MIDDLEWARE=setting), pytest.raises(ImproperlyConfigured, match=match):
        TokenMiddleware(lambda request: None)


def test_app_ready_refuses_bad_settings() -> None:
    from django.apps import apps

    config = apps.get_app_config("token_middleware")
    with override_settings(TOKEN_MIDDLEWARE={"ISSUER": "https://i.test"}), pytest.raises(
        ImproperlyConfigured, match="AUDIENCE is required"
    ):
        config.ready()
    config.ready()  # and recovers once the settings are valid again


def test_runtime_is_built_once_per_settings_dict(token_issuer: Any) -> None:
    from token_middleware.django_ext.apps import get_runtime
    from token_middleware.testing import override_django_settings

    first = get_runtime()
    assert get_runtime() is first
    with override_django_settings(token_issuer, LEEWAY=5):
        changed = get_runtime()
        assert changed is not first and changed.settings.leeway == 5
        assert get_runtime() is changed
    assert get_runtime().settings.leeway == 30


def test_environment_is_the_fallback_for_missing_names(monkeypatch: pytest.MonkeyPatch, token_issuer: Any) -> None:
    from token_middleware.django_ext.apps import get_runtime

    monkeypatch.setenv("TOKEN_MIDDLEWARE_ISSUER", token_issuer.url)
    monkeypatch.setenv("TOKEN_MIDDLEWARE_LEEWAY", "7")
    with override_settings(TOKEN_MIDDLEWARE={"AUDIENCE": "from-settings", "PUBLIC_KEYS": str(token_issuer.jwks_path)}):
        runtime = get_runtime()
    assert runtime.settings.issuers == (token_issuer.url,)
    assert runtime.settings.audience == "from-settings"
    assert runtime.settings.leeway == 7
