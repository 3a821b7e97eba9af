"""Bare DRF: an ``APIView`` without authentication (the limit of the DRF rows)."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import ROUTE, whoami

_ANSWER = whoami("alice", "orders:read orders:write customers:read")


class WhoAmI(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        return Response(dict(_ANSWER))


urlpatterns = [path(ROUTE.lstrip("/"), WhoAmI.as_view())]
