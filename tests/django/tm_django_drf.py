"""DRF views of the Django test project: authentication, scope permissions alone, listed, composed."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from token_middleware import drf


def drf_whoami(request: Request) -> Response:
    token: Any = request.auth
    return Response({"sub": request.user.get_username(), "auth_sub": token.subject, "scopes": sorted(token.scopes)})


class Base(APIView):
    authentication_classes = [drf.BearerTokenAuthentication]

    def get(self, request: Request) -> Response:
        return drf_whoami(request)


class DrfAll(Base):
    permission_classes = [IsAuthenticated, drf.HasScopes]  # listed: each keeps its message
    required_scopes = ["customers:read", "customers:write"]


class DrfAny(Base):
    permission_classes = [drf.HasAnyScope]
    required_scopes = ["customers:read", "customers:write"]


class DrfAlternatives(Base):
    permission_classes = [drf.HasScopes]
    required_scopes = [["customers:read", "customers:write"], ["admin"]]


class DrfAnd(Base):
    permission_classes = [IsAuthenticated & drf.HasScopes]
    required_scopes = ["customers:read"]


class DrfOr(Base):
    permission_classes = [drf.HasScopes | IsAdminUser]
    required_scopes = ["customers:admin"]


class DrfNot(Base):
    """Only tokens *without* ``customers:read``; ``?deny=1`` makes the view refuse by itself."""

    permission_classes = [~drf.HasScopes]
    required_scopes = ["customers:read"]

    def get(self, request: Request) -> Response:
        if request.query_params.get("deny"):
            raise PermissionDenied()
        return drf_whoami(request)


class DrfForgot(Base):
    permission_classes = [drf.HasScopes]


@api_view(["GET"])
@authentication_classes([drf.BearerTokenAuthentication])
@permission_classes([drf.require_scopes("customers:read")])
def drf_function(request: Request) -> Response:
    return drf_whoami(request)


@api_view(["GET"])
@authentication_classes([drf.BearerTokenAuthentication])
@permission_classes([drf.require_scopes(["customers:read", "customers:write"], ["admin"])])
def drf_function_alternatives(request: Request) -> Response:
    return drf_whoami(request)


drf_urlpatterns: list[URLPattern] = [
    path("drf/all", DrfAll.as_view()),
    path("drf/any", DrfAny.as_view()),
    path("drf/alternatives", DrfAlternatives.as_view()),
    path("drf/and", DrfAnd.as_view()),
    path("drf/or", DrfOr.as_view()),
    path("drf/not", DrfNot.as_view()),
    path("drf/forgot", DrfForgot.as_view()),
    path("drf/function", drf_function),
    path("drf/function-alternatives", drf_function_alternatives),
]
