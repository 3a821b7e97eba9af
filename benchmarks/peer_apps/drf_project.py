"""The project on DRF: ``token_middleware.drf.BearerTokenAuthentication`` and ``IsAuthenticated``."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from token_middleware.drf import BearerTokenAuthentication

from . import ROUTE, whoami


class WhoAmI(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        token = request.auth
        return Response(whoami(token.subject, token.scopes))


urlpatterns = [path(ROUTE.lstrip("/"), WhoAmI.as_view())]
