"""djangorestframework-simplejwt: ``JWTStatelessUserAuthentication`` (no user lookup, no database)."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication

from . import ROUTE, whoami


class WhoAmI(APIView):
    authentication_classes = [JWTStatelessUserAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        claims = request.auth.payload
        return Response(whoami(claims["sub"], claims.get("scope", "")))


urlpatterns = [path(ROUTE.lstrip("/"), WhoAmI.as_view())]
