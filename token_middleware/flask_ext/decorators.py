"""Scope decorators for Flask views: ``require_scopes``, ``require_any_scope``, ``require_token``.

Trusted: only the token that :class:`~token_middleware.flask_ext.TokenAuth` validated for this
request. A decorator never reads headers itself. Without a token it raises
:class:`~token_middleware.core.errors.MissingToken` (401, plain ``Bearer realm="…"`` challenge); with
a token lacking scopes it raises :class:`~token_middleware.core.errors.InsufficientScope` (403,
``scope="…"``); Flask's error handling turns both into RFC 6750 responses. ``OPTIONS`` without
a token passes, so CORS preflight works. Views may be sync or async (``flask[async]``): an async
view is called through ``current_app.ensure_sync``, a sync one directly (Flask has already
passed the decorated view through ``ensure_sync``).

    @app.get("/orders")
    @require_scopes("orders:read")
    def list_orders(): ...

    @app.delete("/orders/<int:order_id>")
    @require_scopes(["orders:read", "orders:write"], ["admin"])   # both orders scopes, or admin
    def delete_order(order_id): ...

``require_actor("orders-service")`` asks for the nearest actor of the token's ``act`` chain
instead (:mod:`token_middleware.core.actors`): 403 ``insufficient_scope`` otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any, TypeVar

from ..core.actors import actor_requirement, check_actor
from ..core.errors import BearerError
from ..core.scopes import Requirement, ScopeDecorators, check_requirement
from ..core.token import AccessToken
from .config import app_object, get_state, request_object
from .extension import get_current_token
from .signals import refused

F = TypeVar("F", bound=Callable[..., Any])


def _guard(required: Requirement) -> Callable[[F], F]:
    return _guard_with(functools.partial(check_requirement, required=required))


def _guard_with(check: Callable[[AccessToken | None], object]) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        # Decided once, as Flask's ensure_sync decides per call: a sync view is called as it is.
        is_async = iscoroutinefunction(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = get_current_token()
            if token is None:
                get_state()  # a programming error (extension not set up) must not become a 401
            if not (token is None and request_object().method == "OPTIONS"):
                try:
                    check(token)
                except BearerError as err:
                    refused(err, token)
                    raise
            if is_async:
                return app_object().ensure_sync(view)(*args, **kwargs)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


_decorators = ScopeDecorators(_guard)
require_scopes = _decorators.require_scopes
require_any_scope = _decorators.require_any_scope
require_token = _decorators.require_token


def require_actor(*actors: str) -> Callable[[F], F]:
    """Require a valid token whose nearest actor (``act``, RFC 8693 §4.1) is one of ``actors``.

    ``@require_actor("orders-service")``: the view must be called through the orders service
    with a token it obtained by exchange. Otherwise 403 ``insufficient_scope``; no token, 401.
    """
    allowed = actor_requirement(actors)
    return _guard_with(functools.partial(check_actor, allowed=allowed))
