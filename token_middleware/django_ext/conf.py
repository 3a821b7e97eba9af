"""Lazy access to the ``TOKEN_MIDDLEWARE`` setting, and the runtime built from it.

Trusted: the deployer's settings only. :data:`conf` is a stateless object: every read goes to
``django.conf.settings``, so ``override_settings(TOKEN_MIDDLEWARE=…)`` takes effect at once.
A NAME missing from the dict falls back to the ``TOKEN_MIDDLEWARE_<NAME>`` environment variable,
the same rule as the Flask extension's ``app.config``.

The :class:`Runtime` (validated :class:`~token_middleware.core.settings.Settings` and the
:class:`~token_middleware.core.validator.TokenValidator` that owns the key cache) is built once per
distinct settings dict and owned by the app's :class:`~django.apps.AppConfig` instance, not by
this module.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..core.errors import ConfigurationError
from ..core.runtime import Runtime
from ..core.settings import NAMES, PREFIX, Settings
from ..core.validator import TokenValidator

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
        """Validated settings; raises :class:`~token_middleware.core.errors.ConfigurationError`."""
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
