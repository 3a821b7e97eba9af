"""Scope decorators for Django function views: ``require_scopes``, ``require_any_scope``, ``require_token``.

Trusted: only ``request.access_token``, set by :class:`~.middleware.TokenMiddleware`; a decorator
never reads headers itself. Without a token the view answers 401 with the plain
``Bearer realm="…"`` challenge; with a token lacking scopes, 403 ``insufficient_scope`` with
``scope="…"``. ``OPTIONS`` without a token passes (CORS preflight). Sync and async views are
both supported; for class-based views use ``method_decorator`` or
:class:`~.mixins.ScopesRequiredMixin`.

    @require_scopes("customers:read")
    def customer(request, pk): ...

``require_actor("orders-service")`` asks for the nearest actor of the token's ``act`` chain
(:mod:`token_middleware.core.actors`): 403 ``insufficient_scope`` otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from ..core.actors import actor_requirement, check_actor
from ..core.errors import BearerError
from ..core.scopes import Requirement, ScopeDecorators, check_requirement
from ..core.token import AccessToken
from ..core.runtime import Runtime
from .conf import MIDDLEWARE_PATH
from .middleware import REQUEST_RUNTIME_ATTR, TokenMiddleware
from .responses import bearer_error_response
from .signals import refused

F = TypeVar("F", bound=Callable[..., Any])


def denial(request: HttpRequest, required: Requirement) -> HttpResponse | None:
    """The RFC 6750 response refusing ``request``, or ``None`` when it may proceed."""
    return _denial(request, lambda token: check_requirement(token, required))


def _denial(request: HttpRequest, check: Callable[[AccessToken | None], object]) -> HttpResponse | None:
    runtime: Runtime | None = getattr(request, REQUEST_RUNTIME_ATTR, None)
    if runtime is None:
        raise ImproperlyConfigured(
            f"token_middleware: the scope decorators need {MIDDLEWARE_PATH!r} in MIDDLEWARE"
        )
    token = getattr(request, "access_token", None)
    if token is None and request.method == "OPTIONS":
        return None
    try:
        check(token)
    except BearerError as err:
        refused(TokenMiddleware, runtime.validator, request, err, token=token)
        return bearer_error_response(request, err, runtime.realm)
    return None


def _guard(required: Requirement) -> Callable[[F], F]:
    return _guard_with(functools.partial(check_requirement, required=required))


def _guard_with(check: Callable[[AccessToken | None], object]) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = _denial(request, check)
                if refused is not None:
                    return refused
                return await view(request, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = _denial(request, check)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

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
