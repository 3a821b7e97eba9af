"""Where the Flask extension reads its configuration from, and where it keeps its state.

Trusted: only the deployer. Settings come from ``app.config`` keys ``TOKEN_MIDDLEWARE_<NAME>``
(shared/DESIGN.md), with the process environment as the fallback for any NAME that
``app.config`` does not set. They are validated once, in :meth:`TokenAuth.init_app`, so a
misconfigured app fails at start-up with a :class:`~token_middleware.core.errors.ConfigurationError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

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


#: The name this state had before 0.2; it is the shared :class:`~token_middleware.core.runtime.Runtime`.
TokenAuthState = Runtime


def get_state(app: Flask | None = None) -> Runtime:
    """The extension state of ``app`` (default: the current app).

    Raises :class:`RuntimeError` when :meth:`TokenAuth.init_app` was not called for that app:
    that is a programming error, not something to answer with a 401.
    """
    target = app if app is not None else current_app
    state = target.extensions.get(EXTENSION_KEY)
    if not isinstance(state, Runtime):
        raise RuntimeError(
            "token_middleware is not set up on this Flask app: call TokenAuth().init_app(app) "
            "(or TokenAuth(app)) in your app factory"
        )
    return state
