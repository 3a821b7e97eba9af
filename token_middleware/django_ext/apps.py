"""The ``token_middleware`` Django app: checks registered, settings reloaded on ``setting_changed``.

Trusted: the deployer's ``TOKEN_MIDDLEWARE`` setting only. As in django-cors-headers,
``ready()`` only registers (the system checks, and the ``setting_changed`` receiver) and never
raises, so ``manage.py check``, ``migrate`` or ``collectstatic`` report bad settings as
``token_middleware.E00x`` checks instead of a traceback. The settings and validator are built
when :class:`~.middleware.TokenMiddleware` is loaded (server start-up), where invalid settings
raise ``ImproperlyConfigured`` naming the fix. The app instance owns the runtime
(:class:`~.conf.RuntimeCache`); :func:`get_runtime` is how the middleware, the decorators and
DRF reach it.
"""

from __future__ import annotations

from types import ModuleType

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from . import checks
from .conf import APP_LABEL, DjangoRuntime, RuntimeCache


class TokenMiddlewareConfig(AppConfig):
    name = "token_middleware.django_ext"
    label = APP_LABEL
    verbose_name = "Token middleware"

    def __init__(self, app_name: str, app_module: ModuleType | None) -> None:
        super().__init__(app_name, app_module)
        self.runtimes = RuntimeCache()

    def ready(self) -> None:
        checks.register()
        # Weakly held and keyed by the bound method: connecting again is a no-op, and an app
        # registry replaced by override_settings(INSTALLED_APPS=…) gets its own receiver.
        setting_changed.connect(self.runtimes.reload)

    def runtime(self) -> DjangoRuntime:
        """The settings, validator and user loader for the current ``TOKEN_MIDDLEWARE``."""
        return self.runtimes.get()


def runtime_cache() -> RuntimeCache:
    """The runtime cache owned by the installed ``token_middleware`` app."""
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
    return app_config.runtimes


def get_runtime() -> DjangoRuntime:
    """The runtime of the installed ``token_middleware`` app (built on first use)."""
    return runtime_cache().get()
