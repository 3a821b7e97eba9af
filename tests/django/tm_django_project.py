"""URLconf and views of the Django test project: every decorator, CBVs, async, streaming, DRF."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from token_middleware.core.context import get_current_token
from token_middleware.django_ext.decorators import require_any_scope, require_scopes, require_token
from token_middleware.django_ext.mixins import ScopesRequiredMixin


class SessionLikeUser:
    """An authenticated user found by some other authentication (e.g. a session)."""

    is_authenticated = True
    username = "session-user"


class OtherAuthMiddleware:
    """Plays "another authentication": ``X-Test-User: 1`` logs a session-like user in."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        if request.headers.get("X-Test-User"):
            request.user = SessionLikeUser()  # type: ignore[assignment]
        return self.get_response(request)


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
    path("cbv/decorated", DecoratedView.as_view()),
    path("cbv/mixin", MixinView.as_view()),
    path("cbv/async-mixin", AsyncMixinView.as_view()),
]

if importlib.util.find_spec("rest_framework") is not None:
    from rest_framework.decorators import api_view, authentication_classes, permission_classes
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from token_middleware import drf

    def drf_whoami(request: Request) -> Response:
        return Response(
            {
                "sub": request.user.username,
                "auth_sub": request.auth.subject,
                "scopes": sorted(request.auth.scopes),
            }
        )

    class DrfAll(APIView):
        authentication_classes = [drf.BearerTokenAuthentication]
        permission_classes = [IsAuthenticated & drf.HasScopes]
        required_scopes = ["customers:read", "customers:write"]

        def get(self, request: Request) -> Response:
            return drf_whoami(request)

    class DrfAny(APIView):
        authentication_classes = [drf.BearerTokenAuthentication]
        permission_classes = [drf.HasAnyScope]
        required_scopes = ["customers:read", "customers:write"]

        def get(self, request: Request) -> Response:
            return drf_whoami(request)

    @api_view(["GET"])
    @authentication_classes([drf.BearerTokenAuthentication])
    @permission_classes([drf.require_scopes("customers:read")])
    def drf_function(request: Request) -> Response:
        return drf_whoami(request)

    urlpatterns += [
        path("drf/all", DrfAll.as_view()),
        path("drf/any", DrfAny.as_view()),
        path("drf/function", drf_function),
    ]
