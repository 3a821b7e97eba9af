"""System checks (tag ``security``) with stable ids; each hint says exactly how to fix the problem.

=========================  ===========================================================
``token_middleware.E001``  ``TOKEN_MIDDLEWARE`` is not a dict
``token_middleware.E002``  a NAME of ``TOKEN_MIDDLEWARE`` (or its environment fallback) is
                           missing or invalid
``token_middleware.E003``  ``TokenMiddleware`` is listed before ``AuthenticationMiddleware``
``token_middleware.E004``  ``TokenMiddleware`` is listed more than once
``token_middleware.E005``  ``IS_REVOKED``, ``CLAIM_CHECKS`` or ``USER_LOADER`` cannot be
                           imported or is not callable
``token_middleware.W001``  ``TokenMiddleware`` is not in ``MIDDLEWARE``
=========================  ===========================================================

Trusted: the project's settings only. Checks read the settings afresh on every run, so they
report what ``override_settings`` has put in place. They never fetch keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps.config import AppConfig
from django.conf import settings
from django.core import checks

from ..core.errors import ConfigurationError
from .conf import MIDDLEWARE_PATH, SETTING, ExtensionError, SettingsTypeError, conf

AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"

_EXAMPLES = {
    "IS_REVOKED": '"myapp.auth.is_revoked"',
    "CLAIM_CHECKS": '["myapp.auth.check_tenant"]',
    "USER_LOADER": '"myapp.auth.load_user"',
}


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001, E002 and E005: the ``TOKEN_MIDDLEWARE`` setting."""
    errors: list[checks.CheckMessage] = []
    try:
        conf.build()
    except SettingsTypeError as err:
        return [
            checks.Error(
                str(err),
                hint=f'Set {SETTING} = {{"ISSUER": "https://gateway.example", "AUDIENCE": "my-service"}}.',
                id="token_middleware.E001",
            )
        ]
    except ConfigurationError as err:
        name = err.setting or "ISSUER"
        errors.append(
            checks.Error(
                f"{SETTING} is invalid: {err}",
                hint=f'Fix {SETTING}["{name}"] in your settings (or the TOKEN_MIDDLEWARE_{name} '
                "environment variable).",
                id="token_middleware.E002",
            )
        )
    try:
        conf.extensions()
    except ExtensionError as err:
        name = err.setting or "USER_LOADER"
        errors.append(
            checks.Error(
                f"{SETTING} is invalid: {err}",
                hint=f'Set {SETTING}["{name}"] to the dotted path of a callable, e.g. '
                f"{_EXAMPLES.get(name, _EXAMPLES['USER_LOADER'])}, or remove it.",
                id="token_middleware.E005",
            )
        )
    return errors


def check_middleware(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E003, E004 and W001: where ``TokenMiddleware`` sits in ``MIDDLEWARE``."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    found = [i for i, path in enumerate(middleware) if path == MIDDLEWARE_PATH]
    if not found:
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH!r} is not in MIDDLEWARE: tokens are not validated and the "
                "scope decorators refuse to run.",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, after "
                "'django.contrib.auth.middleware.AuthenticationMiddleware' if you use it.",
                id="token_middleware.W001",
            )
        ]
    errors: list[checks.CheckMessage] = []
    if len(found) > 1:
        errors.append(
            checks.Error(
                f"{MIDDLEWARE_PATH!r} is listed {len(found)} times in MIDDLEWARE.",
                hint="Keep exactly one entry.",
                id="token_middleware.E004",
            )
        )
    if AUTH_MIDDLEWARE in middleware and middleware.index(AUTH_MIDDLEWARE) > found[0]:
        errors.append(
            checks.Error(
                f"{MIDDLEWARE_PATH!r} comes before {AUTH_MIDDLEWARE!r}, which then replaces the "
                "token's request.user.",
                hint=f"Move {MIDDLEWARE_PATH!r} after {AUTH_MIDDLEWARE!r} in MIDDLEWARE.",
                id="token_middleware.E003",
            )
        )
    return errors


def register() -> None:
    """Register the checks under ``Tags.security`` (idempotent; called from ``AppConfig.ready``)."""
    checks.register(check_settings, checks.Tags.security)
    checks.register(check_middleware, checks.Tags.security)
