"""The Django baseline: the customers service's settings without the token middleware.

Settings, URLs, view and WSGI entry point in one module (it is its own ``ROOT_URLCONF``): every
setting of :mod:`demo_django.settings`, with ``token_middleware.django_ext.middleware.TokenMiddleware``
removed from ``MIDDLEWARE`` (the app stays installed, as in the demo), and ``GET /customers/whoami``
answering the customers service's JSON shape with fixed values, no token handling at all (the
``Authorization`` header that wrk sends is ignored). The "without the middleware" side of figure
(i); serve it with ``gunicorn benchmarks.bare_django:application``.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__)

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from demo_django.settings import *  # noqa: E402,F401,F403 - the same settings, then the one change
from demo_django.settings import MIDDLEWARE as _DEMO_MIDDLEWARE  # noqa: E402

MIDDLEWARE = [m for m in _DEMO_MIDDLEWARE if not m.startswith("token_middleware.")]
ROOT_URLCONF = __name__
WSGI_APPLICATION = f"{__name__}.application"

_WHOAMI = {
    "service": "customers",
    "sub": "alice",
    "client_id": "gateway",
    "scopes": ["customers:read", "orders:read", "orders:write"],
    "aud": ["orders-service", "customers-service"],
    "act": [],
    "exp": 0,
}
SAFE_METHODS = ("GET", "HEAD")


def whoami(request: HttpRequest) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(list(SAFE_METHODS))
    return JsonResponse(dict(_WHOAMI))


urlpatterns = [path("customers/whoami", whoami, name="whoami")]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
