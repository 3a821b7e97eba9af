"""URLs of the actor tests (``override_settings(ROOT_URLCONF="tm_django_actors")``): views that
must be called through the orders service, as Django function views (sync and async) and DRF."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path

from token_middleware.django_ext.decorators import require_actor, require_scopes


def _whoami(token: Any) -> dict[str, Any]:
    return {"sub": token.subject, "act": list(token.actors)}


@require_scopes("customers:read")
@require_actor("orders-service")
def through_orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_whoami(request.access_token))


@require_actor("orders-service", "billing-service")
async def through_either(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_whoami(request.access_token))


urlpatterns: list[Any] = [
    path("through-orders", through_orders),
    path("through-either", through_either),
]

if importlib.util.find_spec("rest_framework") is not None:
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from token_middleware import drf

    class DrfThroughOrders(APIView):
        authentication_classes = [drf.BearerTokenAuthentication]
        permission_classes = [drf.HasScopes, drf.HasActor]
        required_scopes = ["customers:read"]
        required_actors = ["orders-service"]

        def get(self, request: Request) -> Response:
            return Response(_whoami(request.auth))

    class DrfThroughEither(DrfThroughOrders):
        permission_classes = [drf.require_actor("orders-service", "billing-service")]

    drf_patterns: list[URLPattern] = [
        path("drf/through-orders", DrfThroughOrders.as_view()),
        path("drf/through-either", DrfThroughEither.as_view()),
    ]
    urlpatterns += drf_patterns
