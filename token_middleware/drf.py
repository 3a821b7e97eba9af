"""Django REST framework: ``BearerTokenAuthentication`` and the ``HasScopes`` permissions.

Trusted: the ``TOKEN_MIDDLEWARE`` settings (through the ``token_middleware`` Django app) and the
keys they point at. ``BearerTokenAuthentication.authenticate`` returns ``None`` unless the
``Authorization`` scheme is ``Bearer``, so other authentication classes can try; a bearer token
is validated (or taken from :class:`~token_middleware.django_ext.middleware.TokenMiddleware`,
which already did) and gives ``request.user`` = a stateless
:class:`~token_middleware.django_ext.users.TokenUser` and ``request.auth`` = the
:class:`~token_middleware.core.token.AccessToken`. Errors keep the RFC 6750 wire format: 400
``invalid_request``, 401 ``invalid_token`` (or the plain ``Bearer realm="…"`` challenge when no
credentials were sent), 403 ``insufficient_scope`` with ``scope="…"``, 503 with ``Retry-After``.

List ``BearerTokenAuthentication`` first in ``authentication_classes``: DRF takes the 401
challenge from the first class. ``HasScopes`` composes (``IsAuthenticated & HasScopes``); it
raises its 403 itself so the response carries the challenge, so in an ``|`` put it last.

    class CustomerView(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = [IsAuthenticated & HasScopes]
        required_scopes = ["customers:read"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .django_ext.apps import get_runtime
from .django_ext.users import TokenUser
from .core.errors import BearerError, InsufficientScope, KeysUnavailable
from .core.scopes import normalise_required
from .core.token import AccessToken

__all__ = [
    "BearerTokenAuthentication",
    "HasAnyScope",
    "HasScopes",
    "require_any_scope",
    "require_scopes",
]

# Set on the DRF request by authenticate(): the error that authenticate_header() must describe.
_ERROR_ATTR = "_token_middleware_error"
_UNSET = object()


class BearerAuthenticationFailed(exceptions.AuthenticationFailed):  # type: ignore[misc]
    """401 ``invalid_token``; DRF puts ``authenticate_header()`` in ``WWW-Authenticate``."""


class BearerAPIException(exceptions.APIException):  # type: ignore[misc]
    """A non-401 bearer error (400, 403, 503) carrying its own challenge and ``Retry-After``."""

    def __init__(self, error: BearerError, realm: str) -> None:
        super().__init__(detail=error.to_dict(), code=error.error)
        self.status_code = error.status_code
        self.auth_header = error.www_authenticate(realm)
        if isinstance(error, KeysUnavailable):
            self.wait = error.retry_after


class InsufficientScopeDenied(exceptions.PermissionDenied):  # type: ignore[misc]
    """403 ``insufficient_scope`` with ``scope="…"`` in ``WWW-Authenticate``."""

    def __init__(self, error: InsufficientScope, realm: str) -> None:
        super().__init__(detail=error.to_dict(), code=error.error)
        self.auth_header = error.www_authenticate(realm)


def _to_drf(error: BearerError, realm: str) -> exceptions.APIException:
    if error.status_code == 401:
        exc = BearerAuthenticationFailed(detail=error.to_dict(), code=error.error)
        return exc
    return BearerAPIException(error, realm)


class BearerTokenAuthentication(BaseAuthentication):  # type: ignore[misc]
    """RFC 6750 bearer tokens for DRF: ``request.auth`` is the ``AccessToken``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, AccessToken] | None:
        authorization: str | None = request.META.get("HTTP_AUTHORIZATION")
        scheme = (authorization or "").strip(" \t").split(" ", 1)[0].split("\t", 1)[0]
        if scheme.lower() != self.keyword.lower():
            return None  # not ours: let other authentication classes try
        django_request = request._request
        token: Any = getattr(django_request, "access_token", _UNSET)
        if token is _UNSET or token is None:
            runtime = get_runtime()
            try:
                token = runtime.validator.authenticate(
                    authorization, request.META.get("QUERY_STRING", "")
                )
            except BearerError as err:
                setattr(request, _ERROR_ATTR, err)
                raise _to_drf(err, runtime.realm) from None
            if token is None:
                return None
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        realm = get_runtime().realm
        error: BearerError | None = getattr(request, _ERROR_ATTR, None)
        challenge = error.www_authenticate(realm) if error is not None else None
        return challenge or f'Bearer realm="{realm}"'


class HasScopes(BasePermission):  # type: ignore[misc]
    """Allow requests whose ``request.auth`` token has every one of ``view.required_scopes``.

    No token: ``False`` (DRF answers 401 with the challenge). A token lacking scopes: raises
    the 403 ``insufficient_scope`` response with ``scope="…"``.
    """

    any_of = False

    def required(self, view: Any) -> tuple[str, ...]:
        scopes: Sequence[str] | None = getattr(view, "required_scopes", None)
        if scopes is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs required_scopes on {type(view).__name__}, "
                'e.g. required_scopes = ["orders:read"]'
            )
        return normalise_required(scopes)

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return False
        wanted = self.required(view)
        ok = token.has_any_scope(*wanted) if self.any_of else token.has_scopes(*wanted)
        if not ok and wanted:
            raise InsufficientScopeDenied(
                InsufficientScope(wanted, any_of=self.any_of), get_runtime().realm
            )
        return True


class HasAnyScope(HasScopes):
    """Like :class:`HasScopes`, but one of ``view.required_scopes`` is enough."""

    any_of = True


def require_scopes(*scopes: str) -> type[HasScopes]:
    """A permission class requiring all of ``scopes``: ``permission_classes = [require_scopes("a")]``."""
    fixed = normalise_required(scopes)

    class RequireScopes(HasScopes):
        def required(self, view: Any) -> tuple[str, ...]:
            return fixed

    RequireScopes.__name__ = RequireScopes.__qualname__ = f"require_scopes{fixed!r}"
    return RequireScopes


def require_any_scope(*scopes: str) -> type[HasScopes]:
    """A permission class requiring one of ``scopes``."""
    fixed = normalise_required(scopes)

    class RequireAnyScope(HasAnyScope):
        def required(self, view: Any) -> tuple[str, ...]:
            return fixed

    RequireAnyScope.__name__ = RequireAnyScope.__qualname__ = f"require_any_scope{fixed!r}"
    return RequireAnyScope
