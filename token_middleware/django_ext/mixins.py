"""``ScopesRequiredMixin`` for class-based views (sync or async handlers).

Trusted: only ``request.access_token`` from :class:`~.middleware.TokenMiddleware`. Put the mixin
first in the bases; ``required_scopes`` are all required unless ``any_scope = True``; a list of
lists is "any of all of" (``[["orders:read", "orders:write"], ["admin"]]``). An empty
``required_scopes`` still requires a valid token.

    class CustomerView(ScopesRequiredMixin, View):
        required_scopes = ("customers:read",)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..core.scopes import ScopeSpec, requirement
from .decorators import denial


class ScopesRequiredMixin:
    """Refuse a request whose token lacks ``required_scopes`` before the handler runs."""

    required_scopes: Sequence[ScopeSpec] = ()
    any_scope: bool = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = denial(request, requirement(self.required_scopes, any_of=self.any_scope))
        if refused is None:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        if getattr(self, "view_is_async", False):

            async def respond() -> HttpResponse:
                return refused

            return respond()
        return refused
