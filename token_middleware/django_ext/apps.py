"""The ``token_middleware`` Django app: settings validated at start-up, checks registered.

Trusted: the deployer's ``TOKEN_MIDDLEWARE`` setting only. ``ready()`` builds the runtime once,
so invalid settings raise ``ImproperlyConfigured`` (naming the fix) when Django starts, never at
the first request. The app instance owns the runtime cache (:class:`~.conf.RuntimeCache`);
:func:`get_runtime` is how the middleware, the decorators and DRF reach it.
"""

from __future__ import annotations

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured

from ..core.runtime import Runtime
from . import checks
from .conf import APP_LABEL, RuntimeCache


class TokenMiddlewareConfig(AppConfig):  # type: ignore[misc]
    name = "token_middleware.django_ext"
    label = APP_LABEL
    verbose_name = "Token middleware"

    def ready(self) -> None:
        checks.register()
        self._runtimes = RuntimeCache()
        self._runtimes.get()  # invalid settings stop start-up here

    def runtime(self) -> Runtime:
        """The settings and validator for the current ``TOKEN_MIDDLEWARE`` dict."""
        return self._runtimes.get()


def get_runtime() -> Runtime:
    """The runtime owned by the installed ``token_middleware`` app."""
    try:
        app_config = apps.get_app_config(APP_LABEL)
    except LookupError:
        raise ImproperlyConfigured(
            "token_middleware: add 'token_middleware.django_ext' to INSTALLED_APPS"
        ) from None
    if not isinstance(app_config, TokenMiddlewareConfig):
        raise ImproperlyConfigured(
            f"token_middleware: the app label {APP_LABEL!r} belongs to another app; "
            "add 'token_middleware.django_ext' to INSTALLED_APPS"
        )
    return app_config.runtime()
