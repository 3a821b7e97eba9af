"""Django REST framework: ``BearerTokenAuthentication``, the ``HasScopes`` permissions, an exception handler.

Trusted: the ``TOKEN_MIDDLEWARE`` settings (through the ``token_middleware`` Django app) and the
keys they point at. ``BearerTokenAuthentication.authenticate`` returns ``None`` unless the
``Authorization`` scheme is ``Bearer``, so other authentication classes can try; a bearer token
is validated (or taken from :class:`~token_middleware.django_ext.middleware.TokenMiddleware`,
which already did) and gives ``request.auth`` = the
:class:`~token_middleware.core.token.AccessToken` and ``request.user`` = the token's user (the
``USER_LOADER``'s, else a stateless :class:`~token_middleware.django_ext.users.TokenUser`).
Authentication errors keep the RFC 6750 wire format: 400 ``invalid_request``, 401
``invalid_token`` (or the plain ``Bearer realm="…"`` challenge when no credentials were sent),
503 with ``Retry-After``. List ``BearerTokenAuthentication`` first in
``authentication_classes``: DRF takes the 401 challenge from the first class.

Refusals decided here (an invalid token in ``authenticate``, missing scopes in a permission) are
written to the ``token_middleware.audit`` log, told to the ``OBSERVERS`` and sent as the Django
``token_refused`` signal (:mod:`token_middleware.django_ext.signals`), exactly once each. A
request that DRF itself refuses (no token under ``IsAuthenticated``) is DRF's answer, not ours,
and is not reported. A scope permission reports when it says no: inside an ``|`` composition
whose other side allows the request, that still counts as a refusal, so prefer listing
permissions to composing them with ``|``.

The permissions are plain DRF booleans: without a token they return ``False`` (DRF answers 401
with the challenge); with a token lacking the scopes they return ``False`` with ``message`` (the
RFC 6750 body ``{"error": "insufficient_scope", "error_description": …}``) and ``code``
``insufficient_scope``, which DRF's ``permission_denied`` turns into the 403. So they compose
with ``&``, ``|`` and ``~``; DRF's composed permissions carry no message, so a refused
composition answers DRF's generic 403 ``{"detail": …}``. List permissions
(``[IsAuthenticated, HasScopes]``) rather than ``&`` them to keep the scope message.
:func:`exception_handler` (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) adds
``WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`` to that 403.

    class CustomerView(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = [HasScopes]
        required_scopes = ["customers:read"]     # or [["customers:read"], ["admin"]]

:class:`HasActor` (``required_actors = ["orders-service"]``) and :func:`require_actor` ask for
the nearest actor of the token's ``act`` chain (RFC 8693 §4.1) in the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .core.actors import ActorRequired, actor_requirement
from .core.errors import BearerError, ConfigurationError, InsufficientScope, KeysUnavailable
from .core.scopes import Requirement, ScopeSpec, requirement, satisfies
from .core.token import AccessToken
from .django_ext.apps import get_runtime
from .django_ext.middleware import REQUEST_USER_ATTR
from .django_ext.signals import authenticated, refused
from .django_ext.users import TokenUser, load_user

if TYPE_CHECKING:  # rest_framework.views imports this module through api_settings: no cycle
    from rest_framework.response import Response
    from rest_framework.views import APIView

__all__ = [
    "BearerTokenAuthentication",
    "HasActor",
    "HasAnyScope",
    "HasScopes",
    "exception_handler",
    "require_actor",
    "require_any_scope",
    "require_scopes",
]

# Set on the DRF request by authenticate(): the error that authenticate_header() must describe.
_ERROR_ATTR = "_token_middleware_error"
# Set on the DRF request by a scope permission that refused: what the 403 challenge names.
_DENIED_ATTR = "_token_middleware_denied"


class BearerAuthenticationFailed(exceptions.AuthenticationFailed):
    """401 ``invalid_token``; DRF puts ``authenticate_header()`` in ``WWW-Authenticate``."""


class BearerAPIException(exceptions.APIException):
    """A non-401 bearer error (400, 503) carrying its own challenge and ``Retry-After``."""

    def __init__(self, error: BearerError, realm: str) -> None:
        super().__init__(detail=error.to_dict(), code=error.error)
        self.status_code = error.status_code
        self.auth_header = error.www_authenticate(realm)
        if isinstance(error, KeysUnavailable):
            self.wait = error.retry_after


def _to_drf(error: BearerError, realm: str) -> exceptions.APIException:
    if error.status_code == 401:
        return BearerAuthenticationFailed(detail=error.to_dict(), code=error.error)
    return BearerAPIException(error, realm)


class BearerTokenAuthentication(BaseAuthentication):
    """RFC 6750 bearer tokens for DRF: ``request.auth`` is the ``AccessToken``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        authorization: str | None = request.META.get("HTTP_AUTHORIZATION")
        scheme = (authorization or "").strip(" \t").split(" ", 1)[0].split("\t", 1)[0]
        if scheme.lower() != self.keyword.lower():
            return None  # not ours: let other authentication classes try
        django_request = request._request
        token: AccessToken | None = getattr(django_request, "access_token", None)
        if token is not None:  # TokenMiddleware validated it and loaded its user
            user = getattr(django_request, REQUEST_USER_ATTR, None)
            return (TokenUser(token) if user is None else user), token
        runtime = get_runtime()
        try:
            token = runtime.validator.authenticate(authorization, request.META.get("QUERY_STRING", ""))
            if token is None:
                return None
            user = load_user(runtime.user_loader, token)
        except BearerError as err:
            setattr(request, _ERROR_ATTR, err)
            refused(BearerTokenAuthentication, runtime.validator, django_request, err, adapter="drf", token=token)
            raise _to_drf(err, runtime.realm) from None
        authenticated(BearerTokenAuthentication, django_request, token)
        return user, token

    def authenticate_header(self, request: Request) -> str:
        realm = get_runtime().realm
        error: BearerError | None = getattr(request, _ERROR_ATTR, None)
        challenge = error.www_authenticate(realm) if error is not None else None
        return challenge or f'Bearer realm="{realm}"'


def _deny(permission: Any, sender: type, request: Request, token: AccessToken, error: BearerError) -> bool:
    """``False`` for DRF's 403, with the RFC 6750 body as ``message`` and ``code``; the error is kept
    on the request for the exception handler's challenge, and reported (audit, observers)."""
    permission.message = error.to_dict()
    permission.code = error.error
    setattr(request, _DENIED_ATTR, error)
    refused(sender, get_runtime().validator, request._request, error, adapter="drf", token=token)
    return False


class HasScopes(BasePermission):
    """Allow requests whose ``request.auth`` token satisfies ``view.required_scopes``.

    ``required_scopes`` are all required (``["a", "b"]``); a list of lists is "any of all of"
    (``[["a", "b"], ["admin"]]``). No token: ``False``. A token lacking the scopes: ``False``
    with :attr:`message` and :attr:`code` set for DRF's 403.
    """

    any_of = False
    message: dict[str, str] | None = None
    code: str | None = None

    def required(self, view: APIView) -> Requirement:
        """The requirement this permission enforces on ``view``."""
        scopes: list[ScopeSpec] | None = getattr(view, "required_scopes", None)
        if scopes is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs required_scopes on {type(view).__name__}, "
                'e.g. required_scopes = ["orders:read"]'
            )
        try:
            return requirement(scopes, any_of=self.any_of)
        except ConfigurationError as err:
            raise ImproperlyConfigured(f"{type(view).__name__}.required_scopes: {err}") from None

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return False  # DRF answers 401 with the authentication class's challenge
        wanted = self.required(view)
        if satisfies(token, wanted):
            return True
        return _deny(self, HasScopes, request, token, InsufficientScope.for_requirement(wanted))


class HasAnyScope(HasScopes):
    """Like :class:`HasScopes`, but one of ``view.required_scopes`` is enough."""

    any_of = True


def _fixed(base: type[HasScopes], name: str, fixed: Requirement) -> type[HasScopes]:
    def required(self: HasScopes, view: APIView) -> Requirement:
        return fixed

    label = " | ".join(" ".join(group) for group in fixed)
    return cast("type[HasScopes]", type(f"{name}({label})", (base,), {"required": required, "__module__": __name__}))


def require_scopes(*scopes: ScopeSpec) -> type[HasScopes]:
    """A permission class requiring all of ``scopes`` (lists are alternatives).

    ``permission_classes = [require_scopes("a", "b")]``, or
    ``[require_scopes(["a", "b"], ["admin"])]`` for "a and b, or admin". Invalid scopes raise
    :class:`~token_middleware.core.errors.ConfigurationError` at import time.
    """
    return _fixed(HasScopes, "require_scopes", requirement(scopes))


def require_any_scope(*scopes: str) -> type[HasScopes]:
    """A permission class requiring one of ``scopes``."""
    return _fixed(HasAnyScope, "require_any_scope", requirement(scopes, any_of=True))


class HasActor(BasePermission):
    """Allow requests whose token's nearest actor (``act``, RFC 8693 §4.1) is in ``view.required_actors``.

    ``required_actors = ["orders-service"]``: the view must be called through the orders
    service, with a token it obtained by exchange. No token: ``False``. Another actor, or
    none: ``False`` with :attr:`message` and :attr:`code` (``insufficient_scope``) for DRF's 403.
    """

    message: dict[str, str] | None = None
    code: str | None = None

    def required(self, view: APIView) -> tuple[str, ...]:
        """The actors this permission accepts on ``view``."""
        actors: list[str] | None = getattr(view, "required_actors", None)
        if actors is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs required_actors on {type(view).__name__}, "
                'e.g. required_actors = ["orders-service"]'
            )
        try:
            return actor_requirement(actors)
        except ConfigurationError as err:
            raise ImproperlyConfigured(f"{type(view).__name__}.required_actors: {err}") from None

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return False  # DRF answers 401 with the authentication class's challenge
        allowed = self.required(view)
        if token.actor in allowed:
            return True
        return _deny(self, HasActor, request, token, ActorRequired(allowed))


def require_actor(*actors: str) -> type[HasActor]:
    """A permission class requiring the nearest actor to be one of ``actors``:
    ``permission_classes = [HasScopes, require_actor("orders-service")]``."""
    allowed = actor_requirement(actors)

    def required(self: HasActor, view: APIView) -> tuple[str, ...]:
        return allowed

    name = f"require_actor({' | '.join(allowed)})"
    return cast("type[HasActor]", type(name, (HasActor,), {"required": required, "__module__": __name__}))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, plus the RFC 6750 challenge on a scope permission's 403.

    ``REST_FRAMEWORK = {"EXCEPTION_HANDLER": "token_middleware.drf.exception_handler"}``. The
    challenge (``Bearer realm="…", error="insufficient_scope", …, scope="…"``) is added only when
    the 403 carries the message of a refusing :class:`HasScopes`: a lone or listed one, not a
    composition, nor a ``PermissionDenied`` the view raised itself.
    """
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    denied = getattr(context.get("request"), _DENIED_ATTR, None)
    if (
        response is not None
        and isinstance(exc, exceptions.PermissionDenied)
        and isinstance(denied, (InsufficientScope, ActorRequired))
        and isinstance(exc.detail, dict)
        and exc.detail.get("error") == denied.error
        and not response.has_header("WWW-Authenticate")
    ):
        challenge = denied.www_authenticate(get_runtime().realm)
        if challenge:
            response["WWW-Authenticate"] = challenge
    return response
