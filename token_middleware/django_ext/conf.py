"""Lazy access to the ``TOKEN_MIDDLEWARE`` setting, and the runtime built from it.

Trusted: the deployer's settings only. :data:`conf` is a stateless object: every read goes to
``django.conf.settings``, so ``override_settings(TOKEN_MIDDLEWARE=…)`` takes effect at once.
A NAME missing from the dict falls back to the ``TOKEN_MIDDLEWARE_<NAME>`` environment variable,
the same rule as the Flask extension's ``app.config``.

The :class:`Runtime` (validated :class:`~token_middleware.settings.Settings` and the
:class:`~token_middleware.validator.TokenValidator` that owns the key cache) is built once per
distinct settings dict and owned by the app's :class:`~django.apps.AppConfig` instance, not by
this module.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..errors import ConfigurationError
from ..settings import NAMES, PREFIX, Settings
from ..validator import TokenValidator

SETTING = "TOKEN_MIDDLEWARE"
APP_LABEL = "token_middleware"
MIDDLEWARE_PATH = "token_middleware.django_ext.middleware.TokenMiddleware"


class SettingsTypeError(ConfigurationError):
    """``TOKEN_MIDDLEWARE`` is not a dict."""


class Conf:
    """A stateless view of ``settings.TOKEN_MIDDLEWARE``; read it through :data:`conf`."""

    @property
    def raw(self) -> Mapping[str, Any]:
        """The ``TOKEN_MIDDLEWARE`` dict as configured (``{}`` when unset)."""
        value = getattr(settings, SETTING, None)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SettingsTypeError(
                f"settings.{SETTING} must be a dict of NAMEs such as "
                f'{{"ISSUER": …, "AUDIENCE": …}}, got {type(value).__name__}',
                setting=SETTING,
            )
        return value

    def values(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The dict's NAMEs, with ``TOKEN_MIDDLEWARE_<NAME>`` environment variables as fallback."""
        env = os.environ if environ is None else environ
        merged = {name: env[PREFIX + name] for name in NAMES if PREFIX + name in env}
        merged.update(self.raw)
        return merged

    def build(self) -> Settings:
        """Validated settings; raises :class:`~token_middleware.errors.ConfigurationError`."""
        return Settings.from_mapping(self.values())


#: The one stateless accessor.
conf = Conf()


def improperly_configured(err: ConfigurationError) -> ImproperlyConfigured:
    """An ``ImproperlyConfigured`` that names the fix in the Django vocabulary."""
    where = f"settings.{SETTING}" + (
        f'["{err.setting}"] (or TOKEN_MIDDLEWARE_{err.setting} in the environment)'
        if err.setting and err.setting != SETTING
        else ""
    )
    return ImproperlyConfigured(f"token_middleware: {err} -- fix {where}")


@dataclass(frozen=True)
class Runtime:
    """What one settings dict yields: the validator (with its settings and key cache)."""

    validator: TokenValidator

    @property
    def settings(self) -> Settings:
        return self.validator.settings

    @property
    def realm(self) -> str:
        return self.validator.settings.realm


class RuntimeCache:
    """Builds a :class:`Runtime` once per distinct ``TOKEN_MIDDLEWARE`` dict (thread-safe)."""

    def __init__(self) -> None:
        self._entry: tuple[dict[str, Any], Runtime] | None = None
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        """The runtime for the current settings; ``ImproperlyConfigured`` when they are invalid."""
        try:
            raw = conf.raw
            entry = self._entry
            if entry is not None and entry[0] == raw:
                return entry[1]
            with self._lock:
                entry = self._entry
                if entry is not None and entry[0] == raw:
                    return entry[1]
                snapshot = copy.deepcopy(dict(raw))
                built = conf.build()
                runtime = Runtime(validator=TokenValidator(built))
                self._entry = (snapshot, runtime)
                return runtime
        except ConfigurationError as err:
            raise improperly_configured(err) from err


def get_runtime() -> Runtime:
    """The runtime owned by the installed ``token_middleware`` app."""
    from .apps import TokenMiddlewareConfig

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
