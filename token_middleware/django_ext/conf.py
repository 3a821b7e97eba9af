"""Lazy access to the ``TOKEN_MIDDLEWARE`` setting, and the runtime built from it.

Trusted: the deployer's settings only. :data:`conf` is a stateless object: every read goes to
``django.conf.settings``. A NAME of the configuration table missing from the dict falls back to
the ``TOKEN_MIDDLEWARE_<NAME>`` environment variable, the same rule as the Flask extension's
``app.config``.

Four more keys exist only in Django's dict (they are not environment names): dotted paths
resolved with :func:`~django.utils.module_loading.import_string` when the runtime is built.

``IS_REVOKED``
    ``is_revoked(token) -> bool``: ``True`` refuses the token (401 ``invalid_token``), also
    when it comes from the verified-token cache.
``CLAIM_CHECKS``
    a list of ``check(claims) -> None`` raising an
    :class:`~token_middleware.core.errors.InvalidClaim` to refuse.
``USER_LOADER``
    ``load_user(token) -> user | None``: the application's user for a valid token (a Django
    user model instance or anything user-like); ``None`` refuses the token. Without it
    ``request.user`` is the stateless :class:`~.users.TokenUser` (see :mod:`.users`).
``OBSERVERS``
    a list of observers (:mod:`token_middleware.core.observe`): a dotted path to a function of
    the event, or to a class, which is instantiated with no arguments, e.g.
    ``["token_middleware.metrics.PrometheusMetrics"]``.

The first two and ``OBSERVERS`` go to the :class:`~token_middleware.core.validator.TokenValidator`
(:mod:`token_middleware.core.hooks` says exactly how they are called). A value may also be the
callable itself rather than its dotted path (handy in ``override_settings``).

The :class:`DjangoRuntime` (validated :class:`~token_middleware.core.settings.Settings`, the
:class:`~token_middleware.core.validator.TokenValidator` that owns the key cache, and the user
loader) is built once, when the middleware is loaded, and again after Django's
``setting_changed`` signal names ``TOKEN_MIDDLEWARE`` (so ``override_settings`` works). It is
owned by the app's :class:`~django.apps.AppConfig` instance (:class:`RuntimeCache`), not by this
module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..core.errors import ConfigurationError
from ..core.hooks import ClaimCheck, RevocationCheck
from ..core.observe import Observer, Tracer
from ..core.runtime import Runtime
from ..core.settings import NAMES, PREFIX, Settings
from ..core.token import AccessToken
from ..core.validator import TokenValidator

SETTING = "TOKEN_MIDDLEWARE"
APP_LABEL = "token_middleware"
MIDDLEWARE_PATH = "token_middleware.django_ext.middleware.TokenMiddleware"

#: Keys of ``TOKEN_MIDDLEWARE`` that hold dotted paths (never read from the environment).
EXTENSION_NAMES = ("IS_REVOKED", "CLAIM_CHECKS", "USER_LOADER", "OBSERVERS")

#: ``load_user(token)``: a plain function, or an ``async def`` one.
UserLoader = Callable[[AccessToken], Union[Any, Awaitable[Any]]]


class SettingsTypeError(ConfigurationError):
    """``TOKEN_MIDDLEWARE`` is not a dict."""


class ExtensionError(ConfigurationError):
    """An ``IS_REVOKED``, ``CLAIM_CHECKS`` or ``USER_LOADER`` entry cannot be used."""


@dataclass(frozen=True)
class Extensions:
    """The resolved extension points of ``TOKEN_MIDDLEWARE``."""

    is_revoked: RevocationCheck | None = None
    claim_checks: tuple[ClaimCheck, ...] = ()
    user_loader: UserLoader | None = None
    observers: tuple[Observer | Tracer, ...] = ()


def _callable(name: str, value: Any) -> Callable[..., Any]:
    """``value`` itself when callable, else the callable its dotted path names."""
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as err:
            raise ExtensionError(f"{name}: cannot import {value!r} ({err})", setting=name) from None
    if not callable(value):
        raise ExtensionError(f"{name}: {value!r} is not callable", setting=name)
    return value  # type: ignore[no-any-return]


def _observer(value: Any) -> Observer | Tracer:
    """An ``OBSERVERS`` entry: the observer itself, or a class instantiated with no arguments."""
    found = _callable("OBSERVERS", value)
    if isinstance(found, type):
        try:
            instance = found()
        except ConfigurationError as err:
            raise ExtensionError(f"OBSERVERS: {err}", setting="OBSERVERS") from None
        if not callable(instance) and not isinstance(instance, Tracer):
            raise ExtensionError(f"OBSERVERS: a {found.__name__} is not callable", setting="OBSERVERS")
        return instance  # type: ignore[no-any-return]
    return found


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
        """The dict's NAMEs (not the extension keys), with environment variables as fallback."""
        env = os.environ if environ is None else environ
        merged = {name: env[PREFIX + name] for name in NAMES if PREFIX + name in env}
        merged.update({k: v for k, v in self.raw.items() if k not in EXTENSION_NAMES})
        return merged

    def build(self) -> Settings:
        """Validated settings; raises :class:`~token_middleware.core.errors.ConfigurationError`."""
        return Settings.from_mapping(self.values())

    def extensions(self) -> Extensions:
        """The extension points, imported; raises :class:`ExtensionError` naming the key."""
        raw = self.raw
        checks = raw.get("CLAIM_CHECKS") or ()
        if isinstance(checks, str) or not isinstance(checks, Sequence):
            raise ExtensionError(
                'CLAIM_CHECKS must be a list of dotted paths, e.g. ["myapp.auth.check_tenant"]',
                setting="CLAIM_CHECKS",
            )
        revoked = raw.get("IS_REVOKED")
        loader = raw.get("USER_LOADER")
        observers = raw.get("OBSERVERS") or ()
        if isinstance(observers, str) or not isinstance(observers, Sequence):
            raise ExtensionError(
                'OBSERVERS must be a list of dotted paths, e.g. ["token_middleware.metrics.PrometheusMetrics"]',
                setting="OBSERVERS",
            )
        return Extensions(
            is_revoked=None if revoked is None else _callable("IS_REVOKED", revoked),
            claim_checks=tuple(_callable("CLAIM_CHECKS", check) for check in checks),
            user_loader=None if loader is None else _callable("USER_LOADER", loader),
            observers=tuple(_observer(entry) for entry in observers),
        )


#: The one stateless accessor.
conf = Conf()


def improperly_configured(err: ConfigurationError) -> ImproperlyConfigured:
    """An ``ImproperlyConfigured`` that names the fix in the Django vocabulary."""
    env = "" if err.setting in EXTENSION_NAMES else f" (or TOKEN_MIDDLEWARE_{err.setting} in the environment)"
    where = f"settings.{SETTING}" + (
        f'["{err.setting}"]{env}' if err.setting and err.setting != SETTING else ""
    )
    return ImproperlyConfigured(f"token_middleware: {err} -- fix {where}")


@dataclass(frozen=True)
class DjangoRuntime(Runtime):
    """The core :class:`Runtime` plus what only the Django adapter uses: the user loader."""

    user_loader: UserLoader | None = None


def build_runtime() -> DjangoRuntime:
    """Settings, hooks and validator from the current ``TOKEN_MIDDLEWARE``; raises ``ConfigurationError``."""
    built = conf.build()
    ext = conf.extensions()
    validator = TokenValidator(built, is_revoked=ext.is_revoked, claim_checks=ext.claim_checks,
                               observers=ext.observers)
    return DjangoRuntime(validator=validator, user_loader=ext.user_loader)


class RuntimeCache:
    """Holds the :class:`DjangoRuntime`; rebuilt after ``setting_changed`` for ``TOKEN_MIDDLEWARE``."""

    def __init__(self) -> None:
        self._runtime: DjangoRuntime | None = None
        self._lock = threading.Lock()

    def get(self) -> DjangoRuntime:
        """The runtime; ``ImproperlyConfigured`` (naming the fix) when the settings are invalid."""
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._lock:
            if self._runtime is None:
                try:
                    self._runtime = build_runtime()
                except ConfigurationError as err:
                    raise improperly_configured(err) from err
            return self._runtime

    def reload(self, *, setting: str, **kwargs: Any) -> None:
        """The ``setting_changed`` receiver: forget the runtime when ``TOKEN_MIDDLEWARE`` changed."""
        if setting == SETTING:
            with self._lock:
                self._runtime = None
