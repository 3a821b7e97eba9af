"""The ``token_middleware`` Django app: settings validated at start-up, checks registered.

Trusted: the deployer's ``TOKEN_MIDDLEWARE`` setting only. ``ready()`` builds the runtime once,
so invalid settings raise ``ImproperlyConfigured`` (naming the fix) when Django starts, never at
the first request. The app instance owns the runtime cache (:class:`~.conf.RuntimeCache`).
"""

from __future__ import annotations

from django.apps import AppConfig

from .conf import Runtime, RuntimeCache


class TokenMiddlewareConfig(AppConfig):  # type: ignore[misc]
    name = "token_middleware.django_ext"
    label = "token_middleware"
    verbose_name = "Token middleware"

    def ready(self) -> None:
        from . import checks

        checks.register()
        self._runtimes = RuntimeCache()
        self._runtimes.get()  # invalid settings stop start-up here

    def runtime(self) -> Runtime:
        """The settings and validator for the current ``TOKEN_MIDDLEWARE`` dict."""
        return self._runtimes.get()
