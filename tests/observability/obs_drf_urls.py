"""A DRF view with no token middleware in front: BearerTokenAuthentication validates, HasScopes decides."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from token_middleware import drf


class Customers(APIView):
    authentication_classes = [drf.BearerTokenAuthentication]
    permission_classes = [drf.HasScopes]
    required_scopes = ["customers:read"]

    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.subject})


urlpatterns = [path("drf/customers", Customers.as_view())]
