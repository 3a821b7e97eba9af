"""Where the Flask extension reads its configuration from, and where it keeps its state.

Trusted: only the deployer. Settings come from ``app.config`` keys ``TOKEN_MIDDLEWARE_<NAME>``
(shared/DESIGN.md), with the process environment as the fallback for any NAME that
``app.config`` does not set. They are validated once, in :meth:`TokenAuth.init_app`, so a
misconfigured app fails at start-up with a :class:`~token_middleware.core.errors.ConfigurationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Request, current_app, g, request

from ..core.runtime import Runtime
from ..core.settings import PREFIX, Settings

#: The key of this extension's state (a :class:`~token_middleware.core.runtime.Runtime`) in
#: ``app.extensions``.
EXTENSION_KEY = "token_middleware"

#: The key of the :class:`~token_middleware.flask_ext.TokenAuth` object itself, for the hooks
#: registered on it after ``init_app`` (``@auth.user_loader``).
AUTH_KEY = "token_middleware.auth"

#: The prefix of every ``app.config`` key this extension reads.
CONFIG_PREFIX = PREFIX


def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """Settings from ``TOKEN_MIDDLEWARE_*`` keys, the environment as fallback."""
    return Settings.from_prefixed(config, prefix=CONFIG_PREFIX)


# The objects behind Flask's proxies, for the per-request hooks. ``_get_current_object`` is
# werkzeug's documented LocalProxy method; like the proxies, each raises RuntimeError outside a
# context. Measured (timeit, CPython 3.11, Flask 3.1, this machine): an attribute read through a
# proxy (`g.get`, `request.environ`, `current_app.extensions`) costs 1.3-1.6 us, through these
# 0.08-0.17 us; a request went through the proxies ~10 times (issue 16, docs/benchmarks.md).
app_object: Callable[[], Flask] = current_app._get_current_object  # type: ignore[attr-defined]
g_object: Callable[[], Any] = g._get_current_object
request_object: Callable[[], Request] = request._get_current_object  # type: ignore[attr-defined]

#: The name this state had before 0.2; it is the shared :class:`~token_middleware.core.runtime.Runtime`.
TokenAuthState = Runtime


def get_state(app: Flask | None = None) -> Runtime:
    """The extension state of ``app`` (default: the current app).

    Raises :class:`RuntimeError` when :meth:`TokenAuth.init_app` was not called for that app:
    that is a programming error, not something to answer with a 401.
    """
    target = app if app is not None else app_object()
    state = target.extensions.get(EXTENSION_KEY)
    if not isinstance(state, Runtime):
        raise RuntimeError(
            "token_middleware is not set up on this Flask app: call TokenAuth().init_app(app) "
            "(or TokenAuth(app)) in your app factory"
        )
    return state
