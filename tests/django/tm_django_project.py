"""URLconf and views of the Django test project: every decorator, CBVs, async, streaming, DRF."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.utils.decorators import method_decorator, sync_and_async_middleware
from django.views import View

from token_middleware.core.context import get_current_token
from token_middleware.core.errors import InvalidClaim, InvalidToken
from token_middleware.core.token import AccessToken
from token_middleware.django_ext.decorators import require_any_scope, require_scopes, require_token
from token_middleware.django_ext.mixins import ScopesRequiredMixin


class SessionLikeUser:
    """An authenticated user found by some other authentication (e.g. a session)."""

    is_authenticated = True
    username = "session-user"


@sync_and_async_middleware
def other_auth_middleware(get_response: Any) -> Any:
    """Plays "another authentication": ``X-Test-User: 1`` logs a session-like user in."""

    def login(request: HttpRequest) -> None:
        if request.headers.get("X-Test-User"):
            request.user = SessionLikeUser()  # type: ignore[assignment]

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            login(request)
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        login(request)
        return get_response(request)

    return middleware


@sync_and_async_middleware
def context_probe_middleware(get_response: Any) -> Any:
    """Listed before TokenMiddleware: ``X-Context-After`` says what the ContextVar holds once
    TokenMiddleware has returned the response (``-``: nothing)."""

    def probe(response: HttpResponse) -> HttpResponse:
        tok = get_current_token()
        response["X-Context-After"] = tok.subject if tok else "-"
        return response

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            return probe(await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        return probe(get_response(request))

    return middleware


def whoami(request: HttpRequest) -> JsonResponse:
    token = request.access_token  # type: ignore[attr-defined]
    core = get_current_token()
    return JsonResponse(
        {
            "sub": token.subject,
            "scopes": sorted(token.scopes),
            "user": request.user.username,
            "user_class": type(request.user._wrapped if hasattr(request.user, "_wrapped") else request.user).__name__,
            "context_sub": core.subject if core else None,
        }
    )


def public(request: HttpRequest) -> JsonResponse:
    token = request.access_token  # type: ignore[attr-defined]
    return JsonResponse({"sub": token.subject if token else None})


@require_scopes("customers:read", "customers:write")
def all_scopes(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_any_scope("customers:read", "customers:write")
def any_scope(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_token()
def token_only(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_token
def token_bare(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_scopes("customers:read")
async def async_view(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_any_scope("customers:read", "customers:write")
async def async_any(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@require_scopes("customers:read")
def cors(request: HttpRequest) -> HttpResponse:
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Origin"] = "*"
        return response
    return whoami(request)


@require_token()
def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        for _ in range(3):
            tok = get_current_token()
            yield (tok.subject if tok else "-") + "\n"

    return StreamingHttpResponse(body(), content_type="text/plain")


@require_scopes(["customers:read", "customers:write"], ["admin"])
def alternatives(request: HttpRequest) -> JsonResponse:
    return whoami(request)


class AlternativesMixinView(ScopesRequiredMixin, View):
    required_scopes = [["customers:read", "customers:write"], ["admin"]]

    def get(self, request: HttpRequest) -> JsonResponse:
        return whoami(request)


def context(request: HttpRequest) -> JsonResponse:
    """What the ContextVar holds while a request runs (``null`` without a token)."""
    core = get_current_token()
    return JsonResponse({"context_sub": core.subject if core else None})


def user_json(user: Any) -> dict[str, Any]:
    return {"user": user.get_username(), "user_class": user.__class__.__name__, "is_staff": user.is_staff}


@require_token()
def user_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(user_json(request.user))


@require_token()
async def async_user_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(user_json(await request.auser()))


@require_token()
async def async_chain(request: HttpRequest) -> JsonResponse:
    """Calls ``/public`` on ``?host=`` (default: this server) through ``httpx.AsyncClient``."""
    import httpx

    from token_middleware.django_ext.apps import get_runtime
    from token_middleware.httpx_auth import PropagateTokenAuth

    host = request.GET.get("host") or request.get_host()
    auth = PropagateTokenAuth(get_runtime().settings.forward_to)
    async with httpx.AsyncClient(auth=auth, timeout=10, trust_env=False) as client:
        answer = await client.get(f"http://{host}/public")
    core = get_current_token()
    return JsonResponse(
        {
            "sub": request.access_token.subject,  # type: ignore[attr-defined]
            "context_sub": core.subject if core else None,
            "downstream": {"status": answer.status_code, "sub": answer.json().get("sub")},
        }
    )


# -- TOKEN_MIDDLEWARE extension points, named by dotted path in the tests ------------------------

REVOKED_JTIS: set[str] = set()
NOT_CALLABLE = 42


class SuspendedAccount(InvalidToken):
    default_description = "this account is suspended"


def is_revoked(token: AccessToken) -> bool:
    return token.jti in REVOKED_JTIS


def check_tenant(claims: Mapping[str, Any]) -> None:
    if claims.get("tenant") != "acme":
        raise InvalidClaim("the token is for another tenant", claim="tenant")


def load_model_user(token: AccessToken) -> Any:
    """A real ``User`` model instance (unsaved: these tests have no database); ``None`` for strangers."""
    from django.contrib.auth.models import User

    if token.subject == "stranger":
        return None
    if token.subject == "suspended":
        raise SuspendedAccount()
    return User(username=f"model-{token.subject}", is_staff=token.subject == "root")


async def aload_model_user(token: AccessToken) -> Any:
    from django.contrib.auth.models import User

    return None if token.subject == "stranger" else User(username=f"async-{token.subject}")


@require_token()
async def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[str]:
        for _ in range(3):
            tok = get_current_token()
            yield (tok.subject if tok else "-") + "\n"

    return StreamingHttpResponse(body(), content_type="text/plain")


@method_decorator(require_scopes("customers:read"), name="dispatch")
class DecoratedView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        return whoami(request)


class MixinView(ScopesRequiredMixin, View):
    required_scopes = ("customers:read",)

    def get(self, request: HttpRequest) -> JsonResponse:
        return whoami(request)


class AsyncMixinView(ScopesRequiredMixin, View):
    required_scopes = ("customers:read", "customers:write")
    any_scope = True

    async def get(self, request: HttpRequest) -> JsonResponse:
        return whoami(request)


urlpatterns = [
    path("public", public),
    path("all", all_scopes),
    path("any", any_scope),
    path("token", token_only),
    path("token-bare", token_bare),
    path("async", async_view),
    path("async-any", async_any),
    path("cors", cors),
    path("stream", stream),
    path("async-stream", async_stream),
    path("cbv/decorated", DecoratedView.as_view()),
    path("cbv/mixin", MixinView.as_view()),
    path("cbv/async-mixin", AsyncMixinView.as_view()),
    path("alternatives", alternatives),
    path("cbv/alternatives", AlternativesMixinView.as_view()),
    path("context", context),
    path("user", user_view),
    path("async-user", async_user_view),
    path("async-chain", async_chain),
]

if importlib.util.find_spec("rest_framework") is not None:
    from tm_django_drf import drf_urlpatterns

    urlpatterns += drf_urlpatterns
